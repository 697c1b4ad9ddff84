import Foundation
import MoEComm
import MoECore
import MoEData
import MoEHDF5
import MoENN
import MoEParallel
import MoESpec
import MoEStore

/// The `train` task of `split.strategy: layerwise` trained end to end (`train.local: false`):
/// the residual MLP or the transformer LM (`StagedSetup`) cut into `experts` stages and trained with the GPipe schedule
/// (`PipelineTrainer`; Huang et al. 2019) over `parallelism.microbatches` micro-batches, one
/// stage per rank of a group of `parallelism.workers` = `experts` processes
/// (`parallelism.mode: pipeline`), or every stage in one process (`parallelism.mode: none`, the
/// reference). The stages stacked are the model itself, so the task delivers a plain model of its
/// kind and learns what one process training that model (`split.strategy: none`) learns from the
/// same batches, to float rounding; a group learns the bits of the one-process schedule.
///
/// Files: the dense train task's layout exactly (`/metrics`, `/checkpoints/<step>/{model,
/// optimizer}`, `/model`), written by rank 0 after gathering the other stages' parameters and
/// optimizer state from their ranks (`PipelineTrainer.gather`) at every checkpoint, evaluation
/// and at the end. A group's metrics add the per-step costs (`MetricsLog.communicationSeries`)
/// and `bubble_fraction`: rank 0's waiting as a fraction of the step (the pipeline bubble).
/// Resume: every rank loads the newest intact checkpoint (`CheckpointStore`) and takes its stage.
final class PipelineTrainTask<Model: StagedModel> {
    let spec: ExperimentSpec
    let setup: StagedSetup<Model>
    let layout: RunLayout
    let log: RunLog
    let id = "train"
    let communicator: Communicator
    var isLead: Bool { communicator.rank == 0 }
    var isGroup: Bool { communicator.worldSize > 1 }

    /// `/metrics/bubble_fraction`, one row per `/metrics/step` (groups only).
    private var bubble: [Double] = []
    private var norm: Standardization? { setup.normalization }
    /// Set by `run`: the stages' trainer and rank 0's view of the whole optimizer state (in a
    /// dense train task's names, for files).
    private var trainer: PipelineTrainer<Model>!
    private var full: Optimizer!

    init(spec: ExperimentSpec, setup: StagedSetup<Model>, layout: RunLayout, log: RunLog, communicator: Communicator = SoloCommunicator()) {
        self.spec = spec
        self.setup = setup
        self.layout = layout
        self.log = log
        self.communicator = communicator
    }

    func run() throws {
        let model = setup.model
        guard communicator.worldSize == 1 || communicator.worldSize == spec.experts else {
            throw RuntimeError.usage("pipeline: \(communicator.worldSize) workers for \(spec.experts) stages (one stage per worker)")
        }
        let loop = TrainingLoop(id: id, spec: spec, layout: layout, log: log, isLead: isLead, hooks: self,
                                batchesPerEpoch: setup.batchesPerEpoch, epochs: setup.epochs, steps: setup.steps,
                                communication: isGroup, items: setup.items, legacy: .pipeline)
        trainer = PipelineTrainer(model: model, stages: spec.experts, communicator: communicator, config: spec.optimizerConfig,
                                  totalSteps: loop.totalSteps, seed: spec.seed64, microbatches: spec.parallelism.microbatches)
        full = spec.optimizerConfig.makeOptimizer(model.parameters)
        // The stages are views of `model`'s parameters: loading into it starts every stage.
        if !(try loop.restore()) { try InitFrom.startStaged(model, spec: spec, log: log, id: id) }
        let blocks = trainer.ranges.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound - 1)" }
        let placement = isGroup ? "one stage per worker over \(communicator.worldSize) pipeline-parallel workers" : "all stages in one process"
        log.info("\(id): GPipe training of \(trainer.stageCount) stages (blocks \(blocks.joined(separator: ", "))), \(model.parameters.scalarCount) parameters, "
                 + "\(spec.parallelism.microbatches) micro-batches per batch, \(placement); \(loop.budget), batch \(spec.train.batchSize)")
        try loop.run(trainer, setup.batches)
    }
}

/// The pipeline task's part of the loop: rank 0 gathers every stage's parameters (and, for
/// files, optimizer state) before evaluations, checkpoints and the task file; groups add
/// `bubble_fraction`.
extension PipelineTrainTask: TrainingHooks {
    var checkpointParameters: [Parameter] { trainer.model.parameters }
    var checkpointOptimizer: Optimizer { full }

    /// `<path>/{model, optimizer}`: one checkpoint of the whole model.
    func writeEntry(to file: H5File, at path: String) throws {
        try Checkpoint.writeModel(trainer.model, normalization: norm, to: file, at: path + "/model")
        try Checkpoint.writeOptimizer(full, kind: spec.optimizerConfig.kind, to: file, at: path + "/optimizer")
    }

    /// Every rank loads the whole model and `full`, then takes its stages' state (`resumed`).
    func loadEntry(from file: H5File, at path: String) throws {
        try Checkpoint.loadParameters(into: trainer.model.parameters, from: file, at: path + "/model")
        try Checkpoint.loadOptimizer(into: full, from: file, at: path + "/optimizer")
    }

    func resumed() { trainer.adopt(optimizer: full) }

    /// Collective: rank 0 gathers the current parameters and validates the whole model.
    func evaluate(step: Int) throws -> TrainingLoop.Evaluated? {
        guard setup.hasValidation else { return nil }
        try trainer.gather(withState: false)
        guard isLead, let sums = setup.validate({ trainer.model.evaluationSums($0, batchSize: spec.eval.batchSize) }, +=) else { return nil }
        return .init(loss: sums.meanLoss, accuracy: sums.accuracy, note: setup.validationNote(sums))
    }

    func logRow(step: Int, window: TrainingWindow) {
        if isGroup { bubble.append(window.costs.seconds > 0 ? window.costs.waitSeconds / window.costs.seconds : 0) }
    }

    func progressNote(_ window: TrainingWindow) -> String {
        isGroup ? String(format: " bubble %.0f%%", 100 * bubble.last!) : ""
    }

    func writeSeries(to file: H5File) throws {
        if isGroup { try file.createDataset("metrics/bubble_fraction", bubble) }
    }

    func readState(from file: H5File) throws {
        bubble = isGroup ? try file.read("metrics/bubble_fraction", as: Double.self).values : []
    }

    /// Collective: every stage's parameters and optimizer state to rank 0.
    func beforeCheckpoint() throws { try trainer.gather(optimizer: isLead ? full : nil, withState: true) }
    func beforeFinish() throws { try beforeCheckpoint() }

    func writeModel(to file: H5File, at path: String) throws {
        try Checkpoint.writeModel(trainer.model, normalization: norm, to: file, at: path)
    }

    var stopCommunicator: Communicator? { communicator }

    func writeResult(to file: H5File) throws {
        try file.setAttribute(setup.trainSize.name, Int64(setup.trainSize.count))
        try file.setAttribute("stages", Int64(trainer.stageCount))
        try file.setAttribute("stage_blocks", trainer.ranges.map { "\($0.lowerBound)-\($0.upperBound - 1)" }.joined(separator: ", "))
        try file.setAttribute("microbatches", Int64(spec.parallelism.microbatches))
        try Checkpoint.writeModel(trainer.model, normalization: norm, to: file, at: "model")
    }

    func doneNote(_ metrics: MetricsLog) -> String {
        let meanBubble = bubble.isEmpty ? "" : String(format: ", bubble %.0f%% of the step", 100 * bubble.reduce(0, +) / Double(bubble.count))
        return meanBubble + Self.lastValidation(metrics)
    }
}
