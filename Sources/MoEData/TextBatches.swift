import MoECore

/// Training batches of a text corpus (ARCHITECTURE §5.4): windows of `context + 1` tokens at
/// seeded random offsets, each inside ONE domain's train stream.
///
/// **Sampling.** A window of a domain with `n` train tokens may start at offsets
/// `0 ... n − context − 1`, so the domain has `v = max(0, n − context)` valid offsets. Over the
/// allowed domains `d₀ < d₁ < …` (all domains, or a branch expert's shard) in id order, let
/// `C₀ = 0, C_{k+1} = C_k + v_{d_k}` and `N = C_last`. Row `r` of the batch of step `s` draws
/// `u = RNG(seed, purpose, stream: s).int(below: N)` — rows drawn in order 0, 1, … from that one
/// generator — and takes the domain `d_k` with `C_k ≤ u < C_{k+1}` and the offset `u − C_k`.
/// Every valid (domain, offset) pair is equally likely, so a domain is chosen with probability
/// proportional to its number of valid offsets (about its share of the train tokens), and
/// windows may overlap and repeat (sampling with replacement, as nanoGPT does).
///
/// The batch of step `s` is a pure function of (corpus, context, batch size, allowed domains,
/// seed, purpose, s): a resumed run refills exactly the batches it would have seen, and
/// `train.steps` needs no notion of epochs. `fill(step:)` allocates nothing.
public final class TextBatches {
    public let context: Int
    public let batchSize: Int
    public let seed: UInt64
    public let purpose: String
    /// The domain ids windows are drawn from, ascending.
    public let allowedDomains: [Int]
    /// Tokens of the current batch, row-major `[batchSize, context + 1]`: the model reads
    /// columns `0 ..< context` and predicts columns `1 ... context`.
    public let tokens: UnsafeMutableBufferPointer<Int32>
    /// Domain id of each row of the current batch, `[batchSize]`.
    public let domains: UnsafeMutableBufferPointer<Int>
    /// Start offset of each row's window in its domain's train stream, `[batchSize]`.
    public let offsets: UnsafeMutableBufferPointer<Int>
    /// The step whose batch the buffers hold (-1 before the first `fill`).
    public private(set) var step = -1

    /// The allowed domains' train streams, back to back.
    private let stream: [UInt16]
    /// Per allowed domain k: start of its stream in `stream`, and `C_k` (cumulative offsets).
    private let streamStart: [Int]
    private let cumulative: [Int]

    /// `domains` restricts sampling to those ids (a branch expert's shard); nil means all.
    /// Throws when a parameter is out of range, or when no allowed domain has a train stream of
    /// `context + 1` tokens (`.streamTooShort` naming the first allowed domain).
    public init(corpus: TextCorpus, context: Int, batchSize: Int, seed: UInt64,
                domains: [Int]? = nil, purpose: String = "text-batches") throws {
        func fail(_ name: String, _ message: String) -> DataError {
            DataError.invalidParameter(source: "text batches", name: name, message: message)
        }
        guard context >= 1 else { throw fail("context", "must be at least 1, got \(context)") }
        guard batchSize >= 1 else { throw fail("batch_size", "must be at least 1, got \(batchSize)") }
        let allowed = Array(Set(domains ?? Array(corpus.domains.indices))).sorted()
        guard !allowed.isEmpty else { throw fail("domains", "no domain to sample from") }
        if let bad = allowed.first(where: { $0 < 0 || $0 >= corpus.domains.count }) {
            throw fail("domains", "domain id \(bad) is not in 0..<\(corpus.domains.count)")
        }
        let train = corpus.streams(.train)
        var stream: [UInt16] = []
        var starts: [Int] = []
        var cumulative = [0]
        for d in allowed {
            starts.append(stream.count)
            stream.append(contentsOf: train[d])
            cumulative.append(cumulative.last! + max(0, train[d].count - context))
        }
        guard cumulative.last! > 0 else {
            throw DataError.streamTooShort(source: corpus.source, domain: corpus.domains[allowed[0]], split: "train",
                                           tokens: train[allowed[0]].count, needed: context + 1)
        }
        guard cumulative.last! <= Int(UInt32.max) else {
            throw fail("corpus", "\(cumulative.last!) window offsets; at most \(UInt32.max) are supported")
        }
        self.context = context
        self.batchSize = batchSize
        self.seed = seed
        self.purpose = purpose
        self.allowedDomains = allowed
        self.stream = stream
        self.streamStart = starts
        self.cumulative = cumulative
        tokens = .allocate(capacity: batchSize * (context + 1))
        tokens.initialize(repeating: 0)
        self.domains = .allocate(capacity: batchSize)
        self.domains.initialize(repeating: 0)
        offsets = .allocate(capacity: batchSize)
        offsets.initialize(repeating: 0)
    }

    deinit {
        tokens.deallocate()
        domains.deallocate()
        offsets.deallocate()
    }

    /// Number of valid window offsets over the allowed domains (`N` above).
    public var windowCount: Int { cumulative.last! }

    /// Fills `tokens`, `domains` and `offsets` with the batch of `step` (≥ 0).
    public func fill(step: Int) {
        precondition(step >= 0, "step must not be negative")
        var rng = RNG(seed: seed, purpose: purpose, stream: UInt64(step))
        let width = context + 1
        let total = cumulative.last!
        stream.withUnsafeBufferPointer { source in
            for row in 0 ..< batchSize {
                let u = rng.int(below: total)
                // The k with C_k ≤ u < C_{k+1} (binary search; domains with no offsets are skipped
                // because their C_k = C_{k+1}).
                var (low, high) = (0, cumulative.count - 1)
                while high - low > 1 {
                    let mid = (low + high) / 2
                    if cumulative[mid] <= u { low = mid } else { high = mid }
                }
                let offset = u - cumulative[low]
                let start = streamStart[low] + offset
                let out = tokens.baseAddress! + row * width
                for t in 0 ..< width { out[t] = Int32(source[start + t]) }
                domains[row] = allowedDomains[low]
                offsets[row] = offset
            }
        }
        self.step = step
    }
}
