import Foundation
import MoEComm
import MoECore
import MoENN
#if canImport(Glibc)
import Glibc
#endif

/// Data-parallel training (Krizhevsky 2014; Goyal et al. 2017): every rank of a group holds a
/// replica of the model, every rank is given the same global batch of `n` rows (feature rows,
/// or a language model's token windows) and computes the rows `[⌊r·n/N⌋, ⌊(r+1)·n/N⌋)` of it,
/// then the gradients are summed over the group:
///
///     ∇L = Σ_r (s_r / s) · ∇L_r        (L_r: mean loss over the s_r items rank r's rows score)
///
/// with `s = Σ_r s_r` the items the whole batch scores (`RowBatchedModel.scoredItems`: one per
/// row for the MLP, so `s_r / s = n_r / n`; one per predicted token for an LM, so the loss is the
/// global token mean), which is the gradient of the mean loss over the whole batch, so every replica applies the
/// same update and the replicas stay identical. The all-reduce adds the ranks' terms in rank
/// order; the result differs from one process only by the rounding of that fixed-order sum
/// (and is the same bits on every rerun). What else makes a rank's rows behave as in one process:
/// - random draws per row (dropout, router jitter and noise) skip the earlier rows' draws
///   (`ForwardContext.rowOffset`);
/// - the MoE routers' balancing and z losses use the statistics of the global batch
///   (`MoERouter.statisticsReducer`, an all-reduce of a few numbers per MoE layer);
/// - expert capacity is enforced per rank's rows (GShard's "local groups"), the one departure.
///
/// With `compression`, each rank sends its gradient compressed (`GradientCompressor`, error
/// feedback keeps what was lost for the next step) and every rank decodes and adds all ranks'
/// messages in rank order.
public final class DataParallelGroup {
    public let communicator: Communicator
    public let compressor: GradientCompressor?
    /// The trained parameters.
    let parameters: [Parameter]
    /// The parameters whose gradients are all-reduced, in the order they are laid out for it:
    /// all of them, but for the sharded experts' tensors in `expert` mode (see `ExpertParallelDispatcher`).
    private(set) var replicated: [Parameter]
    private let flat: UnsafeMutablePointer<Float>
    private var count: Int
    /// The first collective error seen inside a forward pass (routers cannot throw); the step
    /// throws it once the pass returns.
    var pendingError: Error?
    private var reduceBuffer: [Double] = []
    /// Per-step scratch (allocated once): the step's sums and the experts' squared gradient norm.
    private var stepSums = [Double](repeating: 0, count: 4)
    private var expertSquares = [0.0]
    /// A barrier after the backward pass, before the step's all-reduces (of the loss sums and of
    /// the gradients): the time spent waiting for the slowest rank then shows as `waitSeconds`
    /// and the all-reduces' `communicationSeconds` is the moving of data alone (MPI cannot tell
    /// the two apart inside one call). Off in training (it costs a latency per step); the
    /// benchmarks turn it on (`moe-bench --comm-only`). It changes no bit of any result.
    public var barrierBeforeReducing = false

    public init(communicator: Communicator, parameters: [Parameter], compression: CompressionScheme = .none, ratio: Double = 0.01) throws {
        self.communicator = communicator
        self.parameters = parameters
        replicated = parameters
        count = parameters.scalarCount
        flat = .allocate(capacity: max(count, 1))
        compressor = compression == .none ? nil : try GradientCompressor(scheme: compression, count: count, ratio: ratio)
    }

    deinit { flat.deallocate() }

    public var rank: Int { communicator.rank }
    public var worldSize: Int { communicator.worldSize }

    /// This rank's rows of a global batch of `n` rows.
    public func rows(of n: Int) -> Range<Int> {
        let r = communicator.rank, size = communicator.worldSize
        return (r * n / size)..<((r + 1) * n / size)
    }

    /// The expert-parallel dispatchers of the MoE layers (`expert` mode), set by `attach`.
    public private(set) var shards: [ExpertParallelDispatcher] = []
    private var shardedLayers: [MoELayer] = []
    /// The experts' tensors (`[E, …]`): each slice lives with its owner, see `synchronizeExperts`.
    private var sharded: [Parameter] { shardedLayers.flatMap { [$0.w1, $0.b1, $0.w2, $0.b2] } }

    /// Makes the routers of `model` reduce their batch statistics over the group; with
    /// `shardExperts` (expert parallelism), each MoE layer's experts are also spread over the
    /// ranks (`ExpertParallelDispatcher`).
    public func attach(to model: some TrainableModel, shardExperts: Bool = false) {
        for layer in model.moeLayers {
            if shardExperts {
                let s = ExpertParallelDispatcher(communicator: communicator, layer: layer)
                layer.dispatcher = s
                shards.append(s)
                shardedLayers.append(layer)
            }
            layer.router.statisticsReducer = { [unowned self] values in
                guard self.pendingError == nil else { return }
                if self.reduceBuffer.count != values.count { self.reduceBuffer = Array(values) }
                for i in values.indices { self.reduceBuffer[i] = values[i] }
                do {
                    try self.communicator.allReduceSum(&self.reduceBuffer)
                    for i in values.indices { values[i] = self.reduceBuffer[i] }
                } catch {
                    self.pendingError = error
                }
            }
        }
        updateReplicated()
    }

    /// Expert gradients stay with their owners: only the other parameters are all-reduced.
    private func updateReplicated() {
        let excluded = Set(sharded.map(ObjectIdentifier.init))
        replicated = parameters.filter { !excluded.contains(ObjectIdentifier($0)) }
        count = replicated.scalarCount
    }

    /// The global gradient norm after `allReduceGradients`: the replicated parameters' gradients
    /// are the same on every rank; each sharded expert's gradient is on its owner alone (zero
    /// elsewhere), so their squares are summed over the group. `√(Σ‖g‖²)` in Float64.
    public func gradientNorm() throws -> Double {
        guard !shardedLayers.isEmpty else { return parameters.gradientNorm() }
        expertSquares[0] = sharded.reduce(0) { $0 + Kernels.sumOfSquares($1.grad.count, $1.grad.data) }
        try communicator.allReduceSum(&expertSquares)
        let squares = replicated.reduce(0) { $0 + Kernels.sumOfSquares($1.grad.count, $1.grad.data) }
        return (squares + expertSquares[0]).squareRoot()
    }

    /// Gives every rank the owners' copy of every expert (values and optimizer state): between
    /// two calls a rank updates only the experts it owns, so this runs before anything reads the
    /// whole model (evaluation, checkpoints, the final model). A collective: every rank calls it at
    /// the same step.
    public func synchronizeExperts(_ optimizer: Optimizer) throws {
        guard !shardedLayers.isEmpty else { return }
        let state = optimizer.state
        for (layer, shards) in zip(shardedLayers, shards) {
            for p in [layer.w1, layer.b1, layer.w2, layer.b2] {
                let tensors = [p.value] + state.filter { $0.name.hasSuffix("/" + p.name) }.map(\.tensor)
                let slice = p.value.count / layer.config.experts
                for (rank, experts) in shards.ranges.enumerated() where !experts.isEmpty {
                    for t in tensors {
                        try communicator.broadcast(t.data + experts.lowerBound * slice,
                                                   bytes: experts.count * slice * MemoryLayout<Float>.stride, root: rank)
                    }
                }
            }
        }
    }

    /// Throws the collective error a forward pass met, if any.
    func throwPending() throws {
        if let e = pendingError { pendingError = nil; throw e }
        for s in shards { try s.throwPending() }
    }

    /// Sums the gradients over the group (compressed if configured) and leaves the sum in every
    /// parameter's `grad` on every rank. Returns the compression's relative error
    /// `‖v − decode(encode(v))‖ / ‖v‖` of this rank's message (0 without compression).
    @discardableResult
    public func allReduceGradients() throws -> Double {
        var offset = 0
        for p in replicated {
            (flat + offset).update(from: p.grad.data, count: p.grad.count)
            offset += p.grad.count
        }
        var error = 0.0
        if let compressor {
            let message = compressor.encode(flat)
            error = compressor.lastRelativeError
            flat.update(repeating: 0, count: count)
            try communicator.allGatherV(message) { _, bytes in
                try GradientCompressor.decodeAdd(bytes, scheme: compressor.scheme, count: count, into: flat)
            }
        } else {
            try communicator.allReduceSum(flat, count: count)
        }
        offset = 0
        for p in replicated {
            p.grad.data.update(from: flat + offset, count: p.grad.count)
            offset += p.grad.count
        }
        return error
    }

    /// Every rank's error-feedback residual, rank after rank (`[N · P]` floats), on rank 0 (nil
    /// on the other ranks, and without lossy compression). A collective: every rank calls it at
    /// the same step, so a checkpoint keeps the residuals that belong to its weights.
    public func gatherResiduals() throws -> [Float]? {
        guard let compressor, compressor.scheme.isLossy else { return nil }
        var all: [Float] = []
        let mine = compressor.residual
        try mine.withUnsafeBytes { bytes in
            try communicator.allGatherV(bytes) { _, data in
                guard communicator.rank == 0 else { return }
                all.append(contentsOf: data.bindMemory(to: Float.self))
            }
        }
        return communicator.rank == 0 ? all : nil
    }

    /// Restores this rank's residual from `gatherResiduals`' layout (`[N · P]` floats).
    public func restoreResiduals(_ all: [Float]) throws {
        guard let compressor, compressor.scheme.isLossy else { return }
        let p = compressor.count, r = communicator.rank
        guard all.count == communicator.worldSize * p else {
            throw CollectiveError.invalidArgument("checkpointed residuals: \(all.count) floats for \(communicator.worldSize) ranks × \(p)")
        }
        try compressor.restoreResidual(Array(all[(r * p)..<((r + 1) * p)]))
    }

    /// Sums a few numbers over the group, in rank order.
    public func allReduce(_ values: inout [Double]) throws { try communicator.allReduceSum(&values) }

    /// Sums this step's `[loss sum, correct, non-finite flag, stop wish]` over the group, in a
    /// buffer kept from step to step.
    func reduceStep(_ loss: Double, _ correct: Double, _ nonFinite: Double, _ stop: Double) throws -> (loss: Double, correct: Double, nonFinite: Double, stop: Double) {
        stepSums[0] = loss; stepSums[1] = correct; stepSums[2] = nonFinite; stepSums[3] = stop
        try communicator.allReduceSum(&stepSums)
        return (stepSums[0], stepSums[1], stepSums[2], stepSums[3])
    }
}

extension Trainer where Model: RowBatchedModel {
    /// One data-parallel optimisation step on the global batch of `n` rows: this rank runs
    /// forward and backward on its rows (the loss's gradient scaled by `s_r / s`, its share of the
    /// scored items), the gradients
    /// are all-reduced, then every rank clips and updates identically. The loss, accuracy and
    /// auxiliary loss in the report are those of the whole batch. `stop` is this rank's wish to
    /// stop after the step (e.g. SIGINT); the report's `stop` is true when any rank wished it, so
    /// all ranks stop at the same step.
    public func trainStep(on batch: Model.Batch, group: DataParallelGroup, stop: Bool = false) throws -> StepReport {
        let start = DataParallelGroup.now()
        let before = group.communicator.statistics
        let t = step
        let n = model.rowCount(of: batch)
        let mine = group.rows(of: n)
        let rows = model.rows(mine, of: batch)
        let scored = model.scoredItems(of: batch), myScored = model.scoredItems(of: rows)
        // The routers' expert biases move by the global load (all-reduced in the forward), the
        // same on every rank, and only when the update is applied.
        var updated = false
        defer { model.finishStep(updated: updated) }
        model.parameters.zeroGrad()
        var context = ForwardContext(training: true, step: t, seed: seed)
        context.rowOffset = mine.lowerBound
        let out = model.forward(rows, context: context)
        try group.throwPending()
        let aux = model.auxiliaryLoss
        let lr = schedule.lr(at: t)
        // Always backward, even after a non-finite loss: every rank must make the same collective
        // calls in the same order (expert parallelism exchanges rows inside the pass); the update
        // is skipped below when any rank's loss was not finite.
        model.backward(lossScale: Float(Double(myScored) / Double(scored)))
        try group.throwPending()
        if group.barrierBeforeReducing { try group.communicator.barrier() }
        let sums = try group.reduceStep(out.lossSum.isFinite ? out.lossSum : .nan, Double(out.correct), aux.isFinite ? 0 : 1, stop ? 1 : 0)
        var report = StepReport(loss: sums.loss / Double(scored), correct: Int(sums.correct), scored: scored, auxLoss: aux, gradNorm: .nan, lr: lr,
                                stop: sums.stop > 0)
        guard sums.loss.isFinite, sums.nonFinite == 0 else {
            if !sums.loss.isFinite { report.loss = .nan }
            return report
        }
        report.costs.compressionError = try group.allReduceGradients()
        let norm = try group.gradientNorm()
        if let maxNorm = config.gradClip {  // PyTorch's clip_grad_norm_, on the global norm
            let coef = maxNorm / (norm + 1e-6)
            if coef < 1 { for p in model.parameters { p.grad.scale(by: Float(coef)) } }
        }
        report.gradNorm = norm
        if norm.isFinite { optimizer.step(lr: lr); updated = true }
        let comm = group.communicator.statistics.since(before)
        report.costs.seconds = DataParallelGroup.now() - start
        report.costs.communicationSeconds = comm.communicationSeconds
        report.costs.waitSeconds = comm.waitSeconds
        report.costs.bytesSent = Double(comm.bytesSent)
        report.costs.bytesReceived = Double(comm.bytesReceived)
        report.costs.computeSeconds = max(0, report.costs.seconds - comm.communicationSeconds - comm.waitSeconds)
        return report
    }
}

extension Trainer where Model == ResidualMLP {
    /// `trainStep(on:group:stop:)` on `x [n, features]` with `labels` (and domain ids).
    public func trainStep(_ x: UnsafePointer<Float>, labels: UnsafePointer<Int>, rows n: Int,
                          domains: UnsafePointer<Int>? = nil, group: DataParallelGroup, stop: Bool = false) throws -> ParallelStepResult {
        let r = try trainStep(on: LabelledRows(x: x, labels: labels, rows: n, domains: domains), group: group, stop: stop)
        return ParallelStepResult(step: r.result, stop: r.stop, computeSeconds: r.costs.computeSeconds, compressionError: r.costs.compressionError)
    }
}

/// The data-parallel step strategy (and the expert-parallel one, when `group` was attached with
/// `shardExperts`: the same step, with each MoE layer's experts spread over the ranks by
/// `ExpertParallelDispatcher`): `Trainer.trainStep(on:group:stop:)` on every batch.
public final class DataParallelStep<Model: RowBatchedModel>: StepStrategy {
    public let trainer: Trainer<Model>
    public let group: DataParallelGroup

    public init(trainer: Trainer<Model>, group: DataParallelGroup) {
        self.trainer = trainer
        self.group = group
    }

    public var step: Int { trainer.step }

    public func trainStep(on batch: Model.Batch, stop: Bool) throws -> StepReport {
        try trainer.trainStep(on: batch, group: group, stop: stop)
    }
}

/// What a data-parallel step measured: the step's figures over the whole batch, plus its costs.
public struct ParallelStepResult: Sendable {
    public var step: StepResult
    /// Some rank asked to stop after this step.
    public var stop: Bool
    /// Seconds of this rank's own computation (the step's wall time minus communication and waiting).
    public var computeSeconds: Double = 0
    /// Relative error of this rank's compressed gradient (0 without compression).
    public var compressionError: Double = 0
}

extension DataParallelGroup {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
