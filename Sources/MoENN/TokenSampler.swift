import MoECore
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Draws the next token from a language model's logits `z [vocab]`:
///
///     temperature τ = 0:  argmax_i z_i (the lowest index on ties): greedy decoding
///     τ > 0:              p_i ∝ exp((z_i − max z) / τ) over the kept tokens, 0 elsewhere
///
/// With top-k (Fan et al. 2018, "Hierarchical Neural Story Generation") only the k largest logits
/// are kept (ties broken towards the lower token id); k ≥ vocab keeps every token. The draw is
/// the inverse CDF, in token-id order, of one uniform u from the project's counter-based RNG
/// keyed by the seed and the token's position in the sequence, `RNG(seed, "sample", stream:
/// position)`: a given seed, prompt and model give the same text on every run and machine, and
/// the token at position t does not depend on how many draws came before it.
public final class TokenSampler {
    public let temperature: Float
    public let topK: Int?
    public let seed: UInt64
    private var order: [Int] = []
    private var weights: [Double] = []

    public init(temperature: Float, topK: Int? = nil, seed: UInt64) {
        precondition(temperature >= 0, "temperature must be ≥ 0, got \(temperature)")
        precondition(topK.map { $0 >= 1 } ?? true, "top-k must be ≥ 1, got \(topK!)")
        self.temperature = temperature
        self.topK = topK
        self.seed = seed
    }

    /// The token at `position` given the logits of `vocab` tokens.
    public func next(_ logits: UnsafePointer<Float>, vocab: Int, position: Int) -> Int {
        if temperature == 0 { return Kernels.argmax(vocab, logits) }
        if order.count != vocab { order = Array(0..<vocab); weights = Array(repeating: 0, count: vocab) }
        for i in 0..<vocab { order[i] = i }
        let kept = min(topK ?? vocab, vocab)
        if kept < vocab {
            // The k largest, then back in id order so the CDF runs over ids.
            order.sort { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }
            order[0..<kept].sort()
        }
        var top = -Float.infinity
        for q in 0..<kept { top = max(top, logits[order[q]]) }
        var total: Double = 0
        for q in 0..<kept {
            let w = (Double(logits[order[q]]) - Double(top)) / Double(temperature)
            weights[q] = exp(w)
            total += weights[q]
        }
        var rng = RNG(seed: seed, purpose: "sample", stream: UInt64(position))
        let target = Double(rng.uniform()) * total
        var cumulative: Double = 0
        for q in 0..<kept {
            cumulative += weights[q]
            if cumulative > target { return order[q] }
        }
        return order[kept - 1]
    }
}
