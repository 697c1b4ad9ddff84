import MoECore
import MoEComm
import MoENN

/// A model (`StagedModel`: the residual MLP or the transformer LM) cut into S stages and trained
/// end to end with the GPipe schedule (Huang et al. 2019, "GPipe: Efficient Training of Giant
/// Neural Networks using Pipeline Parallelism"). Stage s owns blocks `partition(blocks, S)[s]`;
/// stage 0 also owns the embedding, the last stage the final norm and head and computes the
/// cross-entropy. With a group of S ranks, rank s owns stage s; with a group of one (the
/// reference run of `parallelism.mode: none`), the one process runs every stage in turn.
///
/// One optimisation step on a global batch of n rows (samples, or windows of an LM) cut into M
/// micro-batches (`MicroBatches`):
///
///     forward  m = 0 … M−1:   stage s receives micro-batch m's activation [a_m, hidden] from
///                             s − 1 (a_m = rows, or windows·T token positions), keeps it (the
///                             stage INPUT), computes, sends its output to s + 1; the last stage
///                             computes the cross-entropy
///     backward m = M−1 … 0:   stage s re-runs its forward on the kept input (re-materialisation:
///                             activation memory is one micro-batch's), receives ∂L/∂output from
///                             s + 1 (the last stage starts from the loss, scaled by k_m / k, the
///                             micro-batch's share of the scored items, so the micro-batches add
///                             up to the gradient of the mean over the batch), back-propagates,
///                             accumulating parameter gradients, and sends ∂L/∂input to s − 1
///     update:                 one all-reduce of (Σ loss, Σ correct, Σ_own ‖g‖², flags) gives
///                             every rank the global gradient norm, hence the same clipping
///                             coefficient; each rank steps its own optimizer over its own
///                             parameters (AdamW and SGD update each parameter independently,
///                             so S optimizers equal one over the whole model)
///
/// Every stage reads the micro-batch itself too (targets, token ids, domains); only the
/// activations and their gradients travel. The last micro-batch's activations are still in place
/// when the backward starts, so its recomputation is skipped. Dropout draws per row with
/// `ForwardContext.rowOffset` = the micro-batch's first row and `step` = the optimizer step, so
/// the forward, the recomputation and one process over the whole batch draw the same masks. The
/// result equals one process training the same model on the same batches up to float rounding
/// (micro-batch GEMMs and the order of the gradient sums), and a group of S ranks equals the
/// group of one bit for bit (the same computations in the same order).
public final class PipelineTrainer<Model: StagedModel> {
    public let model: Model
    public let communicator: Communicator
    public let config: OptimizerConfig
    public let schedule: LRSchedule
    public let seed: UInt64
    public let microbatches: Int
    /// Block ranges of all S stages.
    public let ranges: [Range<Int>]
    /// The stages this process runs (all in a group of one, else stage `rank`).
    public let localStages: Range<Int>
    public let stages: [Model.Stage]
    /// This process's parameters (its stages', in checkpoint order) and their optimizer.
    public let parameters: [Parameter]
    public let optimizer: Optimizer
    /// Kept stage inputs `[a, hidden]` of stages 1 …, for the whole batch (the micro-batches
    /// are contiguous runs of rows); stage 0's input is the batch itself.
    private var inputs: [Int: Scratch] = [:]
    /// ∂L/∂output received from the next rank, `[a_m, hidden]`.
    private let gradIn: Scratch

    public init(model: Model, stages count: Int, communicator: Communicator, config: OptimizerConfig,
                totalSteps: Int, seed: UInt64, microbatches: Int) {
        precondition(communicator.worldSize == 1 || communicator.worldSize == count, "one stage per rank")
        precondition(model.moeLayers.isEmpty, "pipeline stages take a dense model")
        self.model = model
        self.communicator = communicator
        self.config = config
        self.seed = seed
        self.microbatches = microbatches
        ranges = StagePartition.ranges(blocks: model.blockCount, stages: count)
        localStages = communicator.worldSize == 1 ? 0..<count : communicator.rank..<(communicator.rank + 1)
        let ranges = self.ranges
        stages = localStages.map { model.stage(ranges[$0], embed: $0 == 0, head: $0 == ranges.count - 1) }
        parameters = stages.flatMap(\.parameters)
        optimizer = config.makeOptimizer(parameters)
        schedule = config.makeSchedule(totalSteps: totalSteps)
        for s in localStages where s > 0 { inputs[s] = Scratch(width: model.hiddenWidth) }
        gradIn = Scratch(width: model.hiddenWidth)
    }

    public var step: Int { optimizer.stepCount }
    public var stageCount: Int { ranges.count }

    /// The rank that runs stage `s`.
    public func rank(ofStage s: Int) -> Int { communicator.worldSize == 1 ? 0 : s }

    private func stage(_ s: Int) -> Model.Stage { stages[s - localStages.lowerBound] }

    private func bytes(_ p: UnsafePointer<Float>, _ count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: p, count: count * MemoryLayout<Float>.stride)
    }

    private func receive(into p: UnsafeMutablePointer<Float>, count: Int, from source: Int) throws {
        let got = try communicator.receive(into: UnsafeMutableRawBufferPointer(start: p, count: count * 4), from: source)
        guard got == count * 4 else {
            throw CollectiveError.invalidArgument("pipeline: expected \(count * 4) bytes from rank \(source), got \(got)")
        }
    }

    /// One GPipe optimisation step on `batch` (see the type's comment). `stop` is this rank's wish
    /// to stop after the step; the result's `stop` is true when any rank wished it. Loss and
    /// accuracy are over the whole batch, on every rank.
    public func trainStep(_ batch: Model.Batch, stop: Bool = false) throws -> PipelineStepResult {
        let start = DataParallelGroup.now()
        let before = communicator.statistics
        let t = step, lr = schedule.lr(at: t)
        let h = model.hiddenWidth, last = stageCount - 1, me = communicator.rank
        let n = model.rowCount(of: batch), scored = model.scoredItems(of: batch)
        let micro = MicroBatches.split(rows: n, count: microbatches)
        let parts = micro.map { model.rows($0, of: batch) }
        // Activation rows of each micro-batch and where they start in the kept inputs.
        let rows = parts.map { model.activationRows(of: $0) }
        let offsets = rows.indices.map { rows[..<$0].reduce(0, +) }
        parameters.zeroGrad()
        for s in inputs.values { s.ensure(rows: rows.reduce(0, +)) }
        gradIn.ensure(rows: rows.max() ?? 0)
        func context(_ r: Range<Int>) -> ForwardContext {
            var c = ForwardContext(training: true, step: t, seed: seed)
            c.rowOffset = r.lowerBound
            return c
        }
        func input(_ s: Int, _ m: Int) -> UnsafeMutablePointer<Float>? {
            s == 0 ? nil : inputs[s]!.data + offsets[m] * h
        }
        var lossSum = 0.0, correct = 0
        // Forward of every micro-batch, keeping each stage's input.
        for (m, r) in micro.enumerated() {
            for s in localStages {
                if s > 0, rank(ofStage: s - 1) != me { try receive(into: input(s, m)!, count: rows[m] * h, from: rank(ofStage: s - 1)) }
                let out = stage(s).forward(parts[m], input: input(s, m).map { UnsafePointer($0) }, context: context(r))
                if s == last {
                    let l = stage(s).loss(parts[m])
                    lossSum += l.lossSum; correct += l.correct
                } else if rank(ofStage: s + 1) == me {
                    input(s + 1, m)!.update(from: out, count: rows[m] * h)
                } else {
                    try communicator.send(bytes(out, rows[m] * h), to: rank(ofStage: s + 1))
                }
            }
        }
        // Backward in reverse micro-batch order, each stage recomputing its forward first. Always
        // run, even after a non-finite loss, so every rank makes the same calls.
        for (m, r) in micro.enumerated().reversed() {
            var dy: UnsafePointer<Float>?
            for s in localStages.reversed() {
                if m != micro.count - 1 {
                    stage(s).forward(parts[m], input: input(s, m).map { UnsafePointer($0) }, context: context(r))
                    if s == last { _ = stage(s).loss(parts[m]) }
                }
                if s < last, rank(ofStage: s + 1) != me {
                    try receive(into: gradIn.data, count: rows[m] * h, from: rank(ofStage: s + 1))
                    dy = UnsafePointer(gradIn.data)
                }
                let share = Float(Double(model.scoredItems(of: parts[m])) / Double(scored))
                let dx = stage(s).backward(parts[m], gradOutput: s == last ? nil : dy, lossScale: share)
                dy = dx
                if s > 0, let dx, rank(ofStage: s - 1) != me { try communicator.send(bytes(dx, rows[m] * h), to: rank(ofStage: s - 1)) }
            }
        }
        var squares = 0.0
        for p in parameters { squares += Kernels.sumOfSquares(p.grad.count, p.grad.data) }
        let finite = lossSum.isFinite && localStages.contains(last) || !localStages.contains(last)
        var sums = [localStages.contains(last) ? lossSum : 0, Double(correct), squares, finite ? 0 : 1, stop ? 1 : 0]
        try communicator.allReduceSum(&sums)
        var result = PipelineStepResult(loss: sums[3] > 0 ? .nan : sums[0] / Double(scored), correct: Int(sums[1]), scored: scored,
                                        gradNorm: .nan, lr: lr, stop: sums[4] > 0)
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

extension PipelineTrainer where Model == ResidualMLP {
    /// One GPipe step on `n` rows of `x [n, features]` with `labels`.
    public func trainStep(_ x: UnsafePointer<Float>, labels: UnsafePointer<Int>, rows n: Int, stop: Bool = false) throws -> PipelineStepResult {
        try trainStep(LabelledRows(x: x, labels: labels, rows: n), stop: stop)
    }
}

/// What one pipeline step measured: the step's figures over the whole batch, plus its costs.
public struct PipelineStepResult: Sendable {
    public var loss: Double
    public var correct: Int
    /// Items scored over the whole batch (rows, or predicted tokens).
    public var scored: Int
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
    public func trainStep(on batch: Model.Batch, stop: Bool) throws -> StepReport {
        let r = try trainStep(batch, stop: stop)
        var report = StepReport(loss: r.loss, correct: r.correct, scored: r.scored, gradNorm: r.gradNorm, lr: r.lr, stop: r.stop)
        report.costs = GroupCosts(seconds: r.seconds, computeSeconds: r.computeSeconds,
                                  communicationSeconds: r.communication.communicationSeconds, waitSeconds: r.communication.waitSeconds,
                                  bytesSent: Double(r.communication.bytesSent), bytesReceived: Double(r.communication.bytesReceived))
        return report
    }
}
