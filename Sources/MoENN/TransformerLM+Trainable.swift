import MoECore

/// The transformer LM as a `TrainableModel` of kind `transformer`: a batch is token windows,
/// the objective next-token prediction (one scored item per predicted token).
extension TransformerLM: TrainableModel {
    public static let checkpointKind = "transformer"

    public var configJSON: String { config.json }

    /// Token input: nothing to standardise.
    public var inputFeatures: Int? { nil }

    /// Sums over every window of `data`, forwarded `batchSize` windows at a time without dropout.
    public func evaluationSums(_ data: TokenWindows, batchSize: Int) -> ObjectiveSums {
        precondition(batchSize > 0, "evaluation batch size must be positive, got \(batchSize)")
        var sums = ObjectiveSums()
        var start = 0
        while start < data.batch {
            let count = min(batchSize, data.batch - start)
            sums += forward(data.windows(start, count: count), context: ForwardContext(training: false, step: 0, seed: 0))
            start += count
        }
        return sums
    }
}
