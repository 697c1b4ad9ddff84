import MoECore

/// A residual MLP cut into E contiguous stages, each trained on its own auxiliary loss
/// (decoupled greedy learning, Belilovsky et al. 2019/2020).
///
/// Stage s owns blocks `[b_s, b_{s+1})` (stage 0 also owns `embed`) and an auxiliary head
/// `A_s = Linear_s ∘ LN_s` (hidden → classes); the last stage's head is the model's own `norm` +
/// `head`. With `h_{−1} = x` and `h_s = stage_s(h_{s−1})`:
///
///     L_s = CrossEntropy(A_s(h_s), y),   h_{s−1} treated as a constant (detached)
///
/// so `∂L_s/∂θ_t = 0` for t ≠ s and each parameter θ_s receives exactly `∂L_s/∂θ_s`: the
/// backward of stage s stops at its input. Because the stage losses touch disjoint parameters,
/// minimising `Σ_s L_s` with one optimizer is the same as E independent per-stage optimizers
/// (with per-stage gradient clipping, see `LayerwiseTrainer`).
///
/// Stacking is free: the stages' blocks are `model.blocks` in order and the last stage's head is
/// `model.norm`/`model.head`, so `model` (a plain `ResidualMLP`) *is* the stacked network and its
/// forward equals the last stage's forward. Auxiliary heads are named `aux/<s>/norm/…` and
/// `aux/<s>/head/…` for s < E − 1. Each stage runs the model's one walk, `ResidualStage`, over
/// its blocks with its own head (`walks`); as a `TrainableModel` the stack's objective is the last
/// stage's (see `LayerwiseModel+Trainable`).
public final class LayerwiseModel {
    public let model: ResidualMLP
    /// Block ranges of the stages, in order; they cover `0..<blocks` exactly.
    public let stages: [Range<Int>]
    /// The stages' forward and backward walks: views of `model` over `stages[s]`, stage 0 with the
    /// embedding, each with its head (auxiliary, or the model's own for the last).
    public let walks: [ResidualStage]
    /// Auxiliary heads of stages 0 … E−2 (the last stage uses `model.norm` and `model.head`).
    public let auxNorms: [LayerNorm]
    public let auxHeads: [Linear]
    /// Every parameter: the model's (checkpoint order), then the auxiliary heads'.
    public let parameters: [Parameter]
    /// The parameters of the auxiliary heads only.
    public let auxParameters: [Parameter]
    /// The parameters each stage's loss trains (disjoint; their union is `parameters`).
    public let stageParameters: [[Parameter]]
    /// Each stage's objective sums of the last forward (the last entry is the stacked model's).
    public private(set) var stageSums: [ObjectiveSums] = []

    private var lastLabels: UnsafePointer<Int>?

    /// Splits `blocks` blocks into `stages` contiguous stages as evenly as possible: the first
    /// `blocks mod stages` stages get one block more (as `numpy.array_split`).
    public static func partition(blocks: Int, stages: Int) -> [Range<Int>] {
        precondition(stages >= 1 && stages <= blocks, "need 1 ≤ stages ≤ blocks")
        return EvenSplit.ranges(blocks, parts: stages)
    }

    /// A dense model of `config` (PyTorch-default initialisation from `seed`) cut into `stages`
    /// stages; the auxiliary heads are initialised like the model's head, from the same seed.
    public init(config: ModelConfig, stages: Int, seed: UInt64) {
        precondition(config.moe == nil, "layer-wise training takes a dense model")
        let model = ResidualMLP(config: config, seed: seed)
        self.model = model
        let ranges = Self.partition(blocks: config.blocks, stages: stages)
        self.stages = ranges
        let h = config.hidden, c = config.classes
        auxNorms = (0..<(stages - 1)).map { LayerNorm("aux/\($0)/norm", dim: h, eps: config.normEps) }
        auxHeads = (0..<(stages - 1)).map { s in
            let head = Linear("aux/\(s)/head", in: h, out: c)
            head.initialize(seed: seed &+ UInt64(s + 1))
            return head
        }
        auxParameters = zip(auxNorms, auxHeads).flatMap { $0.parameters + $1.parameters }
        parameters = model.parameters + auxParameters
        let auxNorms = auxNorms, auxHeads = auxHeads
        walks = ranges.enumerated().map { s, range in
            s == stages - 1 ? model.stage(range, embed: s == 0, head: true)
                : ResidualStage(embed: s == 0 ? model.embed : nil, blocks: Array(model.blocks[range]),
                                head: ClassifierHead(norm: auxNorms[s], linear: auxHeads[s]))
        }
        stageParameters = walks.map(\.parameters)
    }

    /// Forward through every stage, each followed by its head and cross-entropy against `labels`
    /// (which must stay valid until `backward`). Returns each stage's mean loss and correct count;
    /// the last entry is the stacked model's. Stage s reads stage s − 1's output.
    @discardableResult
    public func forward(_ x: UnsafePointer<Float>, labels: UnsafePointer<Int>, rows n: Int,
                        context: ForwardContext) -> [(loss: Double, correct: Int)] {
        lastLabels = labels
        var h = x
        let out = walks.map { stage in
            h = stage.forward(h, rows: n, context: context)
            return stage.loss(labels: labels, rows: n)
        }
        stageSums = out.map { ObjectiveSums(lossSum: $0.loss * Double(n), correct: $0.correct, scored: n) }
        return out
    }

    /// Backward of the last `forward`: accumulates `∂L_s/∂θ_s` (times `lossScale`) into each
    /// stage's parameters. The gradient reaching a stage's input is dropped (the input is
    /// detached), so no stage's parameters see a later stage's loss.
    public func backward(lossScale: Float = 1) {
        guard let labels = lastLabels else { preconditionFailure("backward before forward") }
        for stage in walks.reversed() {
            // Returns ∂L_s/∂h_{s−1}: stage s − 1's output is detached, so it stops here.
            stage.backward(gradOutput: nil, labels: labels, lossScale: lossScale)
        }
    }

    /// Each stage's objective sums over a whole data set, forwarded in chunks of at most
    /// `batchSize` rows without dropout; the last entry is the stacked model's.
    public func stageEvaluationSums(_ data: LabelledRows, batchSize: Int) -> [ObjectiveSums] {
        var sums = [ObjectiveSums](repeating: ObjectiveSums(), count: stages.count)
        data.forEachChunk(rows: batchSize, features: model.config.features) { chunk in
            _ = forward(chunk, context: ForwardContext(training: false, step: 0, seed: 0))
            for s in sums.indices { sums[s] += stageSums[s] }
        }
        return sums
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
    /// Per stage: cross-entropy of the batch through the stage's head and correct predictions.
    public var stageLoss: [Double]
    public var stageCorrect: [Int]
    /// Global gradient norm `√(Σ_s ‖g_s‖²)` before clipping.
    public var gradNorm: Double
    public var lr: Float
    /// The stacked model's loss (the last stage's).
    public var loss: Double { stageLoss.last! }
}

/// One layer-wise step at a time: zero gradients → forward of all stages → every stage's own
/// backward → per-stage clipping → one optimizer update over all parameters.
///
/// Gradient clipping is per stage (each `g_s` scaled to at most `gradClip`), so the step equals
/// E independent stage optimizers sharing one learning-rate schedule.
public final class LayerwiseTrainer {
    public let network: LayerwiseModel
    public let config: OptimizerConfig
    public let optimizer: Optimizer
    public let schedule: LRSchedule
    public let seed: UInt64

    public init(network: LayerwiseModel, config: OptimizerConfig, totalSteps: Int, seed: UInt64) {
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
    public func trainStep(_ x: UnsafePointer<Float>, labels: UnsafePointer<Int>, rows n: Int) -> LayerwiseStepResult {
        let t = step
        network.parameters.zeroGrad()
        let out = network.forward(x, labels: labels, rows: n, context: ForwardContext(training: true, step: t, seed: seed))
        let lr = schedule.lr(at: t)
        var result = LayerwiseStepResult(stageLoss: out.map(\.loss), stageCorrect: out.map(\.correct), gradNorm: .nan, lr: lr)
        guard out.allSatisfy({ $0.loss.isFinite }) else { return result }
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
