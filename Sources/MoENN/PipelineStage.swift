import MoECore

/// One stage of a residual MLP trained end to end through a pipeline (GPipe, Huang et al. 2019):
/// stage s of S owns blocks `LayerwiseModel.partition(blocks:stages:)[s]`; stage 0 also owns
/// `embed`, the last stage also `norm` + `head` and computes the cross-entropy.
///
///     stage 0:      h = blocks_{b₀…}(embed(x))
///     stage s:      h = blocks_{b_s…}(h_{s−1})
///     stage S−1:    logits = head(LN(blocks_{…B−1}(h_{S−2}))),  L = CrossEntropy(logits, y)
///
/// The stage reads the shared `ResidualMLP`'s layers (every rank builds the whole model from the
/// seed, so the initial values are identical) but computes and holds activations only for its
/// own layers, in buffers sized for the largest micro-batch seen. Forward reads its input by
/// pointer and keeps that pointer for backward (the caller keeps the micro-batch's stage input
/// alive: GPipe stores only the stage inputs and re-runs the forward before each backward).
/// Backward accumulates the stage's parameter gradients (so micro-batches add up) and returns
/// ∂L/∂input (nil for stage 0, whose input is the data).
public final class PipelineStage {
    public let model: ResidualMLP
    public let index: Int
    public let stageCount: Int
    public let blocks: Range<Int>
    /// The parameters this stage trains, in checkpoint order.
    public let parameters: [Parameter]
    public var isFirst: Bool { index == 0 }
    public var isLast: Bool { index == stageCount - 1 }

    private let embedded: Scratch
    private let streams: [Scratch]
    private let normed: Scratch, mean: Scratch, rstd: Scratch, logits: Scratch, probs: Scratch
    private let gradLogits: Scratch, gradNormed: Scratch
    /// ∂L/∂(stage input), written by `backward`.
    private let gradStream: Scratch
    private var lastInput: UnsafePointer<Float>?
    private var lastRows = 0

    /// The parameters of stage `s` of `model` cut into `ranges` (disjoint; their union, in stage
    /// order, is `model.parameters`).
    public static func parameters(of model: ResidualMLP, stage s: Int, ranges: [Range<Int>]) -> [Parameter] {
        var ps = s == 0 ? model.embed.parameters : []
        for b in ranges[s] { ps += model.blocks[b].parameters }
        if s == ranges.count - 1 { ps += model.norm.parameters + model.head.parameters }
        return ps
    }

    public init(model: ResidualMLP, stage: Int, ranges: [Range<Int>]) {
        precondition(model.config.moe == nil, "pipeline stages take a dense model")
        precondition(ranges.indices.contains(stage) && !ranges[stage].isEmpty, "stage \(stage) has no block")
        self.model = model
        index = stage
        stageCount = ranges.count
        blocks = ranges[stage]
        parameters = Self.parameters(of: model, stage: stage, ranges: ranges)
        let h = model.config.hidden, c = model.config.classes
        embedded = Scratch(width: h)
        streams = blocks.map { _ in Scratch(width: h) }
        normed = Scratch(width: h); mean = Scratch(width: 1); rstd = Scratch(width: 1)
        logits = Scratch(width: c); probs = Scratch(width: c); gradLogits = Scratch(width: c)
        gradNormed = Scratch(width: h); gradStream = Scratch(width: h)
    }

    public var hidden: Int { model.config.hidden }

    /// Runs the stage on `n` rows: `input` is `x [n, features]` for stage 0, else the previous
    /// stage's output `[n, hidden]`; it must stay valid until `backward`. Returns the stage's
    /// output `[n, hidden]` (valid until the next forward). The last stage then needs `loss`.
    @discardableResult
    public func forward(_ input: UnsafePointer<Float>, rows n: Int, context: ForwardContext) -> UnsafePointer<Float> {
        lastInput = input
        lastRows = n
        var h = input
        if isFirst {
            embedded.ensure(rows: n)
            model.embed.forward(input, rows: n, into: embedded.data)
            h = UnsafePointer(embedded.data)
        }
        for (i, b) in blocks.enumerated() {
            streams[i].ensure(rows: n)
            model.blocks[b].forward(h, rows: n, into: streams[i].data, context: context)
            h = UnsafePointer(streams[i].data)
        }
        return h
    }

    /// The last stage's cross-entropy of its last forward: mean loss and correct predictions.
    public func loss(labels: UnsafePointer<Int>, rows n: Int) -> (loss: Double, correct: Int) {
        precondition(isLast && n == lastRows, "loss on the last stage after its forward")
        for b in [normed, mean, rstd, logits, probs] { b.ensure(rows: n) }
        model.norm.forward(streams[streams.count - 1].data, rows: n, into: normed.data, mean: mean.data, rstd: rstd.data)
        model.head.forward(normed.data, rows: n, into: logits.data)
        return CrossEntropy.forward(logits.data, labels: labels, rows: n, classes: model.config.classes, probs: probs.data)
    }

    /// Backward of the last forward (and, for the last stage, `loss`). `gradOutput` is ∂L/∂output
    /// `[n, hidden]` from the next stage (ignored by the last stage, which starts from the
    /// cross-entropy of `labels`, its gradient scaled by `lossScale`). Accumulates the stage's
    /// parameter gradients; returns ∂L/∂input (valid until the next backward), nil for stage 0.
    @discardableResult
    public func backward(gradOutput: UnsafePointer<Float>?, labels: UnsafePointer<Int>?, lossScale: Float) -> UnsafePointer<Float>? {
        guard let x = lastInput else { preconditionFailure("PipelineStage.backward before forward") }
        let n = lastRows
        gradStream.ensure(rows: n)
        var dy: UnsafePointer<Float>
        if isLast {
            guard let labels else { preconditionFailure("the last stage's backward needs the labels") }
            gradLogits.ensure(rows: n); gradNormed.ensure(rows: n)
            CrossEntropy.backward(probs: probs.data, labels: labels, rows: n, classes: model.config.classes,
                                  scale: lossScale, dlogits: gradLogits.data)
            model.head.backward(normed.data, gradLogits.data, rows: n, dx: gradNormed.data)
            model.norm.backward(streams[streams.count - 1].data, gradNormed.data, rows: n, mean: mean.data,
                                rstd: rstd.data, dx: gradStream.data)
            dy = UnsafePointer(gradStream.data)
        } else {
            guard let gradOutput else { preconditionFailure("stage \(index)'s backward needs ∂L/∂output") }
            dy = gradOutput
        }
        for b in blocks.reversed() {
            model.blocks[b].backward(dy, rows: n, dx: gradStream.data)
            dy = UnsafePointer(gradStream.data)
        }
        if isFirst {
            model.embed.backward(x, dy, rows: n, dx: nil)
            return nil
        }
        return dy
    }
}

/// GPipe's micro-batches: a batch of `n` rows cut into `count` contiguous runs of rows, as even
/// as possible (the first `n mod count` one row longer, as `numpy.array_split`); never an empty
/// run (a batch of fewer than `count` rows gives `n` micro-batches of one row).
public enum MicroBatches {
    public static func split(rows n: Int, count: Int) -> [Range<Int>] {
        precondition(n >= 0 && count >= 1)
        return EvenSplit.ranges(n, parts: max(1, min(count, n)))
    }
}
