import MoEComm
import MoEHDF5
import MoENN
import MoEParallel
import MoESpec

/// The data- or expert-parallel group a training task runs in (`parallelism.mode: data |
/// expert`), whatever the model kind: the residual MLP's train task and the transformer LM's
/// share it, so a group trains both through the one `DataParallelStep`.
///
/// It builds the `DataParallelGroup` (with the spec's gradient compression), attaches it to the
/// model (routers reduce their batch statistics over the group; in `expert` mode each MoE
/// layer's experts are sharded over the ranks), and supplies the collectives the task's
/// `TrainingHooks` need before anything reads the whole model:
/// - `synchronize`: every rank gets the owners' experts (before evaluation, the task file);
/// - `beforeCheckpoint`: rank 0 gathers every rank's error-feedback residual (lossy
///   compression), and the experts are synchronised;
/// - `writeResumeState` / `readState`: the residuals as `compression/residual [ranks, parameters]`
///   in a checkpoint, so a resumed group continues with the bits of an undisturbed one.
/// Every rank calls each of them at the same step.
final class TrainingGroup {
    let group: DataParallelGroup
    /// Every rank's compression residual at the current checkpoint (rank 0; see `beforeCheckpoint`).
    private var residuals: [Float]?

    /// The group of `spec`'s mode over `communicator`, attached to `model`; nil when the task
    /// trains alone (any other mode).
    init?(spec: ExperimentSpec, communicator: Communicator, model: some TrainableModel) throws {
        let mode = spec.parallelism.mode
        guard mode == .data || mode == .expert else { return nil }
        group = try DataParallelGroup(communicator: communicator, parameters: model.parameters,
                                      compression: CompressionScheme(rawValue: spec.parallelism.compression.rawValue) ?? .none,
                                      ratio: spec.parallelism.ratio)
        group.attach(to: model, shardExperts: mode == .expert)
        group.barrierBeforeReducing = Worker.stepBarrier
    }

    /// The step strategy of the group: `trainer`'s step on this rank's rows of every batch.
    func step<Model: RowBatchedModel>(_ trainer: Trainer<Model>) -> DataParallelStep<Model> {
        DataParallelStep(trainer: trainer, group: group)
    }

    /// " over N data-parallel workers", for the task's first log line.
    func describe(_ spec: ExperimentSpec) -> String { " over \(group.worldSize) \(spec.parallelism.mode.rawValue)-parallel workers" }

    /// Sums a few numbers over the group in rank order (the router statistics of a step).
    var reduce: (inout [Double]) throws -> Void { { [group] in try group.allReduce(&$0) } }

    /// Every rank gets the owners' experts and their optimizer state (expert mode).
    func synchronize(_ optimizer: Optimizer) throws { try group.synchronizeExperts(optimizer) }

    /// Gathers every rank's residual on rank 0, then synchronises the experts.
    func beforeCheckpoint(_ optimizer: Optimizer) throws {
        residuals = try group.gatherResiduals()
        try group.synchronizeExperts(optimizer)
    }

    /// With lossy compression, `compression/residual [ranks, parameters]` and its `step`.
    func writeResumeState(to file: H5File, optimizer: Optimizer) throws {
        guard let residuals else { return }
        try file.createDataset("compression/residual", residuals, shape: [group.worldSize, residuals.count / group.worldSize])
        try file.openGroup("compression").setAttribute("step", Int64(optimizer.stepCount))
    }

    /// Restores this rank's residual from a checkpoint (every rank).
    func readState(from file: H5File) throws {
        try group.restoreResiduals(file.exists("compression/residual") ? try file.read("compression/residual", as: Float.self).values : [])
    }
}
