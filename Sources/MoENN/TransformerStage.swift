import MoECore

/// The language-model head of ARCHITECTURE §5.3 with its loss, reading hidden states
/// `h [n, hidden]` (n = batch·T token positions):
///
///     logits = LN(h) · Wᵀ                     W [vocab, hidden], no bias (GPT-2)
///     L = mean over the n positions of −log softmax(logits)[next token]
///     backward: dlogits = scale · (softmax − onehot(target)) / n
///               dW += dlogitsᵀ · LN(h),  dh = LNᵀ(dlogits · W)
///
/// A view: `norm` and `weight` are the model's (`norm`, and `head/weight` or the tied
/// `embed/weight`) or an auxiliary head's (`aux/<s>/norm`, `aux/<s>/head/weight`); `ownsWeight`
/// is false when the weight is the tied embedding, which the stage with the embedding trains.
public final class LMHead {
    public let norm: LayerNorm
    public let weight: Parameter
    public let ownsWeight: Bool
    public var vocab: Int { weight.shape[0] }

    private let normed: Scratch, mean: Scratch, rstd: Scratch, logitsBuffer: Scratch, probsBuffer: Scratch
    private let gradNormed: Scratch, gradLogits: Scratch
    private var input: UnsafePointer<Float>?
    private var rows = 0

    public init(norm: LayerNorm, weight: Parameter, ownsWeight: Bool = true) {
        precondition(weight.shape == [weight.shape[0], norm.dim], "the head's norm and weight disagree on the width")
        self.norm = norm
        self.weight = weight
        self.ownsWeight = ownsWeight
        let v = weight.shape[0]
        normed = Scratch(width: norm.dim); mean = Scratch(width: 1); rstd = Scratch(width: 1)
        logitsBuffer = Scratch(width: v); probsBuffer = Scratch(width: v)
        gradNormed = Scratch(width: norm.dim); gradLogits = Scratch(width: v)
    }

    /// Logits of the last `forward`, `[rows, vocab]`.
    public var logits: UnsafeMutablePointer<Float> { logitsBuffer.data }

    /// `logits = LN(h) · Wᵀ` for `n` rows; `h` must stay valid until `backward`.
    public func forward(_ h: UnsafePointer<Float>, rows n: Int) {
        normed.ensure(rows: n); mean.ensure(rows: n); rstd.ensure(rows: n); logitsBuffer.ensure(rows: n)
        input = h
        rows = n
        norm.forward(h, rows: n, into: normed.data, mean: mean.data, rstd: rstd.data)
        BLAS.gemm(m: n, n: vocab, k: norm.dim, normed.data, weight.value.data, transB: true, logitsBuffer.data)
    }

    /// Cross-entropy of the last `forward`'s logits against `targets` (one per row).
    public func loss(targets: UnsafePointer<Int>, rows n: Int) -> ObjectiveSums {
        precondition(input != nil && n == rows, "LMHead.loss needs the forward of the same rows")
        probsBuffer.ensure(rows: n)
        let (mean, correct) = CrossEntropy.forward(logitsBuffer.data, labels: targets, rows: n, classes: vocab, probs: probsBuffer.data)
        return ObjectiveSums(lossSum: mean * Double(n), correct: correct, scored: n)
    }

    /// Backward of the last `loss` (its gradient times `lossScale`): accumulates `W`'s and the
    /// norm's gradients and writes `∂L/∂h` into `dh`.
    public func backward(targets: UnsafePointer<Int>, lossScale: Float, dh: UnsafeMutablePointer<Float>) {
        guard let h = input else { preconditionFailure("LMHead.backward before forward") }
        let n = rows, d = norm.dim, v = vocab
        gradNormed.ensure(rows: n); gradLogits.ensure(rows: n)
        CrossEntropy.backward(probs: probsBuffer.data, labels: targets, rows: n, classes: v, scale: lossScale, dlogits: gradLogits.data)
        BLAS.gemm(m: v, n: d, k: n, gradLogits.data, transA: true, normed.data, beta: 1, weight.grad.data)
        BLAS.gemm(m: n, n: d, k: v, gradLogits.data, weight.value.data, gradNormed.data)
        norm.backward(h, gradNormed.data, rows: n, mean: mean.data, rstd: rstd.data, dx: dh)
    }

    /// The norm's parameters, then the weight when the head owns it.
    public var parameters: [Parameter] { norm.parameters + (ownsWeight ? [weight] : []) }
}

/// The one forward and backward walk of the transformer LM over a contiguous run of its blocks:
///
///     x₀ = Dropout(embed[tokens] + pos[0..<T])     when the stage has the embedding (else x₀ = its input)
///     xᵢ₊₁ = Block_i(xᵢ)                            for i in the stage's blocks, in order
///     logits = head(x)                              when the stage has a head (`LMHead`)
///
/// `TransformerLM` is the stage of all blocks with the embedding and the final head; a GPipe
/// stage is the run `ranges[s]` with the embedding on the first and the head on the last; a stage
/// of decoupled greedy learning has an auxiliary LM head on every stage but the last. The layers
/// are the model's (a view); the stage owns the activations of its run, sized for the largest
/// batch seen. Every stage reads the token ids of its batch for the `hash` router, and the
/// windows' domains for the `domain` router. `context.rowOffset` counts windows: each window is
/// T token rows for the dropout and router streams.
public final class TransformerStage {
    public let config: TransformerConfig
    /// `embed/weight` and `pos/weight` when the stage has the embedding.
    public let embedding: (embed: Parameter, pos: Parameter)?
    public let blocks: [TransformerBlock]
    public let head: LMHead?
    /// The parameters the stage trains, in checkpoint order: embedding, blocks, head.
    public let parameters: [Parameter]

    private let streams: [Scratch]
    private let embedMask: Scratch, gradStream: Scratch
    private let inputIds = GrowableBuffer<Int>(zero: 0), targets = GrowableBuffer<Int>(zero: 0)
    private let tokenKeys = GrowableBuffer<UInt64>(zero: 0), tokenDomains = GrowableBuffer<Int>(zero: 0)
    private var lastInput: UnsafePointer<Float>?
    private var lastOutput: UnsafePointer<Float>?
    private var lastBatch = 0, lastT = 0, embedDroppedOut = false, scored = false

    public init(config: TransformerConfig, embedding: (embed: Parameter, pos: Parameter)?, blocks: [TransformerBlock], head: LMHead?) {
        precondition(embedding != nil || !blocks.isEmpty || head != nil, "a stage needs at least one layer")
        self.config = config
        self.embedding = embedding
        self.blocks = blocks
        self.head = head
        parameters = (embedding.map { [$0.embed, $0.pos] } ?? []) + blocks.flatMap(\.parameters) + (head?.parameters ?? [])
        let h = config.hidden
        streams = (0...blocks.count).map { _ in Scratch(width: h) }
        embedMask = Scratch(width: h)
        gradStream = Scratch(width: h)
    }

    /// The stage's output `[batch·T, hidden]` of the last forward.
    public var output: UnsafePointer<Float> {
        guard let lastOutput else { preconditionFailure("TransformerStage.output before forward") }
        return lastOutput
    }

    /// Runs the stage on tokens `0..<T` of `batch` rows of `tokens` (row `b` starts at
    /// `tokens + b·rowStride`): `input` is the previous stage's output `[batch·T, hidden]`, nil
    /// when the stage has the embedding. Returns the output `[batch·T, hidden]`; with a head,
    /// the logits are computed too.
    @discardableResult
    public func forward(_ tokens: UnsafePointer<Int32>, batch: Int, tokens T: Int, rowStride: Int, domains: UnsafePointer<Int>?,
                        input: UnsafePointer<Float>?, context: ForwardContext) -> UnsafePointer<Float> {
        precondition(T >= 1 && T <= config.context, "a window reads 1...\(config.context) tokens, got \(T)")
        precondition(rowStride >= T, "row stride \(rowStride) shorter than the \(T) tokens read")
        precondition((input == nil) == (embedding != nil), "the stage with the embedding reads tokens, every other one its input")
        let n = batch * T, h = config.hidden, v = config.vocab
        var context = context
        context.rowOffset *= T
        let hashed = config.moe?.router == .hash
        if embedding != nil || hashed {
            inputIds.ensure(n)
            let ids = inputIds.data
            for b in 0..<batch {
                for t in 0..<T {
                    let id = Int(tokens[b * rowStride + t])
                    precondition(id >= 0 && id < v, "token id \(id) outside the vocabulary 0..<\(v)")
                    ids[b * T + t] = id
                }
            }
        }
        if hashed {
            tokenKeys.ensure(n)
            for r in 0..<n { tokenKeys.data[r] = UInt64(inputIds.data[r]) }
            context.sampleKeys = UnsafePointer(tokenKeys.data)
        }
        if let domains {
            tokenDomains.ensure(n)
            for b in 0..<batch { (tokenDomains.data + b * T).update(repeating: domains[b], count: T) }
            context.domains = UnsafePointer(tokenDomains.data)
        } else {
            context.domains = nil
        }
        for s in streams { s.ensure(rows: n) }
        lastBatch = batch; lastT = T; scored = false
        lastInput = input
        var x = input ?? UnsafePointer(streams[0].data)
        if let embedding {
            let x0 = streams[0].data, e = embedding.embed.value.data, p = embedding.pos.value.data, ids = inputIds.data
            for r in 0..<n { Kernels.add(h, e + ids[r] * h, p + (r % T) * h, into: x0 + r * h) }
            embedDroppedOut = context.training && config.dropout > 0
            if embedDroppedOut {
                embedMask.ensure(rows: n)
                var rng = RNG(seed: context.seed, purpose: "dropout/embed", stream: UInt64(context.step))
                rng.skip(context.rowOffset * h)
                Dropout.forward(x0, mask: embedMask.data, count: n * h, p: config.dropout, rng: &rng)
            }
            x = UnsafePointer(x0)
        }
        for (i, block) in blocks.enumerated() {
            block.forward(x, batch: batch, tokens: T, into: streams[i + 1].data, context: context)
            x = UnsafePointer(streams[i + 1].data)
        }
        lastOutput = x
        head?.forward(x, rows: n)
        return x
    }

    /// The head's next-token cross-entropy of the last forward, whose windows' tokens `1...T`
    /// are the targets (`tokens` and `rowStride` as in `forward`).
    public func loss(_ tokens: UnsafePointer<Int32>, rowStride: Int) -> ObjectiveSums {
        guard let head else { preconditionFailure("TransformerStage.loss on a stage without a head") }
        let T = lastT, n = lastBatch * T
        precondition(rowStride >= T + 1, "the targets need T + 1 tokens per window")
        targets.ensure(n)
        for b in 0..<lastBatch {
            for t in 0..<T { targets.data[b * T + t] = Int(tokens[b * rowStride + t + 1]) }
        }
        scored = true
        return head.loss(targets: targets.data, rows: n)
    }

    /// Backward of the last forward (and `loss` when the stage has a head, whose gradient is
    /// scaled by `lossScale`; else from `gradOutput` = ∂L/∂output). Accumulates the stage's
    /// parameter gradients and returns ∂L/∂input, nil when the stage has the embedding. Each
    /// block's backward writes its input gradient in place over one buffer.
    @discardableResult
    public func backward(gradOutput: UnsafePointer<Float>?, lossScale: Float) -> UnsafePointer<Float>? {
        let n = lastBatch * lastT, h = config.hidden
        gradStream.ensure(rows: n)
        let g = gradStream.data
        if let head {
            precondition(scored, "the backward of a stage with a head needs its loss first")
            head.backward(targets: targets.data, lossScale: lossScale, dh: g)
        } else {
            guard let gradOutput else { preconditionFailure("the backward of a stage without a head needs ∂L/∂output") }
            g.update(from: gradOutput, count: n * h)
        }
        for block in blocks.reversed() { block.backward(g, dx: g) }
        guard let embedding else { return UnsafePointer(g) }
        if embedDroppedOut { for i in 0..<(n * h) { g[i] *= embedMask.data[i] } }
        let de = embedding.embed.grad.data, dp = embedding.pos.grad.data, ids = inputIds.data
        for r in 0..<n {
            Kernels.add(h, g + r * h, de + ids[r] * h)
            Kernels.add(h, g + r * h, dp + (r % lastT) * h)
        }
        return nil
    }
}

extension TransformerStage: ModelStage {
    public func forward(_ batch: TokenWindows, input: UnsafePointer<Float>?, context: ForwardContext) -> UnsafePointer<Float> {
        forward(batch.tokens, batch: batch.batch, tokens: batch.positions, rowStride: batch.length, domains: batch.domains,
                input: input, context: context)
    }

    public func loss(_ batch: TokenWindows) -> ObjectiveSums { loss(batch.tokens, rowStride: batch.length) }

    public func backward(_ batch: TokenWindows, gradOutput: UnsafePointer<Float>?, lossScale: Float) -> UnsafePointer<Float>? {
        backward(gradOutput: gradOutput, lossScale: lossScale)
    }
}

/// The transformer's stages (`split.strategy: layerwise`): runs of its blocks; an auxiliary head
/// is an `LMHead` `LN(h) · Wᵀ` with its own norm and weight `[vocab, hidden]` (GPT-2
/// initialisation N(0, 0.02²), drawn from `RNG(seed, "init/aux/<s>/head/weight")`).
extension TransformerLM: StagedModel {
    public var blockCount: Int { config.blocks }
    public var hiddenWidth: Int { config.hidden }
    public func activationRows(of batch: TokenWindows) -> Int { batch.scoredTokens }

    public func stage(_ range: Range<Int>, embed: Bool, head: Bool) -> TransformerStage {
        TransformerStage(config: config, embedding: embed ? (self.embed, pos) : nil, blocks: Array(blocks[range]),
                         head: head ? LMHead(norm: norm, weight: outputWeight, ownsWeight: self.head != nil) : nil)
    }

    public func auxiliaryStage(_ range: Range<Int>, embed: Bool, index s: Int, seed: UInt64) -> (stage: TransformerStage, head: [Parameter]) {
        let norm = LayerNorm("aux/\(s)/norm", dim: config.hidden, eps: config.normEps)
        let weight = Parameter(name: "aux/\(s)/head/weight", shape: [config.vocab, config.hidden])
        Initializer.normal(weight, std: 0.02, seed: seed)
        let head = LMHead(norm: norm, weight: weight)
        return (TransformerStage(config: config, embedding: embed ? (self.embed, pos) : nil, blocks: Array(blocks[range]), head: head),
                head.parameters)
    }
}
