import Foundation
import XCTest
import MoECore
@testable import MoENN

/// The BTM ensemble (`TransformerEnsemble`, Li et al. 2022): the posterior weighting against a
/// direct computation in plain probabilities, its concentration on the expert that explains the
/// prefix (which a fixed prior weighting does not have), identical experts scoring as one, and
/// the KV-cached decoder giving the same mixture as the full forward.
final class TransformerEnsembleTests: XCTestCase {
    private func expert(seed: UInt64, scale: Float = 1) -> TransformerLM {
        let model = TransformerLM(config: TinyTransformer.config(), seed: seed)
        TinyTransformer.randomize(model.parameters, seed: seed)
        for i in 0..<model.head!.value.count { model.head!.value.data[i] *= scale }
        return model
    }

    /// p_j(x_{t+1} | x_≤t) of every position of one window, from a plain forward.
    private func probabilities(_ model: TransformerLM, _ window: [Int32]) -> [[Double]] {
        let T = window.count - 1, v = model.config.vocab
        window.withUnsafeBufferPointer {
            model.forwardLogits($0.baseAddress!, batch: 1, tokens: T, rowStride: window.count, context: ForwardContext(training: false, step: 0, seed: 0))
        }
        return (0..<T).map { t in
            let z = (0..<v).map { Double(model.logits[t * v + $0]) }
            let m = z.max()!, s = z.reduce(0) { $0 + exp($1 - m) }
            return z.map { exp($0 - m) / s }
        }
    }

    private func sums(_ scorer: any TokenWindowScorer, _ tokens: [Int32], batch: Int, batchSize: Int = 2) -> ObjectiveSums {
        tokens.withUnsafeBufferPointer {
            scorer.evaluationSums(TokenWindows(tokens: $0.baseAddress!, batch: batch, length: tokens.count / batch), batchSize: batchSize)
        }
    }

    func testMixtureMatchesBayesRuleComputedDirectly() {
        let experts = [expert(seed: 1), expert(seed: 2), expert(seed: 3)]
        let prior = [0.5, 0.3, 0.2]
        let ensemble = TransformerEnsemble(experts: experts, prior: [5, 3, 2])
        XCTAssertEqual(ensemble.prior, prior)
        let (batch, length) = (3, 7)
        let tokens = TinyTransformer.tokens(batch: batch, length: length, vocab: 11, seed: 8)
        var loss = 0.0, correct = 0, windowLogLikelihood = 0.0
        for b in 0..<batch {
            let window = Array(tokens[(b * length)..<((b + 1) * length)])
            let p = experts.map { probabilities($0, window) }
            var evidence = prior  // π_j Π_{s<t} p_j(x_{s+1} | x_≤s), in plain probabilities
            for t in 0..<(length - 1) {
                let total = evidence.reduce(0, +)
                let w = evidence.map { $0 / total }
                let mixture = (0..<11).map { v in (0..<3).reduce(0.0) { $0 + w[$1] * p[$1][t][v] } }
                let target = Int(window[t + 1])
                loss -= log(mixture[target])
                if mixture.indices.max(by: { mixture[$0] < mixture[$1] || (mixture[$0] == mixture[$1] && $0 > $1) }) == target { correct += 1 }
                for j in 0..<3 { evidence[j] *= p[j][t][target] }
            }
            // The window likelihood telescopes to the prior-weighted sum of the experts' likelihoods.
            windowLogLikelihood += log(evidence.reduce(0, +))
        }
        for batchSize in [1, 2, 3] {
            let s = sums(ensemble, tokens, batch: batch, batchSize: batchSize)
            XCTAssertEqual(s.scored, batch * (length - 1))
            XCTAssertEqual(s.lossSum, loss, accuracy: 1e-9 * abs(loss))
            XCTAssertEqual(s.lossSum, -windowLogLikelihood, accuracy: 1e-9 * abs(loss))
            XCTAssertEqual(s.correct, correct)
        }
    }

    /// Expert 0 gives the prefix a much higher likelihood: its weight goes from the prior to ≈ 1
    /// within a few tokens. A fixed weighting (w = π at every position) stays at the prior.
    func testPosteriorConcentratesOnTheExpertThatExplainsThePrefix() {
        let T = 8
        let likelihoods = [[Double](repeating: log(0.9), count: T), [Double](repeating: log(0.05), count: T)]
        let lw = TransformerEnsemble.logPosteriors(logLikelihoods: likelihoods, prior: [0.5, 0.5])
        XCTAssertEqual(exp(lw[0][0]), 0.5, accuracy: 1e-15)
        for t in 1..<T {
            // w_0(t) = 1 / (1 + (0.05 / 0.9)^t)
            XCTAssertEqual(exp(lw[0][t]), 1 / (1 + pow(0.05 / 0.9, Double(t))), accuracy: 1e-12)
            XCTAssertEqual(exp(lw[0][t]) + exp(lw[1][t]), 1, accuracy: 1e-12)
        }
        XCTAssertGreaterThan(exp(lw[0][4]), 0.9999)
        // Far-apart likelihoods stay finite in log space (no underflow to 0/0).
        let extreme = TransformerEnsemble.logPosteriors(logLikelihoods: [[-1, -1], [-2000, -2000]], prior: [0.01, 0.99])
        XCTAssertEqual(extreme[0][1], 0, accuracy: 1e-12)
        XCTAssertEqual(extreme[1][1], -1999 + log(0.99) - log(0.01), accuracy: 1e-9)

        // On models: a sharpened expert and a flattened one. The ensemble's window NLL is at most the
        // best expert's plus −log π (Bayes), far below the fixed uniform mixture's.
        let good = expert(seed: 5, scale: 3), bad = expert(seed: 6, scale: 3)
        let tokens: [Int32] = (0..<4).flatMap { b -> [Int32] in
            // Windows made of expert `good`'s greedy continuations: it explains them well.
            var w: [Int32] = [Int32(b)]
            for _ in 0..<6 {
                let p = probabilities(good, w + [0])
                w.append(Int32(p.last!.indices.max { p.last![$0] < p.last![$1] }!))
            }
            return w
        }
        let ensemble = TransformerEnsemble(experts: [bad, good])
        let e = sums(ensemble, tokens, batch: 4), g = sums(good, tokens, batch: 4), b = sums(bad, tokens, batch: 4)
        XCTAssertLessThan(g.lossSum, b.lossSum)
        XCTAssertLessThanOrEqual(e.lossSum, g.lossSum + 4 * log(2) + 1e-6)
        var fixed = 0.0
        for w in 0..<4 {
            let window = Array(tokens[(w * 7)..<((w + 1) * 7)])
            let pg = probabilities(good, window), pb = probabilities(bad, window)
            for t in 0..<6 { fixed -= log(0.5 * pg[t][Int(window[t + 1])] + 0.5 * pb[t][Int(window[t + 1])]) }
        }
        XCTAssertLessThan(e.lossSum, fixed - 1, "the posterior weighting must beat a fixed prior weighting here")
    }

    func testIdenticalExpertsScoreAsOneExpert() {
        let one = expert(seed: 4)
        let copies = (0..<3).map { _ in expert(seed: 4) }
        let tokens = TinyTransformer.tokens(batch: 5, length: 7, vocab: 11, seed: 2)
        let single = sums(one, tokens, batch: 5)
        for prior in [nil, [1.0, 2, 7]] {
            let s = sums(TransformerEnsemble(experts: copies, prior: prior), tokens, batch: 5)
            XCTAssertEqual(s.lossSum, single.lossSum, accuracy: 1e-5 * single.lossSum)
            XCTAssertEqual(s.correct, single.correct)
            XCTAssertEqual(s.scored, single.scored)
        }
    }

    /// Reading a window token by token (or a prefill then steps) through the KV-cached decoder
    /// gives the ensemble's mixture log-probability of every next token.
    func testDecoderPosteriorUpdatesWithEachTokenAsInTheFullForward() {
        let ensemble = TransformerEnsemble(experts: [expert(seed: 1), expert(seed: 2)], prior: [0.3, 0.7])
        let window = TinyTransformer.tokens(batch: 1, length: 7, vocab: 11, seed: 3)
        let full = sums(ensemble, window, batch: 1)
        for prefill in [1, 3] {
            let decoder = TransformerEnsembleDecoder(ensemble: ensemble)
            // −log p(x_k | x_<k) for k = prefill ... 6: after a prefill of x_0..<prefill, one token per step.
            var nll = 0.0
            var logits = decoder.nextLogits(after: Array(window[0..<prefill]))
            for k in prefill...6 {
                nll -= Double(logits[Int(window[k])])
                if k < 6 { logits = decoder.nextLogits(after: [window[k]]) }
            }
            // The full forward scores x_1 ... x_6; the tokens inside the prefill (x_1 ..< x_prefill) are not the decoder's.
            let head = prefill > 1 ? sums(ensemble, Array(window[0..<prefill]), batch: 1).lossSum : 0
            XCTAssertEqual(nll, full.lossSum - head, accuracy: 1e-4)
            XCTAssertEqual(decoder.logPosterior.map(exp).reduce(0, +), 1, accuracy: 1e-12)
        }
        // Generation through the shared loop: deterministic, slides the window.
        let decoder = TransformerEnsembleDecoder(ensemble: ensemble)
        let a = decoder.generate(prompt: [1, 2], count: 12, sampler: TokenSampler(temperature: 0.8, seed: 3))
        let b = decoder.generate(prompt: [1, 2], count: 12, sampler: TokenSampler(temperature: 0.8, seed: 3))
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.tokens.count, 12)
        XCTAssertGreaterThan(a.slides, 0)
    }
}
