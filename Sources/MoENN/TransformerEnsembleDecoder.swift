import Foundation
import MoECore

/// Incremental decoding of a `TransformerEnsemble` (BTM, Li et al. 2022): one KV-cached
/// `TransformerDecoder` per expert, and the posterior of `TransformerEnsemble` carried from token
/// to token. With a_j = log π_j + Σ ℓ_j over the tokens of the window read so far (each token
/// but the window's first, scored by the expert's prediction made before it was read):
///
///     log w_j = a_j − logsumexp_k a_k,     logits_v = logsumexp_j (log w_j + log p_j(v | window))
///
/// The logits returned are the mixture's log-probabilities (softmax of them is the mixture), so
/// `TokenSampler`'s temperature and top-k apply to the mixture. Reading a token t adds
/// ℓ_j = log p_j(t | before) — from the expert's last prediction, or from the rows of the same
/// prefill — to a_j: the posterior updates with each generated token. `reset` (also when the
/// window slides) forgets the posterior with the cache: the new window starts at the prior, as
/// every window does in evaluation.
public final class TransformerEnsembleDecoder: NextTokenDecoder {
    public let ensemble: TransformerEnsemble
    public let decoders: [TransformerDecoder]
    /// a_j: log π_j plus the experts' log-likelihoods of the window read so far.
    public private(set) var logEvidence: [Double]
    /// log p_j(v | window) of every expert's last prediction, `[E][vocab]` (nil before the first read).
    private var lastLogProbabilities: [[Double]]?
    private let mixture = GrowableBuffer<Float>(zero: 0)

    public init(ensemble: TransformerEnsemble, domain: Int? = nil) {
        self.ensemble = ensemble
        decoders = ensemble.experts.map { TransformerDecoder(model: $0, domain: domain) }
        logEvidence = ensemble.prior.map { log($0) }
        mixture.ensure(ensemble.config.vocab)
    }

    public var context: Int { ensemble.config.context }
    public var vocab: Int { ensemble.config.vocab }
    public var free: Int { decoders[0].cache.free }

    /// log w_j of the next prediction.
    public var logPosterior: [Double] {
        let lse = TransformerEnsemble.logSumExp(logEvidence)
        return logEvidence.map { $0 - lse }
    }

    public func reset() {
        for d in decoders { d.reset() }
        logEvidence = ensemble.prior.map { log($0) }
        lastLogProbabilities = nil
    }

    public func nextLogits(after tokens: [Int32]) -> UnsafePointer<Float> {
        let n = tokens.count, v = vocab
        var next: [[Double]] = []
        for (j, decoder) in decoders.enumerated() {
            let rows = decoder.append(tokens, logitRows: n)
            // Row r predicts the token after tokens[r]; tokens[r + 1] is scored by row r, tokens[0]
            // by the last prediction before this read (none at a window's start).
            if let last = lastLogProbabilities { logEvidence[j] += last[j][Int(tokens[0])] }
            for r in 0..<n {
                let lse = TransformerEnsemble.logNormalizer(rows + r * v, vocab: v)
                if r + 1 < n {
                    logEvidence[j] += Double(rows[r * v + Int(tokens[r + 1])]) - lse
                } else {
                    next.append((0..<v).map { Double(rows[r * v + $0]) - lse })
                }
            }
        }
        lastLogProbabilities = next
        let logWeights = logPosterior
        var out = [Double](repeating: 0, count: v)
        for u in 0..<v {
            out[u] = TransformerEnsemble.logSumExp((0..<next.count).map { logWeights[$0] + next[$0][u] })
        }
        for u in 0..<v { mixture.data[u] = Float(out[u]) }
        return UnsafePointer(mixture.data)
    }
}
