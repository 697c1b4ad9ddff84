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

    /// `pretrain`: the dense model of a sparse-upcycling run, for `split.pretrain_epochs` epochs.
    /// `train`: the spec's model; with upcycling it starts from the dense model's parameters, with
    /// `neurons` from the dense model moefied (TrainTask+Moefication.swift).
    /// `expert(i)`: branch `i` of `split.strategy: branch`, on its shard (TrainTask+Branch.swift).
    /// `finetune`: the fused (or stacked) model trained on the full training split with
    /// `fusion.finetune` (TrainTask+Branch.swift).
    enum Role: Equatable { case pretrain, train, expert(Int), finetune }

    private var metrics = MetricsLog()
    private var routerMetrics: RouterMetricsLog?
    /// Kept checkpoints: one file each, and copies for the finished task file.
    private lazy var store = CheckpointStore(layout: layout, task: id, keep: spec.output.keepCheckpoints)
    /// Sums over the steps since the last metrics row (kept in checkpoints, so a resumed task's
    /// next row equals an uninterrupted run's).
    struct LogWindow {
        var loss = 0.0, aux = 0.0, correct = 0, rows = 0, steps = 0
        /// Sums over the window's steps of a group's costs (see `MetricsLog.communicationSeries`).
        var compute = 0.0, communication = 0.0, waiting = 0.0, sent = 0.0, received = 0.0, compressionError = 0.0
        var since = Date()

        var values: [Double] {
            [loss, aux, Double(correct), Double(rows), Double(steps), compute, communication, waiting, sent, received, compressionError]
        }
        init() {}
        init(_ v: [Double]) {
            (loss, aux, correct, rows, steps) = (v[0], v[1], Int(v[2]), Int(v[3]), Int(v[4]))
            if v.count >= 11 { (compute, communication, waiting, sent, received, compressionError) = (v[5], v[6], v[7], v[8], v[9], v[10]) }
        }
    }
    private var window = LogWindow()
    /// `neurons` split: each MoE block's partition of the dense FFN units (see TrainTask+Moefication).
    var moeficationGroups: [Int: [[Int]]] = [:]
    private var norm: Standardization?
    /// The data- or expert-parallel group this rank trains in (`parallelism.mode: data | expert`).
    private var group: DataParallelGroup?
    /// The seed of the initial parameters: the spec seed (an expert's `seed` override changes
    /// only its batch order and dropout, so every branch starts from the same seed model).
    let modelSeed: UInt64
    /// The seed of this task's initialisation: `modelSeed`, or an independent expert's own.
    let initSeed: UInt64
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
        if spec.split.pretrainEpochs > 0 { return layout.taskFile("pretrain") }
        return spec.split.resolvedUpcycleFrom
    }

    /// Copies the dense source into `model` (sparse upcycling); errors name the tensor.
    private func upcycle(_ model: ResidualMLP, from path: String) throws {
        let file = try H5File.open(path)
        guard let group = Evaluation.modelGroup(in: file) else {
            throw RuntimeError.io(path: path, message: "holds no model to upcycle from (expected a checkpoint group, /model or /models/final)")
        }
        let (dense, _) = try Checkpoint.loadModel(from: file, at: group)
        do {
            try Upcycling.upcycle(from: Upcycling.parameters(of: dense), into: model)
        } catch let error as Upcycling.Mismatch {
            throw RuntimeError.io(path: path, message: "cannot upcycle: \(error)")
        }
        log.info("\(id): upcycled from the dense model in \(path): its FFNs copied into every expert, routers fresh")
    }

    func run() throws {
        let (train, norm) = try trainingData()
        let (val, _) = try DataTask.load("val", layout: layout)
        self.norm = norm
        trainSamples = train.count
        var config = spec.modelConfig(features: train.features, classes: train.classes)
        // Pre-training and branch experts train the dense model; `finetune` trains the MoE model of
        // `fusion.method: mix` (else the dense fused or stacked model).
        if role != .train && !(role == .finetune && spec.fusion.method == .mix) { config.moe = nil }
        let model = ResidualMLP(config: config, seed: initSeed)
        try Self.checkDomains(model.config, train, val)
        let parallel = spec.parallelism.mode == .data || spec.parallelism.mode == .expert
        metrics = MetricsLog(moe: model.config.moe != nil, communication: parallel)
        routerMetrics = model.config.moe == nil ? nil : RouterMetricsLog(model: model)
        let batches = try MiniBatches(train, batchSize: spec.train.batchSize, seed: spec.seed64)
        let epochs = role == .pretrain ? spec.split.pretrainEpochs : spec.train.epochs
        let totalSteps = epochs * batches.batchesPerEpoch
        let trainer = Trainer(model: model, config: spec.optimizerConfig, totalSteps: totalSteps, seed: spec.seed64)
        group = parallel ? try DataParallelGroup(communicator: communicator, parameters: model.parameters,
                                                     compression: CompressionScheme(rawValue: spec.parallelism.compression.rawValue) ?? .none,
                                                     ratio: spec.parallelism.ratio) : nil
        group?.attach(to: model, shardExperts: spec.parallelism.mode == .expert)
        var epoch = 0, batchInEpoch = 0
        if let position = try restore(model: model, optimizer: trainer.optimizer) {
            (epoch, batchInEpoch) = position
            log.info("\(id): resuming from the checkpoint at step \(trainer.step) (epoch \(epoch + 1), batch \(batchInEpoch))")
        } else if let source = upcycleSource {
            try upcycle(model, from: source)
        } else if let source = moeficationSource {
            try moefy(model, from: source)
        } else if let source = seedSource {
            try loadSeed(model, from: source)
        } else if let source = finetuneSource {
            try loadFused(model, from: source)
        }
        log.info("\(id): \(model.parameters.scalarCount) parameters, \(epochs) epochs × \(batches.batchesPerEpoch) steps, batch \(spec.train.batchSize)"
                 + (group.map { " over \($0.worldSize) \(spec.parallelism.mode.rawValue)-parallel workers" } ?? ""))

        let start = Date()
        window.since = Date()
        while epoch < epochs {
            batches.start(epoch: epoch)
            for _ in 0..<batchInEpoch { _ = batches.next() }
            while batches.next() {
                let r: StepResult
                var stop = Interrupts.requested
                if let group {
                    let p = try trainer.trainStep(batches.x.data, labels: batches.labelPointer, rows: batches.rows,
                                                  domains: batches.domains?.baseAddress, group: group, stop: stop)
                    r = p.step
                    stop = p.stop
                    window.compute += p.computeSeconds
                    window.communication += p.communication.communicationSeconds
                    window.waiting += p.communication.waitSeconds
                    window.sent += Double(p.communication.bytesSent)
                    window.received += Double(p.communication.bytesReceived)
                    window.compressionError += p.compressionError
                } else {
                    r = trainer.trainStep(batches.x.data, labels: batches.labelPointer, rows: batches.rows,
                                          domains: batches.domains?.baseAddress)
                }
                batchInEpoch += 1
                let step = trainer.step
                guard r.loss.isFinite, r.gradNorm.isFinite else {
                    throw RuntimeError.diverged(task: id, step: step + 1, epoch: epoch, loss: r.loss, gradNorm: r.gradNorm, spec: spec)
                }
                window.loss += r.loss * Double(batches.rows); window.aux += r.auxLoss * Double(batches.rows)
                window.correct += r.correct
                try routerMetrics?.accumulate(model, reduce: group.map { g in { try g.allReduce(&$0) } })
                window.rows += batches.rows; window.steps += 1
                if step % spec.train.logEvery == 0 || step == totalSteps {
                    let elapsed = max(Date().timeIntervalSince(window.since), 1e-9)
                    let perStep = 1 / Double(max(window.steps, 1))
                    metrics.log(step: step, [
                        "compute_seconds": window.compute * perStep, "communication_seconds": window.communication * perStep,
                        "wait_seconds": window.waiting * perStep, "bytes_sent": window.sent * perStep,
                        "bytes_received": window.received * perStep, "compression_error": window.compressionError * perStep,
                        "train_loss": window.loss / Double(window.rows),
                        "train_accuracy": Double(window.correct) / Double(window.rows),
                        "lr": Double(r.lr), "grad_norm": r.gradNorm, "epoch": Double(epoch),
                        "samples_per_second": Double(window.rows) / elapsed,
                        "aux_loss": window.aux / Double(window.rows),
                    ])
                    routerMetrics?.log(step: step)
                    let rate = Double(window.rows) / elapsed
                    let eta = Double(totalSteps - step) * Double(spec.train.batchSize) / max(rate, 1e-9)
                    let line = "\(id): " + String(format: "epoch %d/%d step %d/%d loss %.4f acc %.3f lr %.2e %.0f samples/s ETA %.0fs",
                                      epoch + 1, epochs, step, totalSteps, window.loss / Double(window.rows),
                                      Double(window.correct) / Double(window.rows), r.lr, rate, eta)
                    log.step(line, done: Double(step) / Double(totalSteps), last: step == totalSteps)
                    window = LogWindow()
                }
                if spec.train.evalEvery > 0 && step % spec.train.evalEvery == 0 { try evaluate(model, trainer.optimizer, val, step: step) }
                if spec.train.checkpointEvery > 0 && step % spec.train.checkpointEvery == 0 {
                    try checkpoint(model: model, optimizer: trainer.optimizer, epoch: epoch, batch: batchInEpoch)
                }
                if stop {
                    try checkpoint(model: model, optimizer: trainer.optimizer, epoch: epoch, batch: batchInEpoch)
                    throw RuntimeError.interrupted(task: id, step: step)
                }
            }
            epoch += 1
            batchInEpoch = 0
            if spec.train.evalEvery == 0 { try evaluate(model, trainer.optimizer, val, step: trainer.step) }
            if spec.train.checkpointEvery == 0 {
                try checkpoint(model: model, optimizer: trainer.optimizer, epoch: epoch, batch: 0)
            }
        }
        try finish(model: model, optimizer: trainer.optimizer, seconds: Date().timeIntervalSince(start))
    }

    private func evaluate(_ model: ResidualMLP, _ optimizer: Optimizer, _ val: Dataset, step: Int) throws {
        try group?.synchronizeExperts(optimizer)
        guard val.count > 0, isLead else { return }
        let r = model.evaluate(x: val.x, labels: val.y, domains: val.domain, batchSize: spec.eval.batchSize)
        metrics.logEval(step: step, loss: r.loss, accuracy: r.accuracy)
        log.record("\(id): " + String(format: "step %d val_loss %.4f val_accuracy %.4f", step, r.loss, r.accuracy))
    }

    /// Saves the current state as the newest checkpoint, in a file of its own.
    private func checkpoint(model: ResidualMLP, optimizer: Optimizer, epoch: Int, batch: Int) throws {
        // Each rank's compression residual differs: gather them (every rank calls this at the same step).
        let residuals = try group?.gatherResiduals()
        try group?.synchronizeExperts(optimizer)
        guard isLead else { return }  // the replicas are identical: rank 0 keeps the state
        try store.save(model.parameters, optimizer, epoch: epoch, batch: batch, writeState: { file in
            try metrics.write(to: file)
            try routerMetrics?.write(to: file)
            try routerMetrics?.writeWindows(to: file)
            try file.createDataset("metrics/window", window.values)
            try writeMoeficationGroups(to: file)
            if let residuals, let size = group?.worldSize {
                // `[ranks, parameters]`: the error-feedback memory at this checkpoint.
                try file.createDataset("compression/residual", residuals, shape: [size, residuals.count / size])
                try file.openGroup("compression").setAttribute("step", Int64(optimizer.stepCount))
            }
        }, writeEntry: { file, path in try writeCheckpoint(model, optimizer, to: file, at: path) })
    }

    /// `<path>/{model, optimizer}`: one checkpoint.
    private func writeCheckpoint(_ model: ResidualMLP, _ optimizer: Optimizer, to file: H5File, at path: String) throws {
        try Checkpoint.writeModel(model, normalization: norm, to: file, at: path + "/model")
        try Checkpoint.writeOptimizer(optimizer, kind: spec.optimizerConfig.kind, to: file, at: path + "/optimizer")
    }

    /// Loads the newest intact checkpoint (model, optimizer, metrics, windows), or nil on a
    /// fresh start.
    private func restore(model: ResidualMLP, optimizer: Optimizer) throws -> (epoch: Int, batch: Int)? {
        try store.restore(model.parameters, optimizer, isLead: isLead, warn: log.warning, loadState: { file in
            metrics = try MetricsLog.read(from: file, moe: routerMetrics != nil, communication: metrics.trainSeries.contains("bytes_sent"))
            try routerMetrics?.read(from: file)
            try routerMetrics?.readWindows(from: file)
            let w = try file.read("metrics/window", as: Double.self).values
            guard w.count >= 5 else { throw RuntimeError.io(path: file.filePath, message: "metrics/window: \(w.count) values") }
            window = LogWindow(w)
            try readMoeficationGroups(from: file)
            try group?.restoreResiduals(file.exists("compression/residual") ? try file.read("compression/residual", as: Float.self).values : [])
        }, loadEntry: { file, path in
            try Checkpoint.loadParameters(into: model.parameters, from: file, at: path + "/model")
            try Checkpoint.loadOptimizer(into: optimizer, from: file, at: path + "/optimizer")
        })
    }

    /// The `domain` router routes by each sample's domain id: data without them is refused.
    static func checkDomains(_ config: ModelConfig, _ splits: Dataset...) throws {
        guard config.moe?.router == .domain else { return }
        for split in splits where split.count > 0 && split.domain == nil {
            throw RuntimeError.missingDomains(path: "tasks/data.h5")
        }
    }

    private func finish(model: ResidualMLP, optimizer: Optimizer, seconds: Double) throws {
        try group?.synchronizeExperts(optimizer)
        guard isLead else { return }
        try H5File.createAtomically(layout.taskFile(id)) { file in
            try file.setTaskAttributes(id)
            try file.setAttribute("steps", Int64(optimizer.stepCount))
            try file.setAttribute("train_seconds", seconds)
            try file.setAttribute("train_samples", Int64(trainSamples))
            try writeBranchAttributes(to: file)
            try metrics.write(to: file)
            try routerMetrics?.write(to: file)
            try writeMoeficationGroups(to: file)
            try store.write(model.parameters, optimizer, to: file) { path in try writeCheckpoint(model, optimizer, to: file, at: path) }
            try Checkpoint.writeModel(model, normalization: norm, to: file, at: "model")
        }
        store.removeAll()
        let lastEval = metrics.evalValues["val_accuracy"]!.last.map { String(format: ", val accuracy %.4f", $0) } ?? ""
        log.info("\(id): " + String(format: "done, %d steps in %.1f s", optimizer.stepCount, seconds) + lastEval)
    }
}
