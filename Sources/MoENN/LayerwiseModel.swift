import MoECore

/// A model (`StagedModel`: the residual MLP or the transformer LM) cut into E contiguous stages,
/// each trained on its own auxiliary loss (decoupled greedy learning, Belilovsky et al.
/// 2019/2020).
///
/// Stage s owns blocks `[b_s, b_{s+1})` (stage 0 also owns the embedding) and an auxiliary head
/// `A_s` shaped like the model's head (`Linear ∘ LN` to the classes for the MLP, `LN · Wᵀ` to the
/// vocabulary for the LM); the last stage's head is the model's own `norm` + `head`. With
/// `h_{−1}` = the batch and `h_s = stage_s(h_{s−1})`:
///
///     L_s = CrossEntropy(A_s(h_s), targets),   h_{s−1} treated as a constant (detached)
///
/// so `∂L_s/∂θ_t = 0` for t ≠ s and each parameter θ_s receives exactly `∂L_s/∂θ_s`: the
/// backward of stage s stops at its input. Because the stage losses touch disjoint parameters,
/// minimising `Σ_s L_s` with one optimizer is the same as E independent per-stage optimizers
/// (with per-stage gradient clipping, see `LayerwiseTrainer`).
///
/// Stacking is free: the stages' blocks are `model.blocks` in order and the last stage's head is
/// the model's, so `model` *is* the stacked network and its forward equals the last stage's
/// forward. Auxiliary heads are named `aux/<s>/norm/…` and `aux/<s>/head/…` for s < E − 1. Each
/// stage runs the model's one walk over its blocks with its own head (`walks`); as a
/// `TrainableModel` the stack's objective is the last stage's (see `LayerwiseModel+Trainable`).
public final class LayerwiseModel<Model: StagedModel> {
    public let model: Model
    /// Block ranges of the stages, in order; they cover `0..<blocks` exactly.
    public let stages: [Range<Int>]
    /// The stages' forward and backward walks: views of `model` over `stages[s]`, stage 0 with the
    /// embedding, each with its head (auxiliary, or the model's own for the last).
    public let walks: [Model.Stage]
    /// Every parameter: the model's (checkpoint order), then the auxiliary heads'.
    public let parameters: [Parameter]
    /// The parameters of the auxiliary heads only (stage by stage).
    public let auxParameters: [Parameter]
    /// The parameters each stage's loss trains (disjoint; their union is `parameters`).
    public let stageParameters: [[Parameter]]
    /// Each stage's objective sums of the last forward (the last entry is the stacked model's).
    public private(set) var stageSums: [ObjectiveSums] = []

    private var lastBatch: Model.Batch?

    /// `model` cut into `stages` stages (`partition`); the auxiliary heads are drawn from `seed`
    /// like the model's head.
    public init(model: Model, stages: Int, seed: UInt64) {
        precondition(model.moeLayers.isEmpty, "layer-wise training takes a dense model")
        self.model = model
        let ranges = StagePartition.ranges(blocks: model.blockCount, stages: stages)
        self.stages = ranges
        var aux: [Parameter] = []
        walks = ranges.enumerated().map { s, range in
            if s == stages - 1 { return model.stage(range, embed: s == 0, head: true) }
            let (stage, head) = model.auxiliaryStage(range, embed: s == 0, index: s, seed: seed)
            aux += head
            return stage
        }
        auxParameters = aux
        parameters = model.parameters + aux
        stageParameters = walks.map(\.parameters)
    }

    /// Forward through every stage, each followed by its head and cross-entropy against the
    /// batch's targets (the batch must stay valid until `backward`). Returns each stage's sums;
    /// the last entry is the stacked model's. Stage s reads stage s − 1's output.
    @discardableResult
    public func forwardStages(_ batch: Model.Batch, context: ForwardContext) -> [ObjectiveSums] {
        lastBatch = batch
        var h: UnsafePointer<Float>? = nil
        stageSums = walks.map { stage in
            h = stage.forward(batch, input: h, context: context)
            return stage.loss(batch)
        }
        return stageSums
    }

    /// Backward of the last `forward`: accumulates `∂L_s/∂θ_s` (times `lossScale`) into each
    /// stage's parameters. The gradient reaching a stage's input is dropped (the input is
    /// detached), so no stage's parameters see a later stage's loss.
    public func backward(lossScale: Float = 1) {
        guard let batch = lastBatch else { preconditionFailure("backward before forward") }
        for stage in walks.reversed() {
            // Returns ∂L_s/∂h_{s−1}: stage s − 1's output is detached, so it stops here.
            stage.backward(batch, gradOutput: nil, lossScale: lossScale)
        }
    }

    /// Each stage's objective sums over a whole data set, forwarded in chunks of at most
    /// `batchSize` rows (samples or windows) without dropout; the last entry is the stacked model's.
    public func stageEvaluationSums(_ data: Model.Batch, batchSize: Int) -> [ObjectiveSums] {
        precondition(batchSize > 0, "evaluation batch size must be positive, got \(batchSize)")
        var sums = [ObjectiveSums](repeating: ObjectiveSums(), count: stages.count)
        let n = model.rowCount(of: data)
        var start = 0
        while start < n {
            let count = min(batchSize, n - start)
            forwardStages(model.rows(start..<(start + count), of: data), context: ForwardContext(training: false, step: 0, seed: 0))
            for s in sums.indices { sums[s] += stageSums[s] }
            start += count
        }
        return sums
    }
}

/// How `split.strategy: layerwise` cuts a block stack into stages.
public enum StagePartition {
    /// Splits `blocks` blocks into `stages` contiguous stages as evenly as possible: the first
    /// `blocks mod stages` stages get one block more (as `numpy.array_split`).
    public static func ranges(blocks: Int, stages: Int) -> [Range<Int>] {
        precondition(stages >= 1 && stages <= blocks, "need 1 ≤ stages ≤ blocks")
        return EvenSplit.ranges(blocks, parts: stages)
    }
}

extension LayerwiseModel where Model == ResidualMLP {
    /// `StagePartition.ranges`.
    public static func partition(blocks: Int, stages: Int) -> [Range<Int>] { StagePartition.ranges(blocks: blocks, stages: stages) }

    /// A dense residual MLP of `config` (PyTorch-default initialisation from `seed`) cut into
    /// `stages` stages; the auxiliary heads are initialised like the model's head, from the same seed.
    public convenience init(config: ModelConfig, stages: Int, seed: UInt64) {
        precondition(config.moe == nil, "layer-wise training takes a dense model")
        self.init(model: ResidualMLP(config: config, seed: seed), stages: stages, seed: seed)
    }

    /// Forward of `n` rows of `x` with `labels`: each stage's mean loss and correct count.
    @discardableResult
    public func forward(_ x: UnsafePointer<Float>, labels: UnsafePointer<Int>, rows n: Int,
                        context: ForwardContext) -> [(loss: Double, correct: Int)] {
        forwardStages(LabelledRows(x: x, labels: labels, rows: n), context: context).map { ($0.meanLoss, $0.correct) }
    }

    /// Each stage's mean loss and accuracy over a data set, in batches (no dropout); the last
    /// entry is the stacked model's.
    public func evaluate(x: Tensor, labels: [Int], batchSize: Int = 1024) -> [(loss: Double, accuracy: Double)] {
        let n = x.rows
        guard n > 0 else { return Array(repeating: (0, 0), count: stages.count) }
        let sums = labels.withUnsafeBufferPointer { lb in
            stageEvaluationSums(LabelledRows(x: x.data, labels: lb.baseAddress!, rows: n), batchSize: batchSize)
        }
        return sums.map { ($0.lossSum / Double(n), Double($0.correct) / Double(n)) }
    }
}

/// What one layer-wise optimisation step measured.
public struct LayerwiseStepResult: Sendable {
    /// Per stage: the objective of the batch through the stage's head.
    public var stageSums: [ObjectiveSums]
    /// Global gradient norm `√(Σ_s ‖g_s‖²)` before clipping.
    public var gradNorm: Double
    public var lr: Float
    /// Per stage: mean cross-entropy of the batch and correct predictions.
    public var stageLoss: [Double] { stageSums.map(\.meanLoss) }
    public var stageCorrect: [Int] { stageSums.map(\.correct) }
    /// The stacked model's loss (the last stage's).
    public var loss: Double { stageSums.last!.meanLoss }
}

/// One layer-wise step at a time: zero gradients → forward of all stages → every stage's own
/// backward → per-stage clipping → one optimizer update over all parameters.
///
/// Gradient clipping is per stage (each `g_s` scaled to at most `gradClip`), so the step equals
/// E independent stage optimizers sharing one learning-rate schedule.
public final class LayerwiseTrainer<Model: StagedModel> {
    public let network: LayerwiseModel<Model>
    public let config: OptimizerConfig
    public let optimizer: Optimizer
    public let schedule: LRSchedule
    public let seed: UInt64

    public init(network: LayerwiseModel<Model>, config: OptimizerConfig, totalSteps: Int, seed: UInt64) {
        self.network = network
        self.config = config
        optimizer = config.makeOptimizer(network.parameters)
        schedule = config.makeSchedule(totalSteps: totalSteps)
        self.seed = seed
    }

    public var step: Int { optimizer.stepCount }

    /// Trains every stage on one batch. A non-finite loss or gradient leaves the parameters
    /// untouched (reported as a non-finite `gradNorm`).
    @discardableResult
    public func trainStep(_ batch: Model.Batch) -> LayerwiseStepResult {
        let t = step
        network.parameters.zeroGrad()
        let out = network.forwardStages(batch, context: ForwardContext(training: true, step: t, seed: seed))
        let lr = schedule.lr(at: t)
        var result = LayerwiseStepResult(stageSums: out, gradNorm: .nan, lr: lr)
        guard out.allSatisfy({ $0.lossSum.isFinite }) else { return result }
        network.backward()
        var squares = 0.0
        for ps in network.stageParameters {
            let norm = config.gradClip.map { ps.clipGradientNorm($0) } ?? ps.gradientNorm()
            squares += norm * norm
        }
        result.gradNorm = squares.squareRoot()
        guard result.gradNorm.isFinite else { return result }
        optimizer.step(lr: lr)
        return result
    }
}

extension LayerwiseTrainer where Model == ResidualMLP {
    /// Trains every stage on `n` rows of `x` with `labels`.
    @discardableResult
    public func trainStep(_ x: UnsafePointer<Float>, labels: UnsafePointer<Int>, rows n: Int) -> LayerwiseStepResult {
        trainStep(LabelledRows(x: x, labels: labels, rows: n))
    }
}
