import MoECore
import MoEComm
import MoENN

/// A residual MLP of S stages (`PipelineStage`) trained end to end with the GPipe schedule
/// (Huang et al. 2019, "GPipe: Efficient Training of Giant Neural Networks using Pipeline
/// Parallelism"). With a group of S ranks, rank s owns stage s; with a group of one (the
/// reference run of `parallelism.mode: none`), the one process runs every stage in turn.
///
/// One optimisation step on a global batch of n rows cut into M micro-batches (`MicroBatches`):
///
///     forward  m = 0 … M−1:   stage s receives micro-batch m's activation [n_m, hidden] from
///                             s − 1, keeps it (the stage INPUT), computes, sends its output to
///                             s + 1; the last stage computes the cross-entropy
///     backward m = M−1 … 0:   stage s re-runs its forward on the kept input (re-materialisation:
///                             activation memory is one micro-batch's), receives ∂L/∂output from
///                             s + 1 (the last stage starts from the loss, scaled by n_m / n so the
///                             micro-batches add up to the gradient of the mean over n rows),
///                             back-propagates, accumulating parameter gradients, and sends
///                             ∂L/∂input to s − 1
///     update:                 one all-reduce of (Σ loss, Σ correct, Σ_own ‖g‖², flags) gives
///                             every rank the global gradient norm, hence the same clipping
///                             coefficient; each rank steps its own optimizer over its own
///                             parameters (AdamW and SGD update each parameter independently,
///                             so S optimizers equal one over the whole model)
///
/// The last micro-batch's activations are still in place when the backward starts, so its
/// recomputation is skipped. Dropout draws per row with `ForwardContext.rowOffset` = the
/// micro-batch's first row and `step` = the optimizer step, so the forward, the recomputation
/// and one process over the whole batch draw the same masks. The result equals one process
/// training the same model on the same batches up to float rounding (micro-batch GEMMs and the
/// order of the gradient sums).
public final class PipelineTrainer {
    public let model: ResidualMLP
    public let communicator: Communicator
    public let config: OptimizerConfig
    public let schedule: LRSchedule
    public let seed: UInt64
    public let microbatches: Int
    /// Block ranges of all S stages.
    public let ranges: [Range<Int>]
    /// The stages this process runs (all in a group of one, else stage `rank`).
    public let localStages: Range<Int>
    public let stages: [PipelineStage]
    /// This process's parameters (its stages', in checkpoint order) and their optimizer.
    public let parameters: [Parameter]
    public let optimizer: Optimizer
    /// Kept stage inputs `[n, hidden]` of stages 1 …, one row per batch row (the micro-batches
    /// are contiguous runs of rows); stage 0's input is the batch itself.
    private var inputs: [Int: Scratch] = [:]
    /// ∂L/∂output received from the next rank, `[n_m, hidden]`.
    private let gradIn: Scratch

    public init(model: ResidualMLP, stages count: Int, communicator: Communicator, config: OptimizerConfig,
                totalSteps: Int, seed: UInt64, microbatches: Int) {
        precondition(communicator.worldSize == 1 || communicator.worldSize == count, "one stage per rank")
        self.model = model
        self.communicator = communicator
        self.config = config
        self.seed = seed
        self.microbatches = microbatches
        ranges = LayerwiseModel.partition(blocks: model.config.blocks, stages: count)
        localStages = communicator.worldSize == 1 ? 0..<count : communicator.rank..<(communicator.rank + 1)
        let ranges = self.ranges
        stages = localStages.map { PipelineStage(model: model, stage: $0, ranges: ranges) }
        parameters = stages.flatMap(\.parameters)
        optimizer = config.makeOptimizer(parameters)
        schedule = config.makeSchedule(totalSteps: totalSteps)
        for s in localStages where s > 0 { inputs[s] = Scratch(width: model.config.hidden) }
        gradIn = Scratch(width: model.config.hidden)
    }

    public var step: Int { optimizer.stepCount }
    public var stageCount: Int { ranges.count }

    /// The rank that runs stage `s`.
    public func rank(ofStage s: Int) -> Int { communicator.worldSize == 1 ? 0 : s }

    private func stage(_ s: Int) -> PipelineStage { stages[s - localStages.lowerBound] }

    private func bytes(_ p: UnsafePointer<Float>, _ count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: p, count: count * MemoryLayout<Float>.stride)
    }

    private func receive(into p: UnsafeMutablePointer<Float>, count: Int, from source: Int) throws {
        let got = try communicator.receive(into: UnsafeMutableRawBufferPointer(start: p, count: count * 4), from: source)
        guard got == count * 4 else {
            throw CollectiveError.invalidArgument("pipeline: expected \(count * 4) bytes from rank \(source), got \(got)")
        }
    }

    /// One GPipe optimisation step on `x [n, features]` with `labels` (see the type's comment).
    /// `stop` is this rank's wish to stop after the step; the result's `stop` is true when any
    /// rank wished it. Loss and accuracy are over the whole batch, on every rank.
    public func trainStep(_ x: UnsafePointer<Float>, labels: UnsafePointer<Int>, rows n: Int, stop: Bool = false) throws -> PipelineStepResult {
        let start = DataParallelGroup.now()
        let before = communicator.statistics
        let t = step, lr = schedule.lr(at: t)
        let h = model.config.hidden, f = model.config.features, last = stageCount - 1, me = communicator.rank
        let micro = MicroBatches.split(rows: n, count: microbatches)
        parameters.zeroGrad()
        for s in inputs.values { s.ensure(rows: n) }
        gradIn.ensure(rows: micro.map(\.count).max() ?? 0)
        func context(_ r: Range<Int>) -> ForwardContext {
            var c = ForwardContext(training: true, step: t, seed: seed)
            c.rowOffset = r.lowerBound
            return c
        }
        func input(_ s: Int, _ r: Range<Int>) -> UnsafeMutablePointer<Float> {
            s == 0 ? UnsafeMutablePointer(mutating: x + r.lowerBound * f) : inputs[s]!.data + r.lowerBound * h
        }
        var lossSum = 0.0, correct = 0
        // Forward of every micro-batch, keeping each stage's input.
        for r in micro {
            for s in localStages {
                if s > 0, rank(ofStage: s - 1) != me { try receive(into: input(s, r), count: r.count * h, from: rank(ofStage: s - 1)) }
                let out = stage(s).forward(input(s, r), rows: r.count, context: context(r))
                if s == last {
                    let l = stage(s).loss(labels: labels + r.lowerBound, rows: r.count)
                    lossSum += l.loss * Double(r.count); correct += l.correct
                } else if rank(ofStage: s + 1) == me {
                    input(s + 1, r).update(from: out, count: r.count * h)
                } else {
                    try communicator.send(bytes(out, r.count * h), to: rank(ofStage: s + 1))
                }
            }
        }
        // Backward in reverse micro-batch order, each stage recomputing its forward first. Always
        // run, even after a non-finite loss, so every rank makes the same calls.
        for (m, r) in micro.enumerated().reversed() {
            var dy: UnsafePointer<Float>?
            for s in localStages.reversed() {
                if m != micro.count - 1 {
                    stage(s).forward(input(s, r), rows: r.count, context: context(r))
                    if s == last { _ = stage(s).loss(labels: labels + r.lowerBound, rows: r.count) }
                }
                if s < last, rank(ofStage: s + 1) != me {
                    try receive(into: gradIn.data, count: r.count * h, from: rank(ofStage: s + 1))
                    dy = UnsafePointer(gradIn.data)
                }
                let dx = stage(s).backward(gradOutput: dy, labels: labels + r.lowerBound, lossScale: Float(Double(r.count) / Double(n)))
                dy = dx
                if s > 0, let dx, rank(ofStage: s - 1) != me { try communicator.send(bytes(dx, r.count * h), to: rank(ofStage: s - 1)) }
            }
        }
        var squares = 0.0
        for p in parameters { squares += Kernels.sumOfSquares(p.grad.count, p.grad.data) }
        let finite = lossSum.isFinite && localStages.contains(last) || !localStages.contains(last)
        var sums = [localStages.contains(last) ? lossSum : 0, Double(correct), squares, finite ? 0 : 1, stop ? 1 : 0]
        try communicator.allReduceSum(&sums)
        var result = PipelineStepResult(loss: sums[3] > 0 ? .nan : sums[0] / Double(n), correct: Int(sums[1]), gradNorm: .nan, lr: lr, stop: sums[4] > 0)
        if result.loss.isFinite {
            let norm = sums[2].squareRoot()
            result.gradNorm = norm
            if let clip = config.gradClip {
                let coef = clip / (norm + 1e-6)
                if coef < 1 { for p in parameters { p.grad.scale(by: Float(coef)) } }
            }
            if norm.isFinite { optimizer.step(lr: lr) }
        }
        let comm = communicator.statistics.since(before)
        result.communication = comm
        result.seconds = DataParallelGroup.now() - start
        result.computeSeconds = max(0, result.seconds - comm.communicationSeconds - comm.waitSeconds)
        return result
    }
}

/// What one pipeline step measured: the step's figures over the whole batch, plus its costs.
public struct PipelineStepResult: Sendable {
    public var loss: Double
    public var correct: Int
    /// Global gradient norm `√(Σ_ranks Σ_own ‖g‖²)` before clipping.
    public var gradNorm: Double
    public var lr: Float
    /// Some rank asked to stop after this step.
    public var stop: Bool
    /// Wall seconds of the step, of which this rank computed `computeSeconds`.
    public var seconds: Double = 0
    public var computeSeconds: Double = 0
    /// Communication of this step; its `waitSeconds` is the pipeline bubble (idle while other
    /// stages work) plus the wait at the final all-reduce.
    public var communication = CommStatistics()
    /// Waiting as a fraction of the step's wall time.
    public var bubbleFraction: Double { seconds > 0 ? communication.waitSeconds / seconds : 0 }
}

/// The pipeline step strategy: one GPipe step on the batch (see `PipelineTrainer`).
extension PipelineTrainer: StepStrategy {
    public func trainStep(on batch: LabelledRows, stop: Bool) throws -> StepReport {
        let r = try trainStep(batch.x, labels: batch.labels, rows: batch.rows, stop: stop)
        var report = StepReport(loss: r.loss, correct: r.correct, scored: batch.rows, gradNorm: r.gradNorm, lr: r.lr, stop: r.stop)
        report.costs = GroupCosts(seconds: r.seconds, computeSeconds: r.computeSeconds,
                                  communicationSeconds: r.communication.communicationSeconds, waitSeconds: r.communication.waitSeconds,
                                  bytesSent: Double(r.communication.bytesSent), bytesReceived: Double(r.communication.bytesReceived))
        return report
    }
}
