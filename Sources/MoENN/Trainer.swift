import MoECore

/// Hyper-parameters of the optimisation loop (the spec's `train` section maps onto this).
public struct OptimizerConfig: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, CaseIterable, Sendable { case sgd, adamw }
    public var kind: Kind = .adamw
    public var lr: Float = 1e-3
    public var weightDecay: Float = 0.01
    /// SGD momentum μ.
    public var momentum: Float = 0.9
    public var nesterov: Bool = false
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    /// Global gradient-norm clipping threshold; nil = no clipping.
    public var gradClip: Double? = 1.0
    public var schedule: LRSchedule.Kind = .cosine
    public var warmupSteps: Int = 0
    public var minLR: Float = 0

    public init(kind: Kind = .adamw, lr: Float = 1e-3, weightDecay: Float = 0.01, momentum: Float = 0.9,
                nesterov: Bool = false, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                gradClip: Double? = 1.0, schedule: LRSchedule.Kind = .cosine, warmupSteps: Int = 0,
                minLR: Float = 0) {
        self.kind = kind; self.lr = lr; self.weightDecay = weightDecay; self.momentum = momentum
        self.nesterov = nesterov; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps
        self.gradClip = gradClip; self.schedule = schedule; self.warmupSteps = warmupSteps; self.minLR = minLR
    }

    /// The optimizer this configuration describes, over `parameters`.
    public func makeOptimizer(_ parameters: [Parameter]) -> Optimizer {
        switch kind {
        case .sgd: return SGD(parameters: parameters, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov)
        case .adamw: return AdamW(parameters: parameters, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay)
        }
    }

    public func makeSchedule(totalSteps: Int) -> LRSchedule {
        LRSchedule(kind: schedule, base: lr, warmupSteps: warmupSteps, totalSteps: totalSteps, minLR: minLR)
    }
}

/// What one optimisation step measured.
public struct StepResult: Sendable {
    /// Cross-entropy of the batch (the auxiliary losses are in `auxLoss`).
    public var loss: Double
    /// Weighted load-balancing + z losses of the MoE layers (0 for a dense model).
    public var auxLoss: Double = 0
    public var correct: Int
    /// Global gradient norm before clipping.
    public var gradNorm: Double
    public var lr: Float

    /// Public for the steps of other modules (the data-parallel step of MoEParallel).
    public init(loss: Double, auxLoss: Double = 0, correct: Int, gradNorm: Double, lr: Float) {
        self.loss = loss; self.auxLoss = auxLoss; self.correct = correct; self.gradNorm = gradNorm; self.lr = lr
    }
}

/// The local step strategy: one optimisation step at a time in one process, on any
/// `TrainableModel`: zero gradients → forward → backward → clip → update. Holds no data; the
/// caller feeds batches (so the same loop serves every split strategy).
public final class Trainer<Model: TrainableModel>: StepStrategy {
    public let model: Model
    public let config: OptimizerConfig
    public let optimizer: Optimizer
    public let schedule: LRSchedule
    public let seed: UInt64

    public init(model: Model, config: OptimizerConfig, totalSteps: Int, seed: UInt64) {
        self.model = model
        self.config = config
        self.optimizer = config.makeOptimizer(model.parameters)
        self.schedule = config.makeSchedule(totalSteps: totalSteps)
        self.seed = seed
    }

    /// Steps taken so far (the optimizer's count; restored with its state on resume).
    public var step: Int { optimizer.stepCount }

    /// Trains on one batch. A non-finite loss or gradient leaves the parameters untouched and is
    /// reported (a non-finite auxiliary loss is reported as the loss).
    public func trainStep(on batch: Model.Batch, stop: Bool = false) -> StepReport {
        let t = step
        var updated = false
        defer { model.finishStep(updated: updated) }
        model.parameters.zeroGrad()
        let out = model.forward(batch, context: ForwardContext(training: true, step: t, seed: seed))
        let aux = model.auxiliaryLoss
        let lr = schedule.lr(at: t)
        var report = StepReport(loss: out.meanLoss, correct: out.correct, scored: out.scored, auxLoss: aux, gradNorm: .nan, lr: lr, stop: stop)
        report.sums.lossSum = out.lossSum
        guard out.lossSum.isFinite, aux.isFinite else {
            if out.lossSum.isFinite { report.loss = aux }
            return report
        }
        model.backward(lossScale: 1)
        report.gradNorm = config.gradClip.map { model.parameters.clipGradientNorm($0) } ?? model.parameters.gradientNorm()
        guard report.gradNorm.isFinite else { return report }
        optimizer.step(lr: lr)
        updated = true
        return report
    }
}

extension Trainer where Model == ResidualMLP {
    /// Trains on one batch of `n` rows (see `trainStep(on:stop:)`).
    @discardableResult
    public func trainStep(_ x: UnsafePointer<Float>, labels: UnsafePointer<Int>, rows n: Int,
                          domains: UnsafePointer<Int>? = nil) -> StepResult {
        trainStep(on: LabelledRows(x: x, labels: labels, rows: n, domains: domains)).result
    }
}
