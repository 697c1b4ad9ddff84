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
/// the residual MLP cut into `experts` stages and trained with the GPipe schedule
/// (`PipelineTrainer`; Huang et al. 2019) over `parallelism.microbatches` micro-batches, one
/// stage per rank of a group of `parallelism.workers` = `experts` processes
/// (`parallelism.mode: pipeline`), or every stage in one process (`parallelism.mode: none`, the
/// reference). The stages stacked are the model itself, so the task delivers a plain residual
/// MLP and learns what one process training that model (`split.strategy: none`) learns from the
/// same batches, to float rounding.
///
/// Files: the dense train task's layout exactly (`/metrics`, `/checkpoints/<step>/{model,
/// optimizer}`, `/model`), written by rank 0 after gathering the other stages' parameters and
/// optimizer state from their ranks (`PipelineTrainer.gather`) at every checkpoint, evaluation
/// and at the end. A group's metrics add the per-step costs (`MetricsLog.communicationSeries`)
/// and `bubble_fraction`: rank 0's waiting as a fraction of the step (the pipeline bubble).
/// Resume: every rank loads the newest intact checkpoint (`CheckpointStore`) and takes its stage.
final class PipelineTrainTask {
    let spec: ExperimentSpec
    let layout: RunLayout
    let log: RunLog
    let id = "train"
    let communicator: Communicator
    var isLead: Bool { communicator.rank == 0 }
    var isGroup: Bool { communicator.worldSize > 1 }

    private var metrics = MetricsLog()
    /// `/metrics/bubble_fraction`, one row per `/metrics/step` (groups only).
    private var bubble: [Double] = []
    private lazy var store = CheckpointStore(layout: layout, task: id, keep: spec.output.keepCheckpoints)
    private var norm: Standardization?
    private var trainSamples = 0

    /// Sums over the steps since the last metrics row (kept in checkpoints for exact resume).
    struct Window {
        var loss = 0.0, correct = 0.0, rows = 0.0, steps = 0.0
        var compute = 0.0, communication = 0.0, waiting = 0.0, sent = 0.0, received = 0.0, seconds = 0.0
        var since = Date()
        var values: [Double] { [loss, correct, rows, steps, compute, communication, waiting, sent, received, seconds] }
        init() {}
        init(_ v: [Double]) {
            (loss, correct, rows, steps, compute) = (v[0], v[1], v[2], v[3], v[4])
            (communication, waiting, sent, received, seconds) = (v[5], v[6], v[7], v[8], v[9])
        }
    }
    private var window = Window()

    init(spec: ExperimentSpec, layout: RunLayout, log: RunLog, communicator: Communicator = SoloCommunicator()) {
        self.spec = spec
        self.layout = layout
        self.log = log
        self.communicator = communicator
    }

    func run() throws {
        let (train, norm) = try DataTask.load("train", layout: layout)
        let (val, _) = try DataTask.load("val", layout: layout)
        self.norm = norm
        trainSamples = train.count
        var config = spec.modelConfig(features: train.features, classes: train.classes)
        config.moe = nil
        let model = ResidualMLP(config: config, seed: spec.seed64)
        metrics = MetricsLog(moe: false, communication: isGroup)
        let batches = try MiniBatches(train, batchSize: spec.train.batchSize, seed: spec.seed64)
        let epochs = spec.train.epochs
        let totalSteps = epochs * batches.batchesPerEpoch
        guard communicator.worldSize == 1 || communicator.worldSize == spec.experts else {
            throw RuntimeError.usage("pipeline: \(communicator.worldSize) workers for \(spec.experts) stages (one stage per worker)")
        }
        let trainer = PipelineTrainer(model: model, stages: spec.experts, communicator: communicator, config: spec.optimizerConfig,
                                      totalSteps: totalSteps, seed: spec.seed64, microbatches: spec.parallelism.microbatches)
        // Rank 0's view of the whole optimizer state, in a dense train task's names (for files).
        let full = spec.optimizerConfig.makeOptimizer(model.parameters)
        var epoch = 0, batchInEpoch = 0
        if let position = try restore(model: model, optimizer: full) {
            (epoch, batchInEpoch) = position
            trainer.adopt(optimizer: full)
            log.info("\(id): resuming from the checkpoint at step \(trainer.step) (epoch \(epoch + 1), batch \(batchInEpoch))")
        }
        let blocks = trainer.ranges.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound - 1)" }
        let placement = isGroup ? "one stage per worker over \(communicator.worldSize) pipeline-parallel workers" : "all stages in one process"
        log.info("\(id): GPipe training of \(trainer.stageCount) stages (blocks \(blocks.joined(separator: ", "))), \(model.parameters.scalarCount) parameters, "
                 + "\(spec.parallelism.microbatches) micro-batches per batch, \(placement); \(epochs) epochs × \(batches.batchesPerEpoch) steps, batch \(spec.train.batchSize)")

        let start = Date()
        window.since = Date()
        while epoch < epochs {
            batches.start(epoch: epoch)
            for _ in 0..<batchInEpoch { _ = batches.next() }
            while batches.next() {
                let r = try trainer.trainStep(batches.x.data, labels: batches.labelPointer, rows: batches.rows, stop: Interrupts.requested)
                batchInEpoch += 1
                let step = trainer.step
                guard r.loss.isFinite, r.gradNorm.isFinite else {
                    throw RuntimeError.diverged(task: id, step: step + 1, epoch: epoch, loss: r.loss, gradNorm: r.gradNorm, spec: spec)
                }
                accumulate(r, rows: batches.rows)
                if step % spec.train.logEvery == 0 || step == totalSteps { logRow(step: step, totalSteps: totalSteps, epoch: epoch, epochs: epochs, r) }
                if spec.train.evalEvery > 0 && step % spec.train.evalEvery == 0 { try evaluate(trainer, val, step: step) }
                if spec.train.checkpointEvery > 0 && step % spec.train.checkpointEvery == 0 {
                    try checkpoint(trainer, full, epoch: epoch, batch: batchInEpoch)
                }
                if r.stop {
                    try checkpoint(trainer, full, epoch: epoch, batch: batchInEpoch)
                    throw RuntimeError.interrupted(task: id, step: step)
                }
            }
            epoch += 1
            batchInEpoch = 0
            if spec.train.evalEvery == 0 { try evaluate(trainer, val, step: trainer.step) }
            if spec.train.checkpointEvery == 0 { try checkpoint(trainer, full, epoch: epoch, batch: 0) }
        }
        try finish(trainer, full, seconds: Date().timeIntervalSince(start))
    }

    private func accumulate(_ r: PipelineStepResult, rows: Int) {
        window.loss += r.loss * Double(rows); window.correct += Double(r.correct)
        window.rows += Double(rows); window.steps += 1
        window.compute += r.computeSeconds; window.seconds += r.seconds
        window.communication += r.communication.communicationSeconds; window.waiting += r.communication.waitSeconds
        window.sent += Double(r.communication.bytesSent); window.received += Double(r.communication.bytesReceived)
    }

    private func logRow(step: Int, totalSteps: Int, epoch: Int, epochs: Int, _ r: PipelineStepResult) {
        let elapsed = max(Date().timeIntervalSince(window.since), 1e-9)
        let perStep = 1 / max(window.steps, 1)
        metrics.log(step: step, [
            "compute_seconds": window.compute * perStep, "communication_seconds": window.communication * perStep,
            "wait_seconds": window.waiting * perStep, "bytes_sent": window.sent * perStep,
            "bytes_received": window.received * perStep, "compression_error": 0,
            "train_loss": window.loss / window.rows, "train_accuracy": window.correct / window.rows,
            "lr": Double(r.lr), "grad_norm": r.gradNorm, "epoch": Double(epoch), "samples_per_second": window.rows / elapsed,
        ])
        if isGroup { bubble.append(window.seconds > 0 ? window.waiting / window.seconds : 0) }
        let rate = window.rows / elapsed
        let eta = Double(totalSteps - step) * Double(spec.train.batchSize) / max(rate, 1e-9)
        var line = "\(id): " + String(format: "epoch %d/%d step %d/%d loss %.4f acc %.3f lr %.2e %.0f samples/s ETA %.0fs",
                                      epoch + 1, epochs, step, totalSteps, window.loss / window.rows, window.correct / window.rows, r.lr, rate, eta)
        if isGroup { line += String(format: " bubble %.0f%%", 100 * bubble.last!) }
        log.step(line, done: Double(step) / Double(totalSteps), last: step == totalSteps)
        window = Window()
    }

    /// Collective: rank 0 gathers the current parameters and validates the whole model.
    private func evaluate(_ trainer: PipelineTrainer, _ val: Dataset, step: Int) throws {
        guard val.count > 0 else { return }
        try trainer.gather(withState: false)
        guard isLead else { return }
        let r = trainer.model.evaluate(x: val.x, labels: val.y, batchSize: spec.eval.batchSize)
        metrics.logEval(step: step, loss: r.loss, accuracy: r.accuracy)
        log.record("\(id): " + String(format: "step %d val_loss %.4f val_accuracy %.4f", step, r.loss, r.accuracy))
    }

    /// Collective: gathers every stage's parameters and optimizer state on rank 0, which keeps
    /// them as the newest checkpoint, in a file of its own.
    private func checkpoint(_ trainer: PipelineTrainer, _ full: Optimizer, epoch: Int, batch: Int) throws {
        try trainer.gather(optimizer: isLead ? full : nil, withState: true)
        guard isLead else { return }
        try store.save(trainer.model.parameters, full, epoch: epoch, batch: batch, writeState: { file in
            try writeMetrics(to: file)
            try file.createDataset("metrics/window", window.values)
        }, writeEntry: { file, path in try writeCheckpoint(trainer.model, full, to: file, at: path) })
    }

    private func writeMetrics(to file: H5File) throws {
        try metrics.write(to: file)
        if isGroup { try file.createDataset("metrics/bubble_fraction", bubble) }
    }

    /// `<path>/{model, optimizer}`: one checkpoint of the whole model.
    private func writeCheckpoint(_ model: ResidualMLP, _ full: Optimizer, to file: H5File, at path: String) throws {
        try Checkpoint.writeModel(model, normalization: norm, to: file, at: path + "/model")
        try Checkpoint.writeOptimizer(full, kind: spec.optimizerConfig.kind, to: file, at: path + "/optimizer")
    }

    /// Every rank: loads the newest intact checkpoint into the whole model and `full` (nil on a
    /// fresh start); rank 0 also keeps the older ones for the finished task file.
    private func restore(model: ResidualMLP, optimizer full: Optimizer) throws -> (epoch: Int, batch: Int)? {
        try store.restore(model.parameters, full, isLead: isLead, warn: log.warning, loadState: { file in
            metrics = try MetricsLog.read(from: file, moe: false, communication: isGroup)
            bubble = isGroup ? try file.read("metrics/bubble_fraction", as: Double.self).values : []
            let w = try file.read("metrics/window", as: Double.self).values
            guard w.count == Window().values.count else { throw RuntimeError.io(path: file.filePath, message: "metrics/window: \(w.count) values") }
            window = Window(w)
        }, loadEntry: { file, path in
            try Checkpoint.loadParameters(into: model.parameters, from: file, at: path + "/model")
            try Checkpoint.loadOptimizer(into: full, from: file, at: path + "/optimizer")
        })
    }

    private func finish(_ trainer: PipelineTrainer, _ full: Optimizer, seconds: Double) throws {
        try trainer.gather(optimizer: isLead ? full : nil, withState: true)
        guard isLead else { return }
        try H5File.createAtomically(layout.taskFile(id)) { file in
            try file.setTaskAttributes(id)
            try file.setAttribute("steps", Int64(full.stepCount))
            try file.setAttribute("train_seconds", seconds)
            try file.setAttribute("train_samples", Int64(trainSamples))
            try file.setAttribute("stages", Int64(trainer.stageCount))
            try file.setAttribute("stage_blocks", trainer.ranges.map { "\($0.lowerBound)-\($0.upperBound - 1)" }.joined(separator: ", "))
            try file.setAttribute("microbatches", Int64(spec.parallelism.microbatches))
            try writeMetrics(to: file)
            try store.write(trainer.model.parameters, full, to: file) { path in try writeCheckpoint(trainer.model, full, to: file, at: path) }
            try Checkpoint.writeModel(trainer.model, normalization: norm, to: file, at: "model")
        }
        store.removeAll()
        let lastEval = metrics.evalValues["val_accuracy"]!.last.map { String(format: ", val accuracy %.4f", $0) } ?? ""
        let meanBubble = bubble.isEmpty ? "" : String(format: ", bubble %.0f%% of the step", 100 * bubble.reduce(0, +) / Double(bubble.count))
        log.info("\(id): " + String(format: "done, %d steps in %.1f s", full.stepCount, seconds) + meanBubble + lastEval)
    }
}
