import MoECore

/// The stack of layer-local stages as one `TrainableModel`, so a training loop drives decoupled
/// greedy learning (Belilovsky et al. 2019/2020) like any other model:
///
/// - the objective is the **last stage's**, because the last stage's head is the model's own
///   `norm` + `head` and the stack *is* the stacked network `model`: its sums are what the run
///   reports as `train_loss`/`val_loss` and what a later fine-tune continues from. The per-stage
///   sums of the layer-local series are `stageSums` (last forward) and `stageEvaluationSums`;
/// - `backward` is every stage's *own* backward, `Σ_s ∂L_s/∂θ_s` on disjoint parameters (see
///   `LayerwiseModel`), not the gradient of the reported objective: that is the method. Per-stage
///   clipping over `stageParameters` belongs to the step (`LayerwiseTrainer`);
/// - `parameters` are the stacked model's, in checkpoint order, then the auxiliary heads'
///   (`aux/<s>/…`), with their decay flags (head weights decay, norms and biases not);
/// - the checkpoint kind is the model's (`mlp`, `transformer`) with the stacked model's config: a
///   checkpoint of the stack is a valid checkpoint of that kind (the loader reads parameters by
///   name, so the extra `aux/<s>/…` tensors are ignored) and loads as the stacked model, which is
///   what the run produces.
///
/// A single GPipe stage is not a `TrainableModel`: only the last one has an objective, and the
/// stack of pipeline stages computes exactly the model (see `PipelineTrainer`).
extension LayerwiseModel: TrainableModel {
    public static var checkpointKind: String { Model.checkpointKind }

    public var configJSON: String { model.configJSON }

    public var inputFeatures: Int? { model.inputFeatures }

    /// Empty: layer-wise training takes a dense model.
    public var moeLayers: [MoELayer] { model.moeLayers }

    public var auxiliaryLoss: Double { model.auxiliaryLoss }

    /// Every stage's forward and loss over `batch`; returns the last stage's sums (each stage's
    /// are in `stageSums`).
    public func forward(_ batch: Model.Batch, context: ForwardContext) -> ObjectiveSums {
        forwardStages(batch, context: context).last!
    }

    /// The last stage's (the stacked model's) sums over `data`.
    public func evaluationSums(_ data: Model.Batch, batchSize: Int) -> ObjectiveSums {
        stageEvaluationSums(data, batchSize: batchSize).last!
    }
}
