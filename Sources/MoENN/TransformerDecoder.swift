import MoECore

/// Incremental (KV-cached) inference of a `TransformerLM`: reads tokens a few at a time and
/// returns the next-token logits, each step attending over the cached keys and values of the
/// earlier positions instead of re-running the whole window.
///
/// Reading `n` new tokens at positions `t₀ ..< t₀+n` (t₀ = `cache.count`), per block:
///
///     u = LN₁(x),  [q k v] = u · W_qkvᵀ + b_qkv                 n rows
///     K[t₀..<t₀+n] = k,  V[t₀..<t₀+n] = v                        appended to the `KVCache`
///     A_j = softmax(q_j · K_j[0..<t₀+n]ᵀ / √d + M) · V_j         M masks key s > t₀ + i for row i
///     h = x + A · W_outᵀ + b_out,  x' = h + F(LN₂(h))             F: the block's FFN or MoE layer
///
/// then `logits = LN(x_B) · Wᵀ` for the last row(s). This is the model's forward
/// (`TransformerLM.forwardLogits`) restricted to the new rows, with the same parameters and
/// kernels: the prompt is read in one pass (prefill, n = prompt length) and every generated token
/// in a step of n = 1 that costs O(t·hidden) attention per block plus the position-wise layers.
///
/// MoE layers route each token as in evaluation (no noise, jitter or dropout): a token-choice
/// router without capacity limits routes a token exactly as the full forward does. A capacity
/// limit or the `expert_choice` router makes routing depend on the other tokens of the batch
/// (they are not causal); here a generated token is a batch of one, so it is never dropped and,
/// under expert choice, every expert takes it. The `hash` router keys each token by its id; the
/// `domain` router needs `domain`.
public final class TransformerDecoder {
    public let model: TransformerLM
    public let cache: KVCache
    /// The domain id every token is routed by, for a model with the `domain` router.
    public var domain: Int?

    private let stream: Scratch, next: Scratch, normed: Scratch, mean: Scratch, rstd: Scratch
    private let qkv: Scratch, attended: Scratch, branch: Scratch, middle: Scratch, scores: Scratch
    private let logitsBuffer: Scratch
    private var tokenKeys: [UInt64], tokenDomains: [Int]

    public init(model: TransformerLM, domain: Int? = nil) {
        let c = model.config, h = c.hidden
        self.model = model
        self.domain = domain
        cache = KVCache(blocks: c.blocks, context: c.context, hidden: h)
        stream = Scratch(width: h); next = Scratch(width: h); normed = Scratch(width: h)
        mean = Scratch(width: 1); rstd = Scratch(width: 1)
        qkv = Scratch(width: 3 * h); attended = Scratch(width: h); branch = Scratch(width: h); middle = Scratch(width: h)
        scores = Scratch(width: c.context)
        logitsBuffer = Scratch(width: c.vocab)
        for s in [stream, next, normed, mean, rstd, qkv, attended, branch, middle, scores, logitsBuffer] {
            s.ensure(rows: c.context)
        }
        tokenKeys = Array(repeating: 0, count: c.context)
        tokenDomains = Array(repeating: domain ?? 0, count: c.context)
    }

    /// Positions read so far.
    public var count: Int { cache.count }

    /// Forgets every position read.
    public func reset() { cache.reset() }

    /// Reads `tokens` at positions `count ..< count + tokens.count` (at most `cache.free` of
    /// them) and returns the logits `[rows, vocab]` of the last `rows` of them (row r predicts the
    /// token after position `count − rows + r`). The pointer is valid until the next call.
    @discardableResult
    public func append(_ tokens: [Int32], logitRows rows: Int = 1) -> UnsafePointer<Float> {
        let c = model.config, h = c.hidden, v = c.vocab, n = tokens.count, t0 = cache.count
        precondition(n >= 1 && n <= cache.free, "read 1...\(cache.free) tokens at position \(t0), got \(n)")
        precondition(rows >= 1 && rows <= n, "logit rows \(rows) outside 1...\(n)")
        var context = ForwardContext(training: false, step: 0, seed: 0)
        if c.moe?.router == .domain {
            guard let domain else { preconditionFailure("a model with the domain router needs TransformerDecoder.domain") }
            for r in 0..<n { tokenDomains[r] = domain }
        }
        let x0 = stream.data, e = model.embed.value.data, p = model.pos.value.data
        for (r, token) in tokens.enumerated() {
            let id = Int(token)
            precondition(id >= 0 && id < v, "token id \(id) outside the vocabulary 0..<\(v)")
            tokenKeys[r] = UInt64(id)
            Kernels.add(h, e + id * h, p + (t0 + r) * h, into: x0 + r * h)
        }
        tokenKeys.withUnsafeBufferPointer { keys in
            tokenDomains.withUnsafeBufferPointer { domains in
                if c.moe?.router == .hash { context.sampleKeys = keys.baseAddress }
                if c.moe?.router == .domain { context.domains = domains.baseAddress }
                var x = stream, y = next
                for (i, block) in model.blocks.enumerated() {
                    forward(block, index: i, x.data, rows: n, offset: t0, into: y.data, context: context)
                    swap(&x, &y)
                }
                let last = x.data + (n - rows) * h
                model.norm.forward(last, rows: rows, into: normed.data, mean: mean.data, rstd: rstd.data)
            }
        }
        cache.count = t0 + n
        BLAS.gemm(m: rows, n: v, k: h, normed.data, model.outputWeight.value.data, transB: true, logitsBuffer.data)
        return UnsafePointer(logitsBuffer.data)
    }

    /// One block on `n` new rows at positions `offset ..< offset + n` (see the type's formulas).
    private func forward(_ block: TransformerBlock, index: Int, _ x: UnsafePointer<Float>, rows n: Int, offset t0: Int,
                         into y: UnsafeMutablePointer<Float>, context: ForwardContext) {
        let attention = block.attention, h = attention.hidden, d = attention.headDim, T = t0 + n
        block.attentionNorm.forward(x, rows: n, into: normed.data, mean: mean.data, rstd: rstd.data)
        attention.qkv.forward(normed.data, rows: n, into: qkv.data)
        cache.store(block: index, qkv: qkv.data, rows: n)
        let keys = cache.keys[index].data, values = cache.values[index].data
        let scale = 1 / Float(d).squareRoot(), s = scores.data
        for j in 0..<attention.heads {
            // S = q_j·K_jᵀ/√d over the cached positions 0..<T, causal softmax, A_j = P·V_j.
            BLAS.gemm(m: n, n: T, k: d, alpha: scale, qkv.data + j * d, lda: 3 * h, keys + j * d, transB: true, ldb: h,
                      s, ldc: T)
            CausalSoftmax.forward(s, rows: n, offset: t0, width: T, ld: T)
            BLAS.gemm(m: n, n: d, k: T, s, lda: T, values + j * d, ldb: h, attended.data + j * d, ldc: h)
        }
        attention.out.forward(attended.data, rows: n, into: branch.data)
        Kernels.add(n * h, x, branch.data, into: middle.data)
        block.residual.forward(middle.data, rows: n, into: y, context: context)
    }
}
