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
/// `aux/<s>/head/…` for s < E − 1.
public final class LayerwiseModel {
    public let model: ResidualMLP
    /// Block ranges of the stages, in order; they cover `0..<blocks` exactly.
    public let stages: [Range<Int>]
    /// Auxiliary heads of stages 0 … E−2 (the last stage uses `model.norm` and `model.head`).
    public let auxNorms: [LayerNorm]
    public let auxHeads: [Linear]
    /// Every parameter: the model's (checkpoint order), then the auxiliary heads'.
    public let parameters: [Parameter]
    /// The parameters of the auxiliary heads only.
    public let auxParameters: [Parameter]
    /// The parameters each stage's loss trains (disjoint; their union is `parameters`).
    public let stageParameters: [[Parameter]]

    private let streams: [Scratch]
    private let normed: [Scratch], means: [Scratch], rstds: [Scratch], logits: [Scratch], probs: [Scratch]
    private let gradStream: Scratch, gradNormed: Scratch, gradLogits: Scratch
    private var lastInput: UnsafePointer<Float>?
    private var lastLabels: UnsafePointer<Int>?
    private var lastRows = 0

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
        model = ResidualMLP(config: config, seed: seed)
        self.stages = Self.partition(blocks: config.blocks, stages: stages)
        let h = config.hidden, c = config.classes
        auxNorms = (0..<(stages - 1)).map { LayerNorm("aux/\($0)/norm", dim: h, eps: config.normEps) }
        auxHeads = (0..<(stages - 1)).map { s in
            let head = Linear("aux/\(s)/head", in: h, out: c)
            head.initialize(seed: seed &+ UInt64(s + 1))
            return head
        }
        auxParameters = zip(auxNorms, auxHeads).flatMap { $0.parameters + $1.parameters }
        parameters = model.parameters + auxParameters
        var perStage: [[Parameter]] = []
        for (s, range) in self.stages.enumerated() {
            var ps = s == 0 ? model.embed.parameters : []
            for b in range { ps += model.blocks[b].parameters }
            ps += s == stages - 1 ? model.norm.parameters + model.head.parameters
                                  : auxNorms[s].parameters + auxHeads[s].parameters
            perStage.append(ps)
        }
        stageParameters = perStage
        streams = (0...config.blocks).map { _ in Scratch(width: h) }
        normed = (0..<stages).map { _ in Scratch(width: h) }
        means = (0..<stages).map { _ in Scratch(width: 1) }
        rstds = (0..<stages).map { _ in Scratch(width: 1) }
        logits = (0..<stages).map { _ in Scratch(width: c) }
        probs = (0..<stages).map { _ in Scratch(width: c) }
        gradStream = Scratch(width: h); gradNormed = Scratch(width: h); gradLogits = Scratch(width: c)
    }

    /// The head (norm, linear) that reads stage s's output.
    private func head(_ s: Int) -> (LayerNorm, Linear) {
        s == stages.count - 1 ? (model.norm, model.head) : (auxNorms[s], auxHeads[s])
    }

    /// Forward through every stage, each followed by its head and cross-entropy against `labels`
    /// (which must stay valid until `backward`). Returns each stage's mean loss and correct count;
    /// the last entry is the stacked model's.
    @discardableResult
    public func forward(_ x: UnsafePointer<Float>, labels: UnsafePointer<Int>, rows n: Int,
                        context: ForwardContext) -> [(loss: Double, correct: Int)] {
        for s in streams { s.ensure(rows: n) }
        for buffers in [normed, means, rstds, logits, probs] { for b in buffers { b.ensure(rows: n) } }
        lastInput = x; lastLabels = labels; lastRows = n
        model.embed.forward(x, rows: n, into: streams[0].data)
        var out: [(loss: Double, correct: Int)] = []
        for (s, range) in stages.enumerated() {
            for b in range {
                model.blocks[b].forward(streams[b].data, rows: n, into: streams[b + 1].data, context: context)
            }
            let (norm, linear) = head(s)
            norm.forward(streams[range.upperBound].data, rows: n, into: normed[s].data,
                         mean: means[s].data, rstd: rstds[s].data)
            linear.forward(normed[s].data, rows: n, into: logits[s].data)
            out.append(CrossEntropy.forward(logits[s].data, labels: labels, rows: n,
                                            classes: model.config.classes, probs: probs[s].data))
        }
        return out
    }

    /// Backward of the last `forward`: accumulates `∂L_s/∂θ_s` into each stage's parameters. The
    /// gradient reaching a stage's input is dropped (the input is detached), so no stage's
    /// parameters see a later stage's loss.
    public func backward() {
        guard let x = lastInput, let labels = lastLabels else { preconditionFailure("backward before forward") }
        let n = lastRows
        gradStream.ensure(rows: n); gradNormed.ensure(rows: n); gradLogits.ensure(rows: n)
        for (s, range) in stages.enumerated().reversed() {
            let (norm, linear) = head(s)
            CrossEntropy.backward(probs: probs[s].data, labels: labels, rows: n, classes: model.config.classes,
                                  scale: 1, dlogits: gradLogits.data)
            linear.backward(normed[s].data, gradLogits.data, rows: n, dx: gradNormed.data)
            norm.backward(streams[range.upperBound].data, gradNormed.data, rows: n, mean: means[s].data,
                          rstd: rstds[s].data, dx: gradStream.data)
            for b in range.reversed() { model.blocks[b].backward(gradStream.data, rows: n, dx: gradStream.data) }
            // gradStream now holds ∂L_s/∂h_{s−1}: stage s − 1's output is detached, so it stops here.
            if s == 0 { model.embed.backward(x, gradStream.data, rows: n, dx: nil) }
        }
    }

    /// Each stage's mean loss and accuracy over a data set, in batches (no dropout); the last
    /// entry is the stacked model's.
    public func evaluate(x: Tensor, labels: [Int], batchSize: Int = 1024) -> [(loss: Double, accuracy: Double)] {
        let n = x.rows, e = stages.count
        guard n > 0 else { return Array(repeating: (0, 0), count: e) }
        var loss = [Double](repeating: 0, count: e), correct = [Int](repeating: 0, count: e)
        labels.withUnsafeBufferPointer { lb in
            var start = 0
            while start < n {
                let rows = min(batchSize, n - start)
                let r = forward(x.row(start), labels: lb.baseAddress! + start, rows: rows,
                                context: ForwardContext(training: false, step: 0, seed: 0))
                for s in 0..<e { loss[s] += r[s].loss * Double(rows); correct[s] += r[s].correct }
                start += rows
            }
        }
        return (0..<e).map { (loss[$0] / Double(n), Double(correct[$0]) / Double(n)) }
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
