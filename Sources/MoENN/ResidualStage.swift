import MoECore

/// The classifier head of ARCHITECTURE §5.3 with its loss, reading hidden states `h [n, hidden]`:
///
///     logits = Linear(LN(h))                 (hidden → classes)
///     L = CrossEntropy(logits, y)            mean over the n rows
///     backward: dlogits = scale · (softmax − onehot(y)) / n,  dh = LNᵀ(Linearᵀ(dlogits))
///
/// A view: `norm` and `linear` are the model's layers (the final `norm`/`head`, or an auxiliary
/// head of decoupled greedy learning); the head owns only its activations, in buffers sized for
/// the largest batch seen.
public final class ClassifierHead {
    public let norm: LayerNorm
    public let linear: Linear
    public var classes: Int { linear.outFeatures }

    private let normed: Scratch, mean: Scratch, rstd: Scratch, logitsBuffer: Scratch, probsBuffer: Scratch
    private let gradNormed: Scratch, gradLogits: Scratch
    private var input: UnsafePointer<Float>?
    private var rows = 0

    public init(norm: LayerNorm, linear: Linear) {
        precondition(norm.dim == linear.inFeatures, "the head's norm and linear disagree on the width")
        self.norm = norm
        self.linear = linear
        normed = Scratch(width: norm.dim); mean = Scratch(width: 1); rstd = Scratch(width: 1)
        logitsBuffer = Scratch(width: linear.outFeatures); probsBuffer = Scratch(width: linear.outFeatures)
        gradNormed = Scratch(width: norm.dim); gradLogits = Scratch(width: linear.outFeatures)
    }

    /// Logits of the last `forward`, `[rows, classes]`.
    public var logits: UnsafeMutablePointer<Float> { logitsBuffer.data }
    /// Softmax probabilities of the last `loss`, `[rows, classes]`.
    public var probabilities: UnsafeMutablePointer<Float> { probsBuffer.data }

    /// `logits = Linear(LN(h))` for `n` rows; `h` must stay valid until `backward`.
    public func forward(_ h: UnsafePointer<Float>, rows n: Int) {
        normed.ensure(rows: n); mean.ensure(rows: n); rstd.ensure(rows: n); logitsBuffer.ensure(rows: n)
        input = h
        rows = n
        norm.forward(h, rows: n, into: normed.data, mean: mean.data, rstd: rstd.data)
        linear.forward(normed.data, rows: n, into: logitsBuffer.data)
    }

    /// Cross-entropy of the last `forward`'s logits against `labels`: mean loss and correct argmax
    /// predictions.
    public func loss(labels: UnsafePointer<Int>, rows n: Int) -> (loss: Double, correct: Int) {
        precondition(input != nil && n == rows, "ClassifierHead.loss needs the forward of the same rows")
        probsBuffer.ensure(rows: n)
        return CrossEntropy.forward(logitsBuffer.data, labels: labels, rows: n, classes: classes, probs: probsBuffer.data)
    }

    /// Backward of the last `loss` (its gradient times `lossScale`): accumulates the norm's and
    /// the linear layer's parameter gradients and writes `∂L/∂h` into `dh`.
    public func backward(labels: UnsafePointer<Int>, lossScale: Float, dh: UnsafeMutablePointer<Float>) {
        guard let h = input else { preconditionFailure("ClassifierHead.backward before forward") }
        let n = rows
        gradNormed.ensure(rows: n); gradLogits.ensure(rows: n)
        CrossEntropy.backward(probs: probsBuffer.data, labels: labels, rows: n, classes: classes,
                              scale: lossScale, dlogits: gradLogits.data)
        linear.backward(normed.data, gradLogits.data, rows: n, dx: gradNormed.data)
        norm.backward(h, gradNormed.data, rows: n, mean: mean.data, rstd: rstd.data, dx: dh)
    }

    public var parameters: [Parameter] { norm.parameters + linear.parameters }

    var activationStorage: [UnsafeMutablePointer<Float>] {
        [normed, mean, rstd, logitsBuffer, probsBuffer, gradNormed, gradLogits].map(\.data)
    }
}

/// The one forward and backward walk of the residual MLP, over a contiguous run of its blocks:
///
///     h = embed(x)             when the stage has the embedding (else h = its input)
///     h = block_i(h)           for i in the stage's blocks, in order
///     logits = head(h)         when the stage has a head (then `loss` gives the cross-entropy)
///
/// `ResidualMLP` is the stage of all blocks with the embedding and the final head; a GPipe stage
/// (`PipelineTrainer`) is the run `ranges[s]` with the embedding on the first stage and the head on
/// the last; a stage of decoupled greedy learning (`LayerwiseModel`) has an auxiliary head on
/// every stage but the last. The layers are the model's (a view); the stage owns the activations
/// of its run (`embed`'s output and one stream per block), sized for the largest batch seen.
///
/// Backward starts from the head's loss when the stage has a head, else from `gradOutput`
/// (∂L/∂output from the next stage); it accumulates the parameter gradients and returns ∂L/∂input,
/// or nil when the input is the data (the stage has the embedding). Each block's backward writes
/// its input gradient in place over one buffer: `dx = dy + LNᵀ(Fᵀ(dy))`.
public final class ResidualStage {
    public let embed: Linear?
    public let blocks: [ResidualBlock]
    public let head: ClassifierHead?
    /// The parameters the stage trains, in checkpoint order: embedding, blocks, head.
    public let parameters: [Parameter]

    private let embedded: Scratch
    private let streams: [Scratch]
    /// ∂L/∂(stage input) after `backward` (∂L/∂h in between).
    private let gradStream: Scratch
    private var lastInput: UnsafePointer<Float>?
    private var lastOutput: UnsafePointer<Float>?
    private var lastRows = 0

    public init(embed: Linear?, blocks: [ResidualBlock], head: ClassifierHead?) {
        let widths = (embed.map { [$0.outFeatures] } ?? []) + blocks.map(\.norm.dim) + (head.map { [$0.norm.dim] } ?? [])
        guard let hidden = widths.first, widths.allSatisfy({ $0 == hidden }) else {
            preconditionFailure("a stage needs at least one layer, all of the same width")
        }
        self.embed = embed
        self.blocks = blocks
        self.head = head
        parameters = (embed?.parameters ?? []) + blocks.flatMap(\.parameters) + (head?.parameters ?? [])
        embedded = Scratch(width: hidden)
        streams = blocks.map { _ in Scratch(width: hidden) }
        gradStream = Scratch(width: hidden)
    }

    /// The stage's output `[n, hidden]` of the last forward (the last block's, else the embedding's,
    /// else the input).
    public var output: UnsafePointer<Float> {
        guard let lastOutput else { preconditionFailure("ResidualStage.output before forward") }
        return lastOutput
    }

    /// Runs the stage on `n` rows: `input` is `x [n, features]` when the stage has the embedding,
    /// else hidden states `[n, hidden]`; it must stay valid until `backward`. Returns the output
    /// `[n, hidden]` (valid until the next forward); with a head, its logits are computed too.
    @discardableResult
    public func forward(_ input: UnsafePointer<Float>, rows n: Int, context: ForwardContext) -> UnsafePointer<Float> {
        lastInput = input
        lastRows = n
        var h = input
        if let embed {
            embedded.ensure(rows: n)
            embed.forward(input, rows: n, into: embedded.data)
            h = UnsafePointer(embedded.data)
        }
        for (i, block) in blocks.enumerated() {
            streams[i].ensure(rows: n)
            block.forward(h, rows: n, into: streams[i].data, context: context)
            h = UnsafePointer(streams[i].data)
        }
        lastOutput = h
        head?.forward(h, rows: n)
        return h
    }

    /// The head's cross-entropy of the last forward against `labels` (which must stay valid until
    /// `backward`): mean loss and correct predictions.
    public func loss(labels: UnsafePointer<Int>, rows n: Int) -> (loss: Double, correct: Int) {
        guard let head else { preconditionFailure("ResidualStage.loss on a stage without a head") }
        precondition(n == lastRows, "ResidualStage.loss after the forward of the same rows")
        return head.loss(labels: labels, rows: n)
    }

    /// Backward of the last forward (and `loss`): from the head's loss of `labels`, its gradient
    /// scaled by `lossScale`, when the stage has a head; else from `gradOutput`. Accumulates the
    /// stage's parameter gradients and returns ∂L/∂input (valid until the next backward), nil when
    /// the stage has the embedding.
    @discardableResult
    public func backward(gradOutput: UnsafePointer<Float>?, labels: UnsafePointer<Int>?, lossScale: Float) -> UnsafePointer<Float>? {
        guard let x = lastInput else { preconditionFailure("ResidualStage.backward before forward") }
        let n = lastRows
        gradStream.ensure(rows: n)
        var dy: UnsafePointer<Float>
        if let head {
            guard let labels else { preconditionFailure("the backward of a stage with a head needs the labels") }
            head.backward(labels: labels, lossScale: lossScale, dh: gradStream.data)
            dy = UnsafePointer(gradStream.data)
        } else {
            guard let gradOutput else { preconditionFailure("the backward of a stage without a head needs ∂L/∂output") }
            dy = gradOutput
        }
        for block in blocks.reversed() {
            block.backward(dy, rows: n, dx: gradStream.data)
            dy = UnsafePointer(gradStream.data)
        }
        if let embed {
            embed.backward(x, dy, rows: n, dx: nil)
            return nil
        }
        return dy
    }

    /// Addresses of the stage's activation buffers, its blocks' and its head's.
    var activationStorage: [UnsafeMutablePointer<Float>] {
        [embedded, gradStream].map(\.data) + streams.map(\.data) + (head?.activationStorage ?? [])
            + blocks.flatMap(\.activationStorage)
    }
}

extension ResidualMLP {
    /// A stage over blocks `range` of this model: with the embedding when `embed`, with the
    /// model's final `norm` + `head` when `head` (see `ResidualStage`).
    public func stage(_ range: Range<Int>, embed: Bool, head: Bool) -> ResidualStage {
        ResidualStage(embed: embed ? self.embed : nil, blocks: Array(blocks[range]),
                      head: head ? ClassifierHead(norm: norm, linear: self.head) : nil)
    }
}
