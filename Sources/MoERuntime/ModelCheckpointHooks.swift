import MoEData
import MoEHDF5
import MoENN
import MoESpec
import MoEStore

/// The hooks of a task that trains one `TrainableModel` with one optimizer: its checkpoint
/// entry is `<path>/{model, optimizer}` (ARCHITECTURE §5.3), whatever the model kind. The train
/// task of the residual MLP and that of the transformer LM share it; a task with more state per
/// checkpoint (stages, auxiliary heads) writes its own entry.
protocol ModelCheckpointHooks: TrainingHooks {
    var spec: ExperimentSpec { get }
    /// The model the task trains (valid once the task has built it).
    var trainedModel: any TrainableModel { get }
    /// The input standardisation stored with the model (`input/{mean, std}`), nil for tokens.
    var inputNormalization: Standardization? { get }
}

extension ModelCheckpointHooks {
    /// What a checkpoint restores: the parameters and the buffers (the routers' expert biases).
    var checkpointParameters: [Parameter] { trainedModel.parameters + trainedModel.buffers }

    func writeModel(to file: H5File, at path: String) throws {
        try Checkpoint.writeModel(trainedModel, normalization: inputNormalization, to: file, at: path)
    }

    /// `<path>/{model, optimizer}`: one checkpoint.
    func writeEntry(to file: H5File, at path: String) throws {
        try Checkpoint.writeModel(trainedModel, normalization: inputNormalization, to: file, at: path + "/model")
        try Checkpoint.writeOptimizer(checkpointOptimizer, kind: spec.optimizerConfig.kind, to: file, at: path + "/optimizer")
    }

    func loadEntry(from file: H5File, at path: String) throws {
        try Checkpoint.loadParameters(into: checkpointParameters, from: file, at: path + "/model")
        try Checkpoint.loadOptimizer(into: checkpointOptimizer, from: file, at: path + "/optimizer")
    }
}
