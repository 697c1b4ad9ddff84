import Foundation
import MoEComm
import MoECore
import MoEData
import MoEHDF5
import MoENN
import MoEParallel
import MoESpec
import MoEStore

/// The `train` task: training of the residual MLP (dense, or with MoE blocks) with periodic
/// checkpoints.
///
/// While it runs, its state lives in one file per kept checkpoint, `tasks/<id>.checkpoints/<step>.h5`
/// (`CheckpointStore`): metrics and router metrics up to that step, the log windows, the model
/// and optimizer (`/checkpoints/<step>/{model, optimizer}`) and the position in the data (epoch,
/// batch). Resuming loads the newest intact checkpoint and replays the same batch order (the
/// order of epoch e is a function of the seed and e), so a resumed run ends with bit-identical
/// weights. When done,
/// `tasks/train.h5` is written atomically with `/metrics`, `/router` (MoE models, see
/// `RouterMetricsLog`), `/checkpoints` and the final `/model`. Each batch's domain ids go to the
/// model (the `domain` router needs them).
final class TrainTask {
    let spec: ExperimentSpec
    let layout: RunLayout
    let log: RunLog
    let id: String
    let role: Role
    /// The group of processes running this task (data or expert parallel), or a group of one.
    /// Every rank trains; rank 0 alone logs and writes the task's files.
    let communicator: Communicator
    var isLead: Bool { communicator.rank == 0 }

    /// `pretrain`: the dense model of a sparse-upcycling run, for `split.pretrain_epochs` epochs
    /// (or `split.pretrain_steps` steps).
    /// `train`: the spec's model; with upcycling it starts from the dense model's parameters, with
    /// `neurons` from the dense model moefied (TrainTask+Moefication.swift).
    /// `expert(i)`: branch `i` of `split.strategy: branch`, on its shard (TrainTask+Branch.swift).
    /// `finetune`: the fused (or stacked) model trained on the full training split with
    /// `fusion.finetune` (TrainTask+Branch.swift).
    enum Role: Equatable { case pretrain, train, expert(Int), finetune }

    private var routerMetrics: RouterMetricsLog?
    /// `neurons` split: each MoE block's partition of the dense FFN units (see TrainTask+Moefication).
    var moeficationGroups: [Int: [[Int]]] = [:]
    private var norm: Standardization?
    /// The data- or expert-parallel group this rank trains in (`parallelism.mode: data | expert`).
    private var group: TrainingGroup?
    /// Set by `run`: the model, its optimizer and the validation split.
    private var model: ResidualMLP!
    private var optimizer: Optimizer!
    private var val: Dataset!
    /// The seed of the initial parameters: the spec seed (an expert's `seed` override changes
    /// only its batch order and dropout, so every branch starts from the same seed model).
    let modelSeed: UInt64
    /// The seed of this task's initialisation: `modelSeed`, or an independent expert's own.
    let initSeed: UInt64
    /// The run's data seed (`data.seed`, else `seed`): draws the `random` shards.
    let dataSeed: UInt64
    /// Training samples seen per epoch (an expert's shard size), stored as `train_samples`.
    var trainSamples = 0

    /// For `.expert(i)`, `spec` is the run's spec; the task trains with `split.overrides[i]`
    /// applied (see `ExperimentSpec.expertSpec`).
    init(spec: ExperimentSpec, layout: RunLayout, log: RunLog, role: Role = .train, communicator: Communicator = SoloCommunicator()) {
        self.communicator = communicator
        if case .expert(let i) = role { self.spec = spec.expertSpec(i) } else if role == .finetune { self.spec = spec.finetuneSpec } else { self.spec = spec }
        self.layout = layout
        self.log = log
        self.role = role
        modelSeed = spec.seed64
        dataSeed = spec.dataSeed64
        initSeed = Self.initialisationSeed(spec, role)
        switch role {
        case .pretrain: id = "pretrain"
        case .train: id = "train"
        case .expert(let i): id = "expert-\(i)"
        case .finetune: id = "finetune"
        }
    }

    /// The dense checkpoint the MoE model is upcycled from: this run's pre-training task, or
    /// `split.upcycle_from` (a run.h5, a train task file or a checkpoint file).
    private var upcycleSource: String? {
        guard role == .train, spec.split.strategy == .replicate else { return nil }
        if spec.split.pretrains { return layout.taskFile("pretrain") }
        return spec.split.resolvedUpcycleFrom
    }

    /// Copies the dense source into `model` (sparse upcycling); errors name the tensor.
    private func upcycle(_ model: ResidualMLP, from path: String) throws {
        let file = try H5File.open(path)
        guard let group = spec.handoffGroup(path, layout: layout) ?? Evaluation.modelGroup(in: file) else {
            throw RuntimeError.io(path: path, message: "holds no model to upcycle from (expected a checkpoint group, /model or /models/final)")
        }
        let (dense, _) = try Checkpoint.loadModel(from: file, at: group, for: "upcycling")
        do {
            try Upcycling.upcycle(from: Upcycling.parameters(of: dense), into: model)
        } catch let error as Upcycling.Mismatch {
            throw RuntimeError.io(path: path, message: "cannot upcycle: \(error)")
        }
        log.info("\(id): upcycled from the dense model in \(path): its FFNs copied into every expert, routers fresh")
    }

    func run() throws {
        let (train, norm) = try trainingData()
        (val, _) = try DataTask.load("val", layout: layout)
        self.norm = norm
        trainSamples = train.count
        var config = spec.modelConfig(features: train.features, classes: train.classes)
        // Pre-training and branch experts train the dense model; `finetune` trains the MoE model of
        // `fusion.method: mix` (else the dense fused or stacked model).
        if role != .train && !(role == .finetune && spec.fusion.method == .mix) { config.moe = nil }
        let model = ResidualMLP(config: config, seed: initSeed)
        self.model = model
        try Self.checkDomains(model.config, train, val)
        group = try TrainingGroup(spec: spec, communicator: communicator, model: model)
        routerMetrics = model.config.moe == nil ? nil : RouterMetricsLog(model: model)
        let batches = try MiniBatches(train, batchSize: spec.train.batchSize, seed: spec.seed64)
        let loop = TrainingLoop(id: id, spec: spec, layout: layout, log: log, isLead: isLead, hooks: self,
                                batchesPerEpoch: batches.batchesPerEpoch, epochs: role == .pretrain ? spec.split.pretrainEpochs : spec.train.epochs,
                                steps: role == .pretrain ? (spec.split.pretrainSteps > 0 ? spec.split.pretrainSteps : nil) : spec.train.steps,
                                moe: model.config.moe != nil, communication: group != nil, legacy: .train)
        let trainer = Trainer(model: model, config: spec.optimizerConfig, totalSteps: loop.totalSteps, seed: spec.seed64)
        optimizer = trainer.optimizer
        if try loop.restore() {
        } else if let source = InitFrom.source(spec, role: role) {
            try InitFrom.start(model.parameters, kind: ResidualMLP.checkpointKind, from: source, log: log, id: id)
        } else if let source = upcycleSource {
            try upcycle(model, from: source)
        } else if let source = moeficationSource {
            try moefy(model, from: source)
        } else if let source = seedSource {
            try loadSeed(model, from: source)
        } else if let source = finetuneSource {
            try loadFused(model, from: source)
        }
        let active = model.moeLayers.isEmpty ? "" : " (\(model.activeParameterCount) active per sample)"
        log.info("\(id): \(model.parameters.scalarCount) parameters\(active), \(loop.budget), batch \(spec.train.batchSize)"
                 + (group?.describe(spec) ?? ""))
        if let group {
            try loop.run(group.step(trainer), batches)
        } else {
            try loop.run(trainer, batches)
        }
    }

    /// The `domain` router routes by each sample's domain id: data without them is refused.
    static func checkDomains(_ config: ModelConfig, _ splits: Dataset...) throws {
        guard config.moe?.router == .domain else { return }
        for split in splits where split.count > 0 && split.domain == nil {
            throw RuntimeError.missingDomains(path: "tasks/data.h5")
        }
    }
}

/// The train task's part of the loop: the residual MLP's checkpoints, router metrics (MoE
/// models), the moefication partition, and in a data- or expert-parallel group the collectives
/// that make the replicas whole (expert synchronisation, the compression residuals).
extension TrainTask: ModelCheckpointHooks {
    var checkpointOptimizer: Optimizer { optimizer }
    var trainedModel: any TrainableModel { model }
    var inputNormalization: Standardization? { norm }

    func evaluate(step: Int) throws -> TrainingLoop.Evaluated? {
        try group?.synchronize(optimizer)
        guard val.count > 0, isLead else { return nil }
        let r = model.evaluate(x: val.x, labels: val.y, domains: val.domain, batchSize: spec.eval.batchSize)
        return .init(loss: r.loss, accuracy: r.accuracy)
    }

    func afterStep(_ report: StepReport) throws {
        try routerMetrics?.accumulate(model, reduce: group?.reduce)
    }

    func logRow(step: Int, window: TrainingWindow) { routerMetrics?.log(step: step) }

    func writeSeries(to file: H5File) throws {
        try routerMetrics?.write(to: file)
        try writeMoeficationGroups(to: file)
    }

    /// The router windows, and in a group with lossy compression each rank's error-feedback
    /// residual (`compression/residual`, `[ranks, parameters]`, gathered by `beforeCheckpoint`).
    func writeResumeState(to file: H5File) throws {
        try routerMetrics?.writeWindows(to: file)
        try group?.writeResumeState(to: file, optimizer: optimizer)
    }

    func readState(from file: H5File) throws {
        try routerMetrics?.read(from: file)
        try routerMetrics?.readWindows(from: file)
        try readMoeficationGroups(from: file)
        try group?.readState(from: file)
    }

    /// Each rank's compression residual differs: gather them (every rank calls this at the same
    /// step); then every rank gets the owners' experts.
    func beforeCheckpoint() throws { try group?.beforeCheckpoint(optimizer) }

    func beforeFinish() throws { try group?.synchronize(optimizer) }

    var stopCommunicator: Communicator? { communicator }

    func writeResult(to file: H5File) throws {
        try file.setAttribute("train_samples", Int64(trainSamples))
        try writeBranchAttributes(to: file)
        try Checkpoint.writeModel(model, normalization: norm, to: file, at: "model")
    }
}
