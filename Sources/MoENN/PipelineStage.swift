import MoECore

/// One stage of a residual MLP trained end to end through a pipeline (GPipe, Huang et al. 2019):
/// stage s of S owns blocks `LayerwiseModel.partition(blocks:stages:)[s]`; stage 0 also owns
/// `embed`, the last stage also `norm` + `head` and computes the cross-entropy.
///
///     stage 0:      h = blocks_{b₀…}(embed(x))
///     stage s:      h = blocks_{b_s…}(h_{s−1})
///     stage S−1:    logits = head(LN(blocks_{…B−1}(h_{S−2}))),  L = CrossEntropy(logits, y)
///
/// A view of the shared `ResidualMLP` (every rank builds the whole model from the seed, so the
/// initial values are identical): its walk is the model's own, `ResidualStage`, over the stage's
/// blocks, holding activations only for its own layers, in buffers sized for the largest
/// micro-batch seen. Forward reads its input by pointer and keeps that pointer for backward (the
/// caller keeps the micro-batch's stage input alive: GPipe stores only the stage inputs and re-runs
/// the forward before each backward). Backward accumulates the stage's parameter gradients (so
/// micro-batches add up) and returns ∂L/∂input (nil for stage 0, whose input is the data).
///
/// A single stage is not a `TrainableModel` (only the last one has an objective); the stack of all
/// S stages computes exactly what the `ResidualMLP` computes, so the model a pipeline trains is
/// the `ResidualMLP` itself.
public final class PipelineStage {
    public let model: ResidualMLP
    public let index: Int
    public let stageCount: Int
    public let blocks: Range<Int>
    /// The parameters this stage trains, in checkpoint order.
    public let parameters: [Parameter]
    public var isFirst: Bool { index == 0 }
    public var isLast: Bool { index == stageCount - 1 }

    /// The stage's forward and backward walk.
    public let walk: ResidualStage

    /// The parameters of stage `s` of `model` cut into `ranges` (disjoint; their union, in stage
    /// order, is `model.parameters`).
    public static func parameters(of model: ResidualMLP, stage s: Int, ranges: [Range<Int>]) -> [Parameter] {
        model.stage(ranges[s], embed: s == 0, head: s == ranges.count - 1).parameters
    }

    public init(model: ResidualMLP, stage: Int, ranges: [Range<Int>]) {
        precondition(model.config.moe == nil, "pipeline stages take a dense model")
        precondition(ranges.indices.contains(stage) && !ranges[stage].isEmpty, "stage \(stage) has no block")
        self.model = model
        index = stage
        stageCount = ranges.count
        blocks = ranges[stage]
        walk = model.stage(blocks, embed: stage == 0, head: stage == ranges.count - 1)
        parameters = walk.parameters
    }

    public var hidden: Int { model.config.hidden }

    /// Runs the stage on `n` rows: `input` is `x [n, features]` for stage 0, else the previous
    /// stage's output `[n, hidden]`; it must stay valid until `backward`. Returns the stage's
    /// output `[n, hidden]` (valid until the next forward). The last stage then needs `loss`.
    @discardableResult
    public func forward(_ input: UnsafePointer<Float>, rows n: Int, context: ForwardContext) -> UnsafePointer<Float> {
        walk.forward(input, rows: n, context: context)
    }

    /// The last stage's cross-entropy of its last forward: mean loss and correct predictions.
    public func loss(labels: UnsafePointer<Int>, rows n: Int) -> (loss: Double, correct: Int) {
        precondition(isLast, "loss on the last stage after its forward")
        return walk.loss(labels: labels, rows: n)
    }

    /// Backward of the last forward (and, for the last stage, `loss`). `gradOutput` is ∂L/∂output
    /// `[n, hidden]` from the next stage (ignored by the last stage, which starts from the
    /// cross-entropy of `labels`, its gradient scaled by `lossScale`). Accumulates the stage's
    /// parameter gradients; returns ∂L/∂input (valid until the next backward), nil for stage 0.
    @discardableResult
    public func backward(gradOutput: UnsafePointer<Float>?, labels: UnsafePointer<Int>?, lossScale: Float) -> UnsafePointer<Float>? {
        walk.backward(gradOutput: isLast ? nil : gradOutput, labels: labels, lossScale: lossScale)
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
