import Foundation
import MoECore
import MoEData
import MoEHDF5
import MoENN
import MoESpec
import MoEStore

/// The `train` task of `split.strategy: layerwise` with `train.local: true`: decoupled greedy
/// learning of E = `experts` stages (see `LayerwiseModel`), all updated at every step on the same
/// batch, then stacked into one plain model.
///
/// Stages: `LayerwiseModel.partition` (the first `blocks mod E` stages get one block more).
/// File layout, beyond the dense train task's (`/metrics`, `/checkpoints`, `/model`):
///
///     /metrics/stage_<s>_loss, stage_<s>_accuracy          per stage, every log step
///     /metrics/eval/stage_<s>_val_loss, …_val_accuracy     per stage, every evaluation
///     /checkpoints/<step>/aux/<s>/{norm,head}/…            auxiliary heads (exact resume)
///     /stages/<s>                                          attrs first_block, last_block (inclusive)
///     /stages/<s>/{norm,head}/{weight,bias}                auxiliary head of stage s < E − 1
///
/// `train_loss`, `train_accuracy`, `val_*` are the last stage's, i.e. the stacked model's; the
/// last stage's head is `/model/norm` + `/model/head` (attr `head` of its stage group says so).
/// `/model` is the stacked model: an ordinary dense checkpoint that `eval` and `evaluate` read.
/// The optimizer covers every parameter (state for `aux/...` too), so resume is bit-exact.
final class LayerwiseTrainTask {
    let spec: ExperimentSpec
    let layout: RunLayout
    let log: RunLog
    let id = "train"

    private var metrics = MetricsLog()
    private var stageMetrics: StageMetricsLog
    private lazy var store = CheckpointStore(layout: layout, task: id, keep: spec.output.keepCheckpoints)
    private var norm: Standardization?
    /// Sums over the steps since the last metrics row, per stage (kept in checkpoints, so a
    /// resumed task's next row equals an uninterrupted run's).
    private var window: (loss: [Double], correct: [Int], rows: Int, since: Date)

    init(spec: ExperimentSpec, layout: RunLayout, log: RunLog) {
        self.spec = spec
        self.layout = layout
        self.log = log
        stageMetrics = StageMetricsLog(stages: spec.experts)
        window = ([Double](repeating: 0, count: spec.experts), [Int](repeating: 0, count: spec.experts), 0, Date())
    }

    func run() throws {
        let (train, norm) = try DataTask.load("train", layout: layout)
        let (val, _) = try DataTask.load("val", layout: layout)
        self.norm = norm
        var config = spec.modelConfig(features: train.features, classes: train.classes)
        config.moe = nil
        let network = LayerwiseModel(config: config, stages: spec.experts, seed: spec.seed64)
        let batches = try MiniBatches(train, batchSize: spec.train.batchSize, seed: spec.seed64)
        let epochs = spec.train.epochs
        let totalSteps = epochs * batches.batchesPerEpoch
        let trainer = LayerwiseTrainer(network: network, config: spec.optimizerConfig, totalSteps: totalSteps, seed: spec.seed64)
        var epoch = 0, batchInEpoch = 0
        if let position = try restore(network, trainer.optimizer) {
            (epoch, batchInEpoch) = position
            log.info("\(id): resuming from the checkpoint at step \(trainer.step) (epoch \(epoch + 1), batch \(batchInEpoch))")
        }
        let blocks = network.stages.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound - 1)" }
        log.info("\(id): layer-wise local training of \(network.stages.count) stages (blocks \(blocks.joined(separator: ", "))), \(network.parameters.scalarCount) parameters (\(network.auxParameters.scalarCount) in auxiliary heads), \(epochs) epochs × \(batches.batchesPerEpoch) steps")

        let start = Date()
        let e = network.stages.count
        window.since = Date()
        while epoch < epochs {
            batches.start(epoch: epoch)
            for _ in 0..<batchInEpoch { _ = batches.next() }
            while batches.next() {
                let r = trainer.trainStep(batches.x.data, labels: batches.labelPointer, rows: batches.rows)
                batchInEpoch += 1
                let step = trainer.step
                guard r.gradNorm.isFinite else {
                    let loss = r.stageLoss.first { !$0.isFinite } ?? 0
                    throw RuntimeError.diverged(task: id, step: step + 1, epoch: epoch, loss: loss, gradNorm: r.gradNorm, spec: spec)
                }
                for s in 0..<e {
                    window.loss[s] += r.stageLoss[s] * Double(batches.rows)
                    window.correct[s] += r.stageCorrect[s]
                }
                window.rows += batches.rows
                if step % spec.train.logEvery == 0 || step == totalSteps {
                    let rows = Double(window.rows)
                    let elapsed = max(Date().timeIntervalSince(window.since), 1e-9)
                    let losses = window.loss.map { $0 / rows }, accs = window.correct.map { Double($0) / rows }
                    metrics.log(step: step, [
                        "train_loss": losses[e - 1], "train_accuracy": accs[e - 1], "lr": Double(r.lr),
                        "grad_norm": r.gradNorm, "epoch": Double(epoch), "samples_per_second": rows / elapsed,
                    ])
                    stageMetrics.log(losses: losses, accuracies: accs)
                    let line = "\(id): " + String(format: "epoch %d/%d step %d/%d lr %.2e %.0f samples/s stage losses ",
                                                  epoch + 1, epochs, step, totalSteps, r.lr, rows / elapsed)
                        + losses.map { String(format: "%.4f", $0) }.joined(separator: " ")
                    log.step(line, done: Double(step) / Double(totalSteps), last: step == totalSteps)
                    window = ([Double](repeating: 0, count: e), [Int](repeating: 0, count: e), 0, Date())
                }
                if spec.train.evalEvery > 0 && step % spec.train.evalEvery == 0 { evaluate(network, val, step: step) }
                if spec.train.checkpointEvery > 0 && step % spec.train.checkpointEvery == 0 {
                    try checkpoint(network, trainer.optimizer, epoch: epoch, batch: batchInEpoch)
                }
                if Interrupts.requested {
                    try checkpoint(network, trainer.optimizer, epoch: epoch, batch: batchInEpoch)
                    throw RuntimeError.interrupted(task: id, step: step)
                }
            }
            epoch += 1
            batchInEpoch = 0
            if spec.train.evalEvery == 0 { evaluate(network, val, step: trainer.step) }
            if spec.train.checkpointEvery == 0 { try checkpoint(network, trainer.optimizer, epoch: epoch, batch: 0) }
        }
        try finish(network, trainer.optimizer, seconds: Date().timeIntervalSince(start))
    }

    private func evaluate(_ network: LayerwiseModel, _ val: Dataset, step: Int) {
        guard val.count > 0 else { return }
        let r = network.evaluate(x: val.x, labels: val.y, batchSize: spec.eval.batchSize)
        metrics.logEval(step: step, loss: r.last!.loss, accuracy: r.last!.accuracy)
        stageMetrics.logEval(r)
        log.record("\(id): step \(step) stage val accuracies " + r.map { String(format: "%.4f", $0.accuracy) }.joined(separator: " "))
    }

    /// Saves the current state as the newest checkpoint, in a file of its own.
    private func checkpoint(_ network: LayerwiseModel, _ optimizer: Optimizer, epoch: Int, batch: Int) throws {
        try store.save(network.parameters, optimizer, epoch: epoch, batch: batch, writeState: { file in
            try metrics.write(to: file)
            try stageMetrics.write(to: file)
            try file.createDataset("metrics/window", [Double(window.rows)] + window.loss + window.correct.map(Double.init))
        }, writeEntry: { file, path in try writeCheckpoint(network, optimizer, to: file, at: path) })
    }

    /// `<path>/{model, optimizer, aux}`: one checkpoint.
    private func writeCheckpoint(_ network: LayerwiseModel, _ optimizer: Optimizer, to file: H5File, at path: String) throws {
        try Checkpoint.writeModel(network.model, normalization: norm, to: file, at: path + "/model")
        try Checkpoint.writeOptimizer(optimizer, kind: spec.optimizerConfig.kind, to: file, at: path + "/optimizer")
        let group = try file.openGroup(path)
        for p in network.auxParameters {
            try group.createDataset(p.name, from: UnsafeBufferPointer(p.value.buffer), shape: p.shape)
        }
    }

    /// Loads the newest intact checkpoint (network, optimizer, metrics, window), or nil on a
    /// fresh start.
    private func restore(_ network: LayerwiseModel, _ optimizer: Optimizer) throws -> (epoch: Int, batch: Int)? {
        try store.restore(network.parameters, optimizer, isLead: true, warn: log.warning, loadState: { file in
            metrics = try MetricsLog.read(from: file, moe: false)
            stageMetrics = try StageMetricsLog.read(from: file, stages: network.stages.count)
            let e = network.stages.count
            let w = try file.read("metrics/window", as: Double.self).values
            guard w.count == 1 + 2 * e else { throw RuntimeError.io(path: file.filePath, message: "metrics/window: \(w.count) values") }
            window = (Array(w[1...e]), w[(e + 1)...].map { Int($0) }, Int(w[0]), Date())
        }, loadEntry: { file, path in
            try Checkpoint.loadParameters(into: network.model.parameters, from: file, at: path + "/model")
            try Checkpoint.loadParameters(into: network.auxParameters, from: file, at: path)
            try Checkpoint.loadOptimizer(into: optimizer, from: file, at: path + "/optimizer")
        })
    }

    private func finish(_ network: LayerwiseModel, _ optimizer: Optimizer, seconds: Double) throws {
        try H5File.createAtomically(layout.taskFile(id)) { file in
            try file.setTaskAttributes(id)
            try file.setAttribute("steps", Int64(optimizer.stepCount))
            try file.setAttribute("train_seconds", seconds)
            try file.setAttribute("stages", Int64(network.stages.count))
            try metrics.write(to: file)
            try stageMetrics.write(to: file)
            try store.write(network.parameters, optimizer, to: file) { path in try writeCheckpoint(network, optimizer, to: file, at: path) }
            try Checkpoint.writeModel(network.model, normalization: norm, to: file, at: "model")
            for (s, range) in network.stages.enumerated() {
                let group = try file.createGroup("stages/\(s)")
                try group.setAttribute("first_block", Int64(range.lowerBound))
                try group.setAttribute("last_block", Int64(range.upperBound - 1))
                if s == network.stages.count - 1 { try group.setAttribute("head", "/model/norm, /model/head") }
            }
            for p in network.auxParameters {  // aux/<s>/… → stages/<s>/…
                try file.createDataset("stages/" + p.name.dropFirst(4), from: UnsafeBufferPointer(p.value.buffer), shape: p.shape)
            }
        }
        store.removeAll()
        let lastEval = stageMetrics.lastValAccuracies.isEmpty ? ""
            : ", stage val accuracies " + stageMetrics.lastValAccuracies.map { String(format: "%.4f", $0) }.joined(separator: " ")
        log.info("\(id): " + String(format: "done, %d steps in %.1f s", optimizer.stepCount, seconds) + lastEval)
    }
}

/// Per-stage series of a layer-wise train task: `/metrics/stage_<s>_{loss,accuracy}` (one row
/// per `/metrics/step`) and `/metrics/eval/stage_<s>_val_{loss,accuracy}` (one per eval step).
struct StageMetricsLog {
    let stages: Int
    var values: [String: [Double]] = [:]

    init(stages: Int) {
        self.stages = stages
        for name in Self.trainNames(stages) + Self.evalNames(stages) { values[name] = [] }
    }

    static func trainNames(_ e: Int) -> [String] { (0..<e).flatMap { ["stage_\($0)_loss", "stage_\($0)_accuracy"] } }
    static func evalNames(_ e: Int) -> [String] { (0..<e).flatMap { ["eval/stage_\($0)_val_loss", "eval/stage_\($0)_val_accuracy"] } }

    var lastValAccuracies: [Double] { (0..<stages).compactMap { values["eval/stage_\($0)_val_accuracy"]!.last } }

    mutating func log(losses: [Double], accuracies: [Double]) {
        for s in 0..<stages {
            values["stage_\(s)_loss"]!.append(losses[s])
            values["stage_\(s)_accuracy"]!.append(accuracies[s])
        }
    }

    mutating func logEval(_ r: [(loss: Double, accuracy: Double)]) {
        for s in 0..<stages {
            values["eval/stage_\(s)_val_loss"]!.append(r[s].loss)
            values["eval/stage_\(s)_val_accuracy"]!.append(r[s].accuracy)
        }
    }

    /// Writes into the `/metrics` group that `MetricsLog.write` created.
    func write(to file: H5File) throws {
        let group = try file.openGroup("metrics")
        for name in Self.trainNames(stages) + Self.evalNames(stages) { try group.createDataset(name, values[name]!) }
    }

    static func read(from file: H5File, stages: Int) throws -> StageMetricsLog {
        var m = StageMetricsLog(stages: stages)
        let group = try file.openGroup("metrics")
        for name in trainNames(stages) + evalNames(stages) { m.values[name] = try group.read(name, as: Double.self).values }
        return m
    }
}
