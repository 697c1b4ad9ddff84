import MoECore

/// The residual MLP as a `TrainableModel` of kind `mlp`: a batch is feature rows with labels,
/// the objective is classification (one scored item per row).
extension ResidualMLP: TrainableModel {
    public static let checkpointKind = "mlp"

    public var configJSON: String { config.json }

    public var inputFeatures: Int? { config.features }

    /// Cross-entropy sums of `batch`. `lossSum` is the batch's mean loss times its rows, the
    /// value `evaluate` has always accumulated, so evaluation results keep their bits.
    public func forward(_ batch: LabelledRows, context: ForwardContext) -> ObjectiveSums {
        var context = context
        context.domains = batch.domains
        let r = forward(batch.x, labels: batch.labels, rows: batch.rows, context: context)
        return ObjectiveSums(lossSum: r.loss * Double(batch.rows), correct: r.correct, scored: batch.rows)
    }

    public func evaluationSums(_ data: LabelledRows, batchSize: Int) -> ObjectiveSums {
        var sums = ObjectiveSums()
        data.forEachChunk(rows: batchSize, features: config.features) { chunk in
            sums += forward(chunk, context: ForwardContext(training: false, step: 0, seed: 0))
        }
        return sums
    }
}
