import Foundation
import MoECore

/// What scores token windows by the evaluation protocol of ARCHITECTURE §5.4: a transformer LM,
/// or an ensemble of them (`TransformerEnsemble`). `config` gives the context and vocabulary.
public protocol TokenWindowScorer: AnyObject {
    var config: TransformerConfig { get }
    /// Σ next-token cross-entropy, top-1 hits and scored tokens of every window of `data`,
    /// forwarded `batchSize` windows at a time without dropout.
    func evaluationSums(_ data: TokenWindows, batchSize: Int) -> ObjectiveSums
}

extension TransformerLM: TokenWindowScorer {}

/// Branch-Train-Merge's ensemble of expert language models (Li et al. 2022, "Branch-Train-Merge:
/// Embarrassingly Parallel Training of Expert Language Models", §2.3/§4, after DEMix, Gururangan
/// et al. 2022): the experts stay separate models, and at every position their next-token
/// distributions are mixed with the posterior probability of each expert given the tokens of the
/// window read so far. For a window x₀ … x_T, experts j = 1 … E with prior π_j, and
/// ℓ_j(s) = log p_j(x_{s+1} | x₀ … x_s) (expert j's own log-likelihood of the token after s):
///
///     log w_j(t) = log π_j + Σ_{s<t} ℓ_j(s) − logsumexp_k (log π_k + Σ_{s<t} ℓ_k(s))     (Bayes' rule)
///     p(x_{t+1} = v | x₀ … x_t) = Σ_j w_j(t) · p_j(v | x₀ … x_t)
///                                = exp logsumexp_j (log w_j(t) + log p_j(v | x₀ … x_t))
///
/// so at the first position w(0) = π, and an expert that explains the prefix better gains weight
/// at every token. Everything is computed in float64 with log-sum-exp. The product of the
/// mixture's probabilities over a window telescopes to Σ_j π_j Π_t p_j(x_{t+1} | x_≤t): the
/// ensemble's window likelihood is the Bayesian model average of the experts' window likelihoods.
/// The first token of a window has no prediction, so it does not enter the posterior; the
/// posterior restarts at every window (the experts see only the window).
///
/// Top-1 accuracy takes argmax_v of the mixture (the lowest id on ties). MoE experts are forwarded
/// `batchSize` windows at a time, as `TransformerLM.evaluationSums` does (capacity is per forward).
public final class TransformerEnsemble: TokenWindowScorer {
    public let experts: [TransformerLM]
    /// π_j, summing to 1.
    public let prior: [Double]
    /// The experts' shared configuration (that of expert 0; every expert has its vocabulary and context).
    public var config: TransformerConfig { experts[0].config }

    private let logits: [GrowableBuffer<Float>]
    private let logNormalizers: [GrowableBuffer<Double>]

    /// An ensemble of `experts` with `prior` (non-negative, one per expert, normalised here; nil = uniform).
    public init(experts: [TransformerLM], prior: [Double]? = nil) {
        precondition(!experts.isEmpty, "an ensemble needs at least one expert")
        let c = experts[0].config
        precondition(experts.allSatisfy { $0.config.vocab == c.vocab && $0.config.context == c.context },
                     "every expert of an ensemble needs the vocabulary and context of expert 0")
        let p = prior ?? Array(repeating: 1, count: experts.count)
        precondition(p.count == experts.count && p.allSatisfy { $0 >= 0 && $0.isFinite } && p.reduce(0, +) > 0,
                     "a prior needs \(experts.count) non-negative weights with a positive sum, got \(p)")
        let total = p.reduce(0, +)
        self.experts = experts
        self.prior = p.map { $0 / total }
        logits = experts.map { _ in GrowableBuffer(zero: 0) }
        logNormalizers = experts.map { _ in GrowableBuffer(zero: 0) }
    }

    /// log w_j(t) for one window: `logLikelihoods[j][s]` = ℓ_j(s), s = 0 ..< T; returns `[E][T]`
    /// (position t uses ℓ_j(0 ..< t)).
    public static func logPosteriors(logLikelihoods: [[Double]], prior: [Double]) -> [[Double]] {
        let e = prior.count, T = logLikelihoods.first?.count ?? 0
        var running = prior.map { log($0) }
        var out = Array(repeating: [Double](repeating: 0, count: T), count: e)
        for t in 0..<T {
            let lse = logSumExp(running)
            for j in 0..<e { out[j][t] = running[j] - lse }
            for j in 0..<e { running[j] += logLikelihoods[j][t] }
        }
        return out
    }

    /// log Σ exp(values), −∞ when every value is −∞.
    public static func logSumExp(_ values: [Double]) -> Double {
        let m = values.max() ?? -.infinity
        guard m.isFinite else { return m }
        return m + log(values.reduce(0) { $0 + exp($1 - m) })
    }

    /// log p(v | prefix) of the mixture for every v < `vocab`, into `out`: expert j's logits
    /// `logits[j]` with log-normaliser `lse[j]` (log p_j(v) = logits[j][v] − lse[j]), weighted by
    /// `logWeights` = log w_j.
    public static func mixtureLogProbabilities(logWeights: [Double], logits: [UnsafePointer<Float>], lse: [Double], vocab: Int,
                                               into out: UnsafeMutablePointer<Double>) {
        let e = logWeights.count
        for v in 0..<vocab {
            var m = -Double.infinity
            for j in 0..<e { m = max(m, logWeights[j] + Double(logits[j][v]) - lse[j]) }
            guard m.isFinite else { out[v] = m; continue }
            var s = 0.0
            for j in 0..<e { s += exp(logWeights[j] + Double(logits[j][v]) - lse[j] - m) }
            out[v] = m + log(s)
        }
    }

    /// log Σ_v exp(z_v) of one row of float logits.
    static func logNormalizer(_ z: UnsafePointer<Float>, vocab: Int) -> Double {
        var m = -Double.infinity
        for v in 0..<vocab { m = max(m, Double(z[v])) }
        var s = 0.0
        for v in 0..<vocab { s += exp(Double(z[v]) - m) }
        return m + log(s)
    }

    public func evaluationSums(_ data: TokenWindows, batchSize: Int) -> ObjectiveSums {
        var ignored: [Double]? = nil
        return score(data, batchSize: batchSize, posteriorSums: &ignored)
    }

    /// `evaluationSums`, adding to `posteriorSums[j]` (when given) Σ over every scored position of
    /// w_j(t): the mass of the posterior each expert holds (the validation prior's statistic).
    public func score(_ data: TokenWindows, batchSize: Int, posteriorSums: inout [Double]?) -> ObjectiveSums {
        precondition(batchSize > 0, "evaluation batch size must be positive, got \(batchSize)")
        var sums = ObjectiveSums()
        var start = 0
        while start < data.batch {
            let count = min(batchSize, data.batch - start)
            sums += scoreChunk(data.windows(start, count: count), posteriorSums: &posteriorSums)
            start += count
        }
        return sums
    }

    /// One forward of every expert over `data`, then the mixture at every position.
    private func scoreChunk(_ data: TokenWindows, posteriorSums: inout [Double]?) -> ObjectiveSums {
        let e = experts.count, v = config.vocab, T = data.positions, n = data.scoredTokens
        for (j, expert) in experts.enumerated() {
            expert.forwardLogits(data.tokens, batch: data.batch, tokens: T, rowStride: data.length, domains: data.domains,
                                 context: ForwardContext(training: false, step: 0, seed: 0))
            logits[j].ensure(n * v)
            logNormalizers[j].ensure(n)
            logits[j].data.update(from: expert.logits, count: n * v)
            for r in 0..<n { logNormalizers[j].data[r] = Self.logNormalizer(logits[j].data + r * v, vocab: v) }
        }
        var sums = ObjectiveSums()
        var mixture = [Double](repeating: 0, count: v)
        let logPrior = prior.map { log($0) }
        let pointers = logits.map { UnsafePointer($0.data) }
        for b in 0..<data.batch {
            var running = logPrior
            for t in 0..<T {
                let r = b * T + t, target = Int(data.tokens[b * data.length + t + 1])
                let lse = Self.logSumExp(running)
                let logWeights = running.map { $0 - lse }
                if posteriorSums != nil { for j in 0..<e { posteriorSums![j] += exp(logWeights[j]) } }
                let rows = pointers.map { $0 + r * v }
                let norms = (0..<e).map { logNormalizers[$0].data[r] }
                mixture.withUnsafeMutableBufferPointer {
                    Self.mixtureLogProbabilities(logWeights: logWeights, logits: rows, lse: norms, vocab: v, into: $0.baseAddress!)
                }
                sums.lossSum -= mixture[target]
                var best = 0
                for u in 1..<v where mixture[u] > mixture[best] { best = u }
                if best == target { sums.correct += 1 }
                for j in 0..<e { running[j] += Double(rows[j][target]) - norms[j] }
            }
        }
        sums.scored = n
        return sums
    }
}
