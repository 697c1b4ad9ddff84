import Foundation
import MoECore
import MoEData
import MoEHDF5
import MoENN
import MoESpec
import MoEStore

/// The `train` task of `split.strategy: layerwise` with `train.local: true`: decoupled greedy
/// learning of E = `experts` stages (see `LayerwiseModel`), all updated at every step on the same
/// batch, then stacked into one plain model: a residual MLP (auxiliary heads `Linear ∘ LN` to the
/// classes) or a transformer LM (auxiliary LM heads `LN · Wᵀ` to the vocabulary); the model kind's
/// data, budget and validation come from `StagedSetup`.
///
/// Stages: `StagePartition.ranges` (the first `blocks mod E` stages get one block more).
/// File layout, beyond the dense train task's (`/metrics`, `/checkpoints`, `/model`):
///
///     /metrics/stage_<s>_loss, stage_<s>_accuracy          per stage, every log step
///     /metrics/eval/stage_<s>_val_loss, …_val_accuracy     per stage, every evaluation
///     /checkpoints/<step>/aux/<s>/{norm,head}/…            auxiliary heads (exact resume)
///     /stages/<s>                                          attrs first_block, last_block (inclusive)
///     /stages/<s>/{norm,head}/{weight,bias}                auxiliary head of stage s < E − 1
///
/// `train_loss`, `train_accuracy`, `val_*` are the last stage's, i.e. the stacked model's (per
/// predicted token for an LM); the last stage's head is `/model/norm` + `/model/head` (attr `head`
/// of its stage group says so). `/model` is the stacked model: an ordinary dense checkpoint of its
/// kind (`mlp` or `transformer`) that `eval`, `sample` and `evaluate` read.
/// The optimizer covers every parameter (state for `aux/...` too), so resume is bit-exact.
final class LayerwiseTrainTask<Model: StagedModel> {
    let spec: ExperimentSpec
    let setup: StagedSetup<Model>
    let layout: RunLayout
    let log: RunLog
    let id = "train"

    private var stageMetrics: StageMetricsLog
    /// The stages and their heads, and (set by `run`) the optimizer.
    private let network: LayerwiseModel<Model>
    private var optimizer: Optimizer!
    private var norm: Standardization? { setup.normalization }

    init(spec: ExperimentSpec, setup: StagedSetup<Model>, layout: RunLayout, log: RunLog) {
        self.spec = spec
        self.setup = setup
        network = LayerwiseModel(model: setup.model, stages: spec.experts, seed: spec.seed64)
        self.layout = layout
        self.log = log
        stageMetrics = StageMetricsLog(stages: spec.experts)
    }

    func run() throws {
        let e = network.stages.count
        let loop = TrainingLoop(id: id, spec: spec, layout: layout, log: log, isLead: true, hooks: self,
                                batchesPerEpoch: setup.batchesPerEpoch, epochs: setup.epochs, steps: setup.steps,
                                stages: e, items: setup.items, legacy: .layerwise(stages: e))
        let trainer = LayerwiseTrainer(network: network, config: spec.optimizerConfig, totalSteps: loop.totalSteps, seed: spec.seed64)
        optimizer = trainer.optimizer
        if !(try loop.restore()) { try InitFrom.startStaged(network.model, spec: spec, log: log, id: id) }
        let blocks = network.stages.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound - 1)" }
        log.info("\(id): layer-wise local training of \(e) stages (blocks \(blocks.joined(separator: ", "))), \(network.parameters.scalarCount) parameters (\(network.auxParameters.scalarCount) in auxiliary heads), \(loop.budget)")
        try loop.run(trainer, setup.batches)
    }
}

/// The layer-wise task's part of the loop: checkpoints with the auxiliary heads, per-stage
/// series, and the stacked model with its stages in the task file.
extension LayerwiseTrainTask: TrainingHooks {
    var checkpointParameters: [Parameter] { network.parameters }
    var checkpointOptimizer: Optimizer { optimizer }

    /// `<path>/{model, optimizer, aux}`: one checkpoint.
    func writeEntry(to file: H5File, at path: String) throws {
        try Checkpoint.writeModel(network.model, normalization: norm, to: file, at: path + "/model")
        try Checkpoint.writeOptimizer(optimizer, kind: spec.optimizerConfig.kind, to: file, at: path + "/optimizer")
        let group = try file.openGroup(path)
        for p in network.auxParameters {
            try group.createDataset(p.name, from: UnsafeBufferPointer(p.value.buffer), shape: p.shape)
        }
    }

    func loadEntry(from file: H5File, at path: String) throws {
        try Checkpoint.loadParameters(into: network.model.parameters, from: file, at: path + "/model")
        try Checkpoint.loadParameters(into: network.auxParameters, from: file, at: path)
        try Checkpoint.loadOptimizer(into: optimizer, from: file, at: path + "/optimizer")
    }

    /// Every stage's validation; the loop logs the last stage's (the stacked model's).
    func evaluate(step: Int) throws -> TrainingLoop.Evaluated? {
        let sums = setup.validate({ network.stageEvaluationSums($0, batchSize: spec.eval.batchSize) }) { total, s in
            for i in total.indices { total[i] += s[i] }
        }
        guard let sums else { return nil }
        let r = sums.map { (loss: $0.meanLoss, accuracy: $0.accuracy) }
        stageMetrics.logEval(r)
        return .init(loss: r.last!.loss, accuracy: r.last!.accuracy,
                     note: setup.validationNote(sums.last!) + " stage val accuracies " + r.map { String(format: "%.4f", $0.accuracy) }.joined(separator: " "))
    }

    func logRow(step: Int, window: TrainingWindow) {
        stageMetrics.log(losses: window.stageLoss.map { $0 / window.scored }, accuracies: window.stageCorrect.map { $0 / window.scored })
    }

    func progressNote(_ window: TrainingWindow) -> String {
        " stage losses " + window.stageLoss.map { String(format: "%.4f", $0 / window.scored) }.joined(separator: " ")
    }

    func writeSeries(to file: H5File) throws { try stageMetrics.write(to: file) }

    func readState(from file: H5File) throws {
        stageMetrics = try StageMetricsLog.read(from: file, stages: network.stages.count)
    }

    func writeModel(to file: H5File, at path: String) throws {
        try Checkpoint.writeModel(network.model, normalization: norm, to: file, at: path)
    }

    func writeResult(to file: H5File) throws {
        try file.setAttribute(setup.trainSize.name, Int64(setup.trainSize.count))
        try file.setAttribute("stages", Int64(network.stages.count))
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

    func doneNote(_ metrics: MetricsLog) -> String {
        stageMetrics.lastValAccuracies.isEmpty ? ""
            : ", stage val accuracies " + stageMetrics.lastValAccuracies.map { String(format: "%.4f", $0) }.joined(separator: " ")
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
