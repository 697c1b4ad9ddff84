import Foundation
import MoEComm
import MoEData
import MoEHDF5
import MoENN
import MoESpec

/// What a training task adds to `TrainingLoop`: its model's files, its evaluation, its extra
/// series, and the collectives its step strategy needs before anything reads the whole model.
/// Adding a model kind or a parallel mode adds a type conforming to this, never a loop.
protocol TrainingHooks: AnyObject {
    /// Rank 0's view of every trained parameter and of their optimizer: what checkpoints and the
    /// task file hold (in a group, valid after `beforeCheckpoint` / `beforeFinish`).
    var checkpointParameters: [Parameter] { get }
    var checkpointOptimizer: Optimizer { get }
    /// `<path>/{model, optimizer, …}`: one checkpoint entry, and its reverse (every rank).
    func writeEntry(to file: H5File, at path: String) throws
    func loadEntry(from file: H5File, at path: String) throws
    /// Validation at `step`: a collective where the strategy needs one; nil on other ranks than 0
    /// or without validation data.
    func evaluate(step: Int) throws -> TrainingLoop.Evaluated?
    /// The finished task file's own attributes and datasets, with `/model`.
    func writeResult(to file: H5File) throws
    /// The delivered model as a checkpoint group at `path` (`/best`, with the best parameters in place).
    func writeModel(to file: H5File, at path: String) throws
    /// The group whose ranks must agree on an early stop (rank 0 alone validates); nil alone.
    var stopCommunicator: Communicator? { get }

    /// After every step (every rank; a collective may reduce over the group).
    func afterStep(_ report: StepReport) throws
    /// At every metrics row, before the window is reset: rows of the extra series.
    func logRow(step: Int, window: TrainingWindow)
    /// Appended to the progress line of a metrics row.
    func progressNote(_ window: TrainingWindow) -> String
    /// Extra series, in every checkpoint and in the task file.
    func writeSeries(to file: H5File) throws
    /// State that only a resumed task needs (open windows of the extra series, residuals).
    func writeResumeState(to file: H5File) throws
    /// Reads back what `writeSeries` and `writeResumeState` wrote (every rank).
    func readState(from file: H5File) throws
    /// Collectives before a checkpoint, and before the task file (e.g. gathering stages).
    func beforeCheckpoint() throws
    func beforeFinish() throws
    /// After a checkpoint was loaded, before the first step.
    func resumed()
    /// Appended to the final "done" line (default: the last validation accuracy).
    func doneNote(_ metrics: MetricsLog) -> String
}

extension TrainingHooks {
    func afterStep(_ report: StepReport) throws {}
    func logRow(step: Int, window: TrainingWindow) {}
    func progressNote(_ window: TrainingWindow) -> String { "" }
    func writeSeries(to file: H5File) throws {}
    func writeResumeState(to file: H5File) throws {}
    func readState(from file: H5File) throws {}
    func beforeCheckpoint() throws {}
    func beforeFinish() throws {}
    func resumed() {}
    var stopCommunicator: Communicator? { nil }
    func doneNote(_ metrics: MetricsLog) -> String { Self.lastValidation(metrics) }
    static func lastValidation(_ metrics: MetricsLog) -> String {
        metrics.evalValues["val_accuracy"]!.last.map { String(format: ", val accuracy %.4f", $0) } ?? ""
    }
}

/// Batches in a reproducible order per epoch (the order of epoch e is a function of the seed and
/// e, so a resumed task replays it).
protocol BatchSource<Batch>: AnyObject {
    associatedtype Batch
    var batchesPerEpoch: Int { get }
    func start(epoch: Int)
    /// Advances to the next batch of the epoch; false at its end.
    func next() -> Bool
    var batch: Batch { get }
}

extension MiniBatches: BatchSource {
    var batch: LabelledRows { LabelledRows(x: x.data, labels: labelPointer, rows: rows, domains: domains?.baseAddress) }
}

/// The one training loop (ARCHITECTURE §3) of every training task: pretrain, train, expert,
/// finetune, layer-wise local and pipeline. It owns the step budget and the position in the data,
/// resume from the newest intact checkpoint (`CheckpointStore`), the divergence guard, the log
/// window (`TrainingWindow`) and `/metrics`, the evaluation and checkpoint cadence, interrupts, and
/// the finished task file written atomically. The step is a `StepStrategy`; what else differs is a
/// task's `TrainingHooks`.
///
/// Budget: `epochs` passes over the batch order, or with `steps` that many optimisation steps,
/// cycling through epochs of the batch order (the last epoch cut short). `train.eval_every: 0`
/// and `train.checkpoint_every: 0` mean at the end of every epoch, or with `steps` at the end of
/// training.
final class TrainingLoop {
    struct Evaluated {
        var loss: Double, accuracy: Double
        /// Appended to the logged line.
        var note = ""
    }

    let id: String
    let spec: ExperimentSpec
    let log: RunLog
    let isLead: Bool
    let hooks: any TrainingHooks
    let batchesPerEpoch: Int
    let epochs: Int
    let totalSteps: Int
    private(set) var metrics: MetricsLog
    private(set) var window: TrainingWindow
    private let moe: Bool, communication: Bool
    /// What a step scores (rows or tokens): names the throughput series and the progress line's rate.
    let items: MetricsLog.Items
    /// The part of the open window a resumed task read from its checkpoint: trained before
    /// `window.since`, so left out of the window's rate.
    private var untimed = (steps: 0.0, scored: 0.0)
    /// Wall time spent evaluating and checkpointing since `window.since`: not training, so left
    /// out of the window's rate (not out of its ETA, which has more of them to come).
    private var paused = 0.0
    private let legacy: TrainingWindow.Legacy
    private var store: CheckpointStore
    /// The next batch to train on.
    private(set) var epoch = 0, batchInEpoch = 0
    /// The best model by `eval.metric` so far (`BestModel`), and whether early stopping ended training.
    private var best: BestModel
    private(set) var stoppedEarly = false

    /// `steps` (when given) replaces `epochs` as the budget.
    init(id: String, spec: ExperimentSpec, layout: RunLayout, log: RunLog, isLead: Bool, hooks: any TrainingHooks,
         batchesPerEpoch: Int, epochs: Int, steps: Int? = nil,
         moe: Bool = false, communication: Bool = false, stages: Int = 0, items: MetricsLog.Items = .samples,
         legacy: TrainingWindow.Legacy) {
        self.id = id
        self.spec = spec
        self.log = log
        self.isLead = isLead
        self.hooks = hooks
        self.batchesPerEpoch = batchesPerEpoch
        stepsGiven = steps != nil
        if let steps {
            totalSteps = steps
            self.epochs = (steps + batchesPerEpoch - 1) / max(batchesPerEpoch, 1)
        } else {
            totalSteps = epochs * batchesPerEpoch
            self.epochs = epochs
        }
        (self.moe, self.communication, self.items, self.legacy) = (moe, communication, items, legacy)
        metrics = MetricsLog(moe: moe, communication: communication, items: items)
        window = TrainingWindow(stages: stages)
        store = CheckpointStore(layout: layout, task: id, keep: spec.output.keepCheckpoints)
        best = BestModel(metric: spec.eval.metric)
        self.layout = layout
    }
    private let layout: RunLayout
    private let stepsGiven: Bool

    /// The budget for the log: "E epochs × B steps", or "S steps (E epochs of B)" with `steps`.
    var budget: String {
        stepsGiven ? "\(totalSteps) steps (\(epochs) epoch\(epochs == 1 ? "" : "s") of \(batchesPerEpoch))" : "\(epochs) epochs × \(batchesPerEpoch) steps"
    }

    /// Loads the newest intact checkpoint (parameters, optimizer, metrics, window, the hooks'
    /// state and the data position); false on a fresh start.
    func restore() throws -> Bool {
        let stages = window.stages
        let position = try store.restore(hooks.checkpointParameters, hooks.checkpointOptimizer, isLead: isLead, warn: log.warning,
                                         loadState: { file in
            metrics = try MetricsLog.read(from: file, moe: moe, communication: communication, items: items)
            window = try TrainingWindow.read(from: file, stages: stages, legacy: legacy)
            try hooks.readState(from: file)
            try best.readState(from: file, parameters: hooks.checkpointParameters)
        }, loadEntry: { file, path in try hooks.loadEntry(from: file, at: path) })
        guard let position else { return false }
        (epoch, batchInEpoch) = position
        untimed = (window.steps, window.scored)
        hooks.resumed()
        log.info("\(id): resuming from the checkpoint at step \(hooks.checkpointOptimizer.stepCount) (epoch \(epoch + 1), batch \(batchInEpoch))")
        return true
    }

    /// Trains `strategy` on `batches` to the end of the budget, then writes the task file.
    func run<Batch>(_ strategy: any StepStrategy<Batch>, _ batches: any BatchSource<Batch>) throws {
        do {
            try train(strategy, batches)
        } catch {
            store.settle()  // no exit while a checkpoint file is being written
            throw error
        }
    }

    private func train<Batch>(_ strategy: any StepStrategy<Batch>, _ batches: any BatchSource<Batch>) throws {
        let start = Date()
        lastFile = start
        window.since = Date()
        let train = spec.train
        training: while epoch < epochs && strategy.step < totalSteps {
            batches.start(epoch: epoch)
            for _ in 0..<batchInEpoch { _ = batches.next() }
            while strategy.step < totalSteps, batches.next() {
                let r = try strategy.trainStep(on: batches.batch, stop: Interrupts.requested)
                batchInEpoch += 1
                let step = strategy.step
                guard r.loss.isFinite, r.gradNorm.isFinite else {
                    throw RuntimeError.diverged(task: id, step: step + 1, epoch: epoch, loss: r.loss, gradNorm: r.gradNorm, spec: spec)
                }
                window.add(r)
                try hooks.afterStep(r)
                if step % train.logEvery == 0 || step == totalSteps { logRow(step: step, r) }
                if train.evalEvery > 0 && step % train.evalEvery == 0, try evaluate(step: step) { break training }
                if train.checkpointEvery > 0 && step % train.checkpointEvery == 0 { try checkpoint() }
                else if step < totalSteps, try resumePointDue { try checkpoint(kept: false) }
                if r.stop {
                    try checkpoint()
                    try store.finishWriting()
                    throw RuntimeError.interrupted(task: id, step: step)
                }
            }
            epoch += 1
            batchInEpoch = 0
            // `0` = at the end of every epoch; with `steps`, at the end of training.
            let atEnd = !stepsGiven || strategy.step == totalSteps
            if train.evalEvery == 0 && atEnd, try evaluate(step: strategy.step) { break training }
            if train.checkpointEvery == 0 && atEnd {
                // Every epoch's checkpoint is kept (the task file lists the newest); its file is
                // written when `checkpointSeconds` have passed since the last one, and never for
                // the last (the task file follows at once).
                let due = Date().timeIntervalSince(lastFile) >= Self.checkpointSeconds
                try checkpoint(toDisk: due && strategy.step < totalSteps)
            }
        }
        try finish(seconds: Date().timeIntervalSince(start))
    }

    /// Closes the window into one `/metrics` row (and the hooks' series) and logs the progress line
    /// (`progressLine`).
    private func logRow(step: Int, _ r: StepReport) {
        let elapsed = max(Date().timeIntervalSince(window.since), 1e-9)
        let perStep = 1 / max(window.steps, 1)
        let rows = window.scored, c = window.costs
        let rate = (rows - untimed.scored) / max(elapsed - paused, 1e-9)
        metrics.log(step: step, [
            "compute_seconds": c.computeSeconds * perStep, "communication_seconds": c.communicationSeconds * perStep,
            "wait_seconds": c.waitSeconds * perStep, "bytes_sent": c.bytesSent * perStep,
            "bytes_received": c.bytesReceived * perStep, "compression_error": c.compressionError * perStep,
            "train_loss": window.loss / rows, "train_accuracy": window.correct / rows,
            "lr": Double(r.lr), "grad_norm": r.gradNorm, "epoch": Double(epoch),
            items.rateSeries: rate, "aux_loss": window.aux / rows,
        ])
        hooks.logRow(step: step, window: window)
        let line = Self.progressLine(id: id, items: items, epoch: epoch, epochs: epochs, step: step, totalSteps: totalSteps,
                                     loss: window.loss / rows, accuracy: window.correct / rows, lr: r.lr, rate: rate,
                                     secondsPerStep: elapsed / max(window.steps - untimed.steps, 1))
        log.step(line + hooks.progressNote(window), done: Double(step) / Double(totalSteps), last: step == totalSteps)
        window = TrainingWindow(stages: window.stages)
        (untimed, paused) = ((0, 0), 0)
    }

    /// A metrics row's progress line:
    ///
    ///     <id>: epoch E/Es step S/Ss loss L acc A lr R N samples/s ETA Ts     (rows: feature models)
    ///     <id>: step S/Ss loss L acc A lr R N tokens/s ETA Ts                 (tokens: language models)
    ///
    /// `rate`: the window's scored items (rows, or batch · context predicted tokens) per second of
    /// training (wall time without evaluations and checkpoints); ETA = (Ss − S) × `secondsPerStep`,
    /// the window's wall time per step (with them). A language
    /// model's budget is steps of sampled windows, so its line has no epoch.
    static func progressLine(id: String, items: MetricsLog.Items, epoch: Int, epochs: Int, step: Int, totalSteps: Int,
                             loss: Double, accuracy: Double, lr: Float, rate: Double, secondsPerStep: Double) -> String {
        let position = items == .samples ? String(format: "epoch %d/%d ", epoch + 1, epochs) : ""
        return "\(id): " + position
            + String(format: "step %d/%d loss %.4f acc %.3f lr %.2e %.0f ", step, totalSteps, loss, accuracy, lr, rate)
            + items.rateUnit + String(format: " ETA %.0fs", Double(totalSteps - step) * secondsPerStep)
    }

    /// Validates, keeps the best model, and returns whether early stopping ends training here
    /// (every rank of a group gets rank 0's decision).
    private func evaluate(step: Int) throws -> Bool {
        let start = Date()
        defer { paused += Date().timeIntervalSince(start) }
        var stop = false
        if let e = try hooks.evaluate(step: step) {
            metrics.logEval(step: step, loss: e.loss, accuracy: e.accuracy)
            log.record("\(id): " + String(format: "step %d val_loss %.4f val_accuracy %.4f", step, e.loss, e.accuracy) + e.note)
            let series = metrics.evalValues[spec.eval.metric.rawValue]!
            best.update(series: series, step: step, parameters: hooks.checkpointParameters)
            stop = spec.train.earlyStopping.map { BestModel.shouldStop(series, $0, metric: spec.eval.metric) } ?? false
        }
        guard let rule = spec.train.earlyStopping else { return false }
        if let group = hooks.stopCommunicator, group.worldSize > 1 {
            var flag: UInt8 = stop ? 1 : 0
            try group.broadcast(&flag, bytes: 1, root: 0)
            stop = flag == 1
        }
        if stop {
            stoppedEarly = true
            log.info("\(id): early stopping at step \(step): \(rule.patience) validation\(rule.patience == 1 ? "" : "s") without a \(spec.eval.metric.rawValue) improvement above \(rule.minDelta); best at step \(best.step ?? step)")
        }
        return stop
    }

    /// Seconds between checkpoint files at the default cadence (`checkpoint_every: 0`): a kill -9
    /// loses at most this much training plus one epoch, and writing a file (a few ms to build,
    /// written by another thread) stays far below 5 % of the wall time. The environment
    /// variable `MOE_RUN_CHECKPOINT_SECONDS` sets it (tests: 0 = a file at every epoch).
    /// Result-neutral: resuming from any checkpoint gives the same bits.
    static var checkpointSeconds: Double {
        ProcessInfo.processInfo.environment["MOE_RUN_CHECKPOINT_SECONDS"].flatMap(Double.init) ?? 10
    }
    /// When the last checkpoint file was written (or training started).
    private var lastFile = Date()

    /// Whether the default cadence (`checkpoint_every: 0`) of a step-budget run (`train.steps`,
    /// every LM run) writes a resume point after this step: its only epoch-end checkpoint is at
    /// the end of training, so without one a kill -9 after 10 minutes of training would lose all
    /// of it. A resume point is written when `checkpointSeconds` (> 0) have passed since the last
    /// file, and is not a kept checkpoint (`CheckpointStore.save(kept: false)`), so the finished
    /// task file does not depend on the timing. Every rank decides alike: rank 0's clock, shared.
    private var resumePointDue: Bool {
        get throws {
            guard spec.train.checkpointEvery == 0, stepsGiven, Self.checkpointSeconds > 0 else { return false }
            var due: UInt8 = Date().timeIntervalSince(lastFile) >= Self.checkpointSeconds ? 1 : 0
            if let group = hooks.stopCommunicator, group.worldSize > 1 { try group.broadcast(&due, bytes: 1, root: 0) }
            return due == 1
        }
    }

    /// Saves the current state as the newest checkpoint, with `toDisk` in a file of its own
    /// (rank 0, after the hooks' collectives on every rank).
    private func checkpoint(toDisk: Bool = true, kept: Bool = true) throws {
        let start = Date()
        defer { paused += Date().timeIntervalSince(start) }
        try hooks.beforeCheckpoint()
        guard isLead else { return }
        if toDisk { lastFile = Date() }
        try store.save(hooks.checkpointParameters, hooks.checkpointOptimizer, epoch: epoch, batch: batchInEpoch, toDisk: toDisk, kept: kept,
                       writeState: { file in
            try metrics.write(to: file)
            try window.write(to: file)
            try hooks.writeSeries(to: file)
            try hooks.writeResumeState(to: file)
            try best.writeState(to: file)
        }, writeEntry: { file, path in try hooks.writeEntry(to: file, at: path) })
    }

    /// `/best`: the best model by `eval.metric` (attributes `step`, `metric`, `value`), and with
    /// early stopping the root attribute `stopped_early` (1 or 0).
    private func writeBest(to file: H5File) throws {
        if spec.train.earlyStopping != nil { try file.setAttribute("stopped_early", Int64(stoppedEarly ? 1 : 0)) }
        let series = metrics.evalValues[spec.eval.metric.rawValue]!
        guard let step = best.step, let index = BestModel.bestIndex(series, metric: spec.eval.metric) else { return }
        try best.withBest(in: hooks.checkpointParameters) { try hooks.writeModel(to: file, at: "best") }
        let group = try file.openGroup("best")
        try group.setAttribute("step", Int64(step))
        try group.setAttribute("metric", spec.eval.metric.rawValue)
        try group.setAttribute("value", series[index])
    }

    /// `tasks/<id>.h5`, atomically: `/metrics`, the hooks' series and result, `/checkpoints`.
    private func finish(seconds: Double) throws {
        try hooks.beforeFinish()
        guard isLead else { return }
        try store.finishWriting()  // a checkpoint that failed to write fails the task
        let optimizer = hooks.checkpointOptimizer
        try H5File.createAtomically(layout.taskFile(id)) { file in
            try file.setTaskAttributes(id)
            try file.setAttribute("steps", Int64(optimizer.stepCount))
            try file.setAttribute("train_seconds", seconds)
            try metrics.write(to: file)
            try hooks.writeSeries(to: file)
            // The kept checkpoints without gzip (like the checkpoint files): float weights and
            // optimizer moments shrink by ~15 % at a cost of ~5 % of a small run's wall time.
            try H5Storage.uncompressed {
                try store.write(hooks.checkpointParameters, optimizer, to: file) { path in try hooks.writeEntry(to: file, at: path) }
            }
            try hooks.writeResult(to: file)
            try writeBest(to: file)
        }
        store.removeAll()
        log.info("\(id): " + String(format: "done, %d steps in %.1f s", optimizer.stepCount, seconds) + hooks.doneNote(metrics))
    }
}
