import Foundation
import MoEComm
import MoEData
import MoEHDF5
import MoENN
import MoESpec
import MoEStore

/// What the `train` task of `split.strategy: layerwise` needs of its model kind, so that one
/// layer-local task (`LayerwiseTrainTask`) and one GPipe task (`PipelineTrainTask`) serve the
/// residual MLP on feature data and the transformer LM on a text corpus:
///
/// - the dense model built from the spec and the seed (every rank builds the same one);
/// - the training batches and budget: MLP mini-batches for `train.epochs`, or the LM's
///   `TextBatches` for the LM step budget (`LMTrainTask.stepBudget`), counted in samples or
///   tokens;
/// - the validation set as a walk over batches (all val rows at once; the LM's evaluation windows
///   of every domain, `eval.batch_size` at a time, as `LMScores`), and the note a validation adds
///   (the LM's val bits per byte);
/// - the input standardisation stored with the model (MLP) and the training-set size attribute
///   of the task file (`train_samples` or `train_tokens`).
struct StagedSetup<Model: StagedModel> {
    let model: Model
    let batches: any BatchSource<Model.Batch>
    let batchesPerEpoch: Int
    let epochs: Int
    let steps: Int?
    let items: MetricsLog.Items
    let normalization: Standardization?
    /// Whether there is validation data; `validation` calls its body on every validation batch.
    let hasValidation: Bool
    let validation: ((Model.Batch) -> Void) -> Void
    let validationNote: (ObjectiveSums) -> String
    /// (`train_samples` | `train_tokens`, count).
    let trainSize: (name: String, count: Int)

    /// Σ of `sums(batch)` over the validation batches (nil when there are none).
    func validate<S>(_ sums: (Model.Batch) -> S, _ add: (inout S, S) -> Void) -> S? {
        var total: S?
        validation { batch in
            let s = sums(batch)
            if total == nil { total = s } else { add(&total!, s) }
        }
        return total
    }
}

extension StagedSetup where Model == ResidualMLP {
    /// The dense residual MLP on the run's feature data.
    static func mlp(spec: ExperimentSpec, layout: RunLayout) throws -> StagedSetup {
        let (train, norm) = try DataTask.load("train", layout: layout)
        let (val, _) = try DataTask.load("val", layout: layout)
        var config = spec.modelConfig(features: train.features, classes: train.classes)
        config.moe = nil
        let batches = try MiniBatches(train, batchSize: spec.train.batchSize, seed: spec.seed64)
        return StagedSetup(model: ResidualMLP(config: config, seed: spec.seed64), batches: batches,
                           batchesPerEpoch: batches.batchesPerEpoch, epochs: spec.train.epochs, steps: spec.train.steps,
                           items: .samples, normalization: norm, hasValidation: val.count > 0, validation: { body in
            guard val.count > 0 else { return }
            val.y.withUnsafeBufferPointer { body(LabelledRows(x: val.x.data, labels: $0.baseAddress!, rows: val.count)) }
        }, validationNote: { _ in "" }, trainSize: ("train_samples", train.count))
    }
}

extension StagedSetup where Model == TransformerLM {
    /// The dense transformer LM on the run's corpus.
    static func lm(spec: ExperimentSpec, setup: LMSetup, layout: RunLayout) throws -> StagedSetup {
        let corpus = try TextDataTask.load(layout: layout)
        var config = setup.model
        config.moe = nil
        let batches = try TextBatches(corpus: corpus, context: config.context, batchSize: spec.train.batchSize, seed: spec.seed64)
        let steps = LMTrainTask.stepBudget(setup, spec: spec, epochs: spec.train.epochs, trainTokens: corpus.tokenCount(.train))
        return StagedSetup(model: TransformerLM(config: config, seed: spec.seed64), batches: TextBatchSource(batches, steps: steps),
                           batchesPerEpoch: steps, epochs: 1, steps: steps, items: .tokens, normalization: nil,
                           hasValidation: corpus.evaluationWindows(.val, context: config.context).contains { $0.count > 0 }, validation: { body in
            // The §5.4 protocol's val windows, `eval.batch_size` at a time (as `LMScores.score`).
            _ = LMScores.score(context: config.context, corpus, split: .val, batchSize: spec.eval.batchSize) { body($0); return ObjectiveSums() }
        }, validationNote: { String(format: " val_bits_per_byte %.4f", LMScores.bitsPerByte($0.meanLoss)) },
                           trainSize: ("train_tokens", corpus.tokenCount(.train)))
    }
}

extension Worker {
    /// The `train` task of `split.strategy: layerwise` for the spec's model kind: stage-local
    /// (`train.local: true`) or GPipe.
    static func trainStages(spec: ExperimentSpec, layout: RunLayout, log: RunLog, communicator: Communicator) throws {
        if let lm = spec.lmSetup {
            let setup = try StagedSetup<TransformerLM>.lm(spec: spec, setup: lm, layout: layout)
            if spec.train.local { try LayerwiseTrainTask(spec: spec, setup: setup, layout: layout, log: log).run() }
            else { try PipelineTrainTask(spec: spec, setup: setup, layout: layout, log: log, communicator: communicator).run() }
        } else {
            let setup = try StagedSetup<ResidualMLP>.mlp(spec: spec, layout: layout)
            if spec.train.local { try LayerwiseTrainTask(spec: spec, setup: setup, layout: layout, log: log).run() }
            else { try PipelineTrainTask(spec: spec, setup: setup, layout: layout, log: log, communicator: communicator).run() }
        }
    }
}
