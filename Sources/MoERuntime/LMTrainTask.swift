import Foundation
import MoEComm
import MoEData
import MoEHDF5
import MoENN
import MoESpec
import MoEStore

/// What a language-model run needs beyond the spec's `train`, `eval` and `output` sections:
/// the architecture (`model.kind: transformer`) and the corpus (`data.source: text`).
struct LMSetup: Equatable {
    var model: TransformerConfig
    /// The corpus path resolved against the spec's directory, and as the spec wrote it.
    var corpusPath: String
    var corpusSource: String
    /// `data.split` fractions (test is the rest).
    var train: Double
    var val: Double
    /// `train.steps`: the step budget; nil = `train.epochs` epochs of
    /// `train tokens / (batch_size · context)` steps each (`LMTrainTask.stepBudget`).
    var steps: Int?
}

/// Training batches of a language model for `TrainingLoop`: one "epoch" is the whole step
/// budget, and the batch of step `s` is `TextBatches.fill(step: s)` (a pure function of the
/// seed and `s`, so a resumed run refills exactly the batches it would have seen).
final class TextBatchSource: BatchSource {
    let batches: TextBatches
    let batchesPerEpoch: Int
    private var next_ = 0, epoch = 0

    init(_ batches: TextBatches, steps: Int) {
        self.batches = batches
        batchesPerEpoch = steps
    }

    func start(epoch: Int) { (self.epoch, next_) = (epoch, 0) }

    func next() -> Bool {
        guard next_ < batchesPerEpoch else { return false }
        batches.fill(step: epoch * batchesPerEpoch + next_)
        next_ += 1
        return true
    }

    var batch: TokenWindows {
        TokenWindows(tokens: batches.tokens.baseAddress!, batch: batches.batchSize, length: batches.context + 1,
                     domains: batches.domains.baseAddress!)
    }
}

/// The `train` task of a transformer LM (ARCHITECTURE §2, §5.4): `TransformerLM` built from the
/// spec, batches from `TextBatches` (`train.steps` steps of `train.batch_size` windows), the
/// local step (`Trainer`), driven by the one `TrainingLoop` (checkpoints, exact resume,
/// `/metrics`). The loop counts its items as tokens (`MetricsLog.Items.tokens`): `train_loss` and
/// `train_accuracy` per predicted token, `lr`, `grad_norm` and `tokens_per_second` (batch_size ·
/// context per step), no `epoch` or `samples_per_second`; and the progress line shows tokens/s.
/// For MoE models it adds the router series per block (`/router/<i>/…`).
/// Validation is the §5.4 protocol on the val split (`LMScores`); the logged line adds the val
/// bits per byte.
///
/// With `parallelism.mode: data | expert` the task is a group of processes (`TrainingGroup`):
/// every rank fills the same global batch and trains on its windows through `DataParallelStep`
/// (the loss the global mean over the batch's predicted tokens), the router series are summed
/// over the group, rank 0 alone evaluates, logs and writes the task's files.
final class LMTrainTask {
    let spec: ExperimentSpec
    let setup: LMSetup
    let layout: RunLayout
    let log: RunLog
    let id: String
    /// As for the MLP (`TrainTask.Role`): `pretrain` trains the dense LM of an upcycling or
    /// MoEfication run, `train` the spec's LM, `expert(i)` branch `i`, `finetune` the fused LM.
    let role: TrainTask.Role
    /// The group of processes running this task, or a group of one; rank 0 writes the files.
    let communicator: Communicator
    var isLead: Bool { communicator.rank == 0 }
    /// The seed of the initial parameters (`TrainTask.initialisationSeed`: the spec seed, or an
    /// independent branch expert's own).
    let initSeed: UInt64
    /// The epochs of the step budget when no step count is given: `split.pretrain_epochs` for
    /// `pretrain`, else the role spec's `train.epochs`.
    let epochs: Int
    private var model: TransformerLM!
    private var optimizer: Optimizer!
    private var corpus: TextCorpus!
    private var routerMetrics: RouterMetricsLog?
    /// `neurons`: each MoE block's partition of the dense FFN units (LMTrainTask+Upcycling).
    var moeficationGroups: [Int: [[Int]]] = [:]
    /// Train tokens of the domains this task samples (an expert's shard, else all of train).
    private var trainTokens = 0
    /// The data- or expert-parallel group this rank trains in.
    private var group: TrainingGroup?

    /// `spec` is the run's spec; the task trains with the role's spec (`expertSpec(i)`,
    /// `finetuneSpec`) and the role's architecture: the dense LM (no MoE blocks) for `pretrain`
    /// and branch experts, the spec's LM for `train` and for `finetune` after `fusion.method: mix`,
    /// else the dense fused LM.
    init(spec: ExperimentSpec, setup: LMSetup, layout: RunLayout, log: RunLog, role: TrainTask.Role = .train,
         communicator: Communicator = SoloCommunicator()) {
        switch role {
        case .pretrain: (self.spec, id) = (spec, "pretrain")
        case .train: (self.spec, id) = (spec, "train")
        case .expert(let i): (self.spec, id) = (spec.expertSpec(i), "expert-\(i)")
        case .finetune: (self.spec, id) = (spec.finetuneSpec, "finetune")
        }
        var setup = setup
        if role != .train && !(role == .finetune && spec.fusion.method == .mix) { setup.model.moe = nil }
        if role != .train { setup.steps = role == .pretrain ? (spec.split.pretrainSteps > 0 ? spec.split.pretrainSteps : nil) : self.spec.train.steps }
        self.setup = setup
        self.layout = layout
        self.log = log
        self.role = role
        self.communicator = communicator
        initSeed = TrainTask.initialisationSeed(spec, role)
        epochs = role == .pretrain ? spec.split.pretrainEpochs : self.spec.train.epochs
    }

    func run() throws {
        corpus = try TextDataTask.load(layout: layout)
        // Branch experts and finetune start from a checkpoint (LMTrainTask+Branch.swift); finetune
        // trains whatever model config it holds (dense, or BTX's MoE).
        let start = Self.startSource(spec, role: role, layout: layout)
        let model = role == .finetune ? try Self.modelToFinetune(from: start!.path, group: spec.handoffGroup(start!.path, layout: layout) ?? "model") : TransformerLM(config: setup.model, seed: initSeed)
        self.model = model
        let config = model.config
        group = try TrainingGroup(spec: spec, communicator: communicator, model: model)
        routerMetrics = config.moe == nil ? nil : RouterMetricsLog(moeLayers: model.moeLayers,
                                                                   blocks: model.blocks.filter { $0.feedForward is MoELayer }.map(\.index))
        let domains = try Self.trainingDomains(spec, role: role, corpus: corpus, dataFile: layout.taskFile("data"))
        trainTokens = Self.trainTokens(corpus, domains: domains)
        let batches = try TextBatches(corpus: corpus, context: config.context, batchSize: spec.train.batchSize, seed: spec.seed64, domains: domains)
        let steps = Self.stepBudget(setup, spec: spec, epochs: epochs, trainTokens: trainTokens)
        let source = TextBatchSource(batches, steps: steps)
        let loop = TrainingLoop(id: id, spec: spec, layout: layout, log: log, isLead: isLead, hooks: self,
                                batchesPerEpoch: steps, epochs: 1, steps: steps,
                                moe: config.moe != nil, communication: group != nil, items: .tokens, legacy: .train)
        let trainer = Trainer(model: model, config: spec.optimizerConfig, totalSteps: loop.totalSteps, seed: spec.seed64)
        optimizer = trainer.optimizer
        let restored = try loop.restore()
        if !restored, let source = denseSource { try startFromDense(model, path: source) }
        if !restored, let source = InitFrom.source(spec, role: role) {
            try InitFrom.start(model.parameters, kind: TransformerLM.checkpointKind, from: source, log: log, id: id)
        }
        if !restored, let start, role != .finetune {
            try Self.loadStart(model, from: start.path, what: start.what, group: spec.handoffGroup(start.path, layout: layout) ?? "model")
            log.info("\(id): branched from \(start.what) in \(start.path)")
        }
        if role == .finetune, let start { log.info("\(id): fine-tuning \(start.what) in \(start.path) on all of train") }
        let active = model.activeParameterCount
        let data = domains.map { " of " + $0.map { corpus.domains[$0] }.joined(separator: ", ") } ?? ""
        log.info("\(id): transformer LM, \(model.parameters.scalarCount) parameters (\(active) active per token), "
                 + "\(steps) steps × \(spec.train.batchSize) windows of \(config.context) tokens\(data)" + (group?.describe(spec) ?? ""))
        if let group {
            try loop.run(group.step(trainer), source)
        } else {
            try loop.run(trainer, source)
        }
    }

    /// `train.steps`, or `epochs` passes of `⌊train tokens / (batch_size · context)⌋` steps
    /// (at least one step per epoch): windows are sampled, so an epoch is a token count.
    static func stepBudget(_ setup: LMSetup, spec: ExperimentSpec, epochs: Int, trainTokens: Int) -> Int {
        setup.steps ?? epochs * max(1, trainTokens / (spec.train.batchSize * setup.model.context))
    }
}

extension LMTrainTask: ModelCheckpointHooks {
    var checkpointOptimizer: Optimizer { optimizer }
    var trainedModel: any TrainableModel { model }
    var inputNormalization: Standardization? { nil }

    func evaluate(step: Int) throws -> TrainingLoop.Evaluated? {
        try group?.synchronize(optimizer)
        guard isLead else { return nil }
        let scores = LMScores.score(model, corpus, split: .val, batchSize: spec.eval.batchSize)
        guard scores.overall.scored > 0 else { return nil }
        return .init(loss: scores.overall.meanLoss, accuracy: scores.overall.accuracy,
                     note: String(format: " val_bits_per_byte %.4f", LMScores.bitsPerByte(scores.overall.meanLoss)))
    }

    func afterStep(_ report: StepReport) throws { try routerMetrics?.accumulate(model.moeLayers, reduce: group?.reduce) }

    func logRow(step: Int, window: TrainingWindow) { routerMetrics?.log(step: step) }

    func writeSeries(to file: H5File) throws {
        try routerMetrics?.write(to: file)
        try MoeficationGroups.write(moeficationGroups, to: file)
    }

    /// The router windows, and in a group with lossy compression every rank's residual.
    func writeResumeState(to file: H5File) throws {
        try routerMetrics?.writeWindows(to: file)
        try group?.writeResumeState(to: file, optimizer: optimizer)
    }

    func readState(from file: H5File) throws {
        try routerMetrics?.read(from: file)
        try routerMetrics?.readWindows(from: file)
        try MoeficationGroups.read(from: file, into: &moeficationGroups)
        try group?.readState(from: file)
    }

    func beforeCheckpoint() throws { try group?.beforeCheckpoint(optimizer) }

    func beforeFinish() throws { try group?.synchronize(optimizer) }

    var stopCommunicator: Communicator? { communicator }

    func writeResult(to file: H5File) throws {
        try Self.writeTrainingAttributes(spec, role: role, tokens: trainTokens, to: file)
        try Checkpoint.writeModel(model, normalization: nil, to: file, at: "model")
    }

    func doneNote(_ metrics: MetricsLog) -> String {
        metrics.evalValues["val_loss"]!.last.map { String(format: ", val bits per byte %.4f", LMScores.bitsPerByte($0)) } ?? ""
    }
}
