import MoECore

/// Sums of a training objective over the items it scored: rows for a classifier, predicted
/// tokens for a language model. Sums (not means) so that batches, ranks and evaluation chunks
/// combine by addition, and a mean is taken once, at the end.
public struct ObjectiveSums: Equatable, Sendable {
    /// Σ of the per-item loss (cross-entropy in nats).
    public var lossSum: Double
    /// Items whose argmax prediction was the target (rows, or next tokens).
    public var correct: Int
    /// Items scored (rows, or predicted tokens).
    public var scored: Int

    public init(lossSum: Double = 0, correct: Int = 0, scored: Int = 0) {
        self.lossSum = lossSum
        self.correct = correct
        self.scored = scored
    }

    /// Mean loss per scored item (0 when nothing was scored).
    public var meanLoss: Double { scored > 0 ? lossSum / Double(scored) : 0 }
    /// Fraction of scored items predicted correctly (0 when nothing was scored).
    public var accuracy: Double { scored > 0 ? Double(correct) / Double(scored) : 0 }

    public static func += (lhs: inout ObjectiveSums, rhs: ObjectiveSums) {
        lhs.lossSum += rhs.lossSum
        lhs.correct += rhs.correct
        lhs.scored += rhs.scored
    }
}

/// What a training loop, a step strategy and the checkpoint store need from a model
/// (ARCHITECTURE §3), so that a new model kind adds a type and never another loop.
///
/// - `Batch` is what one forward consumes (feature rows with labels for `mlp`; token windows for
///   a language model). It holds pointers that must stay valid until `backward`.
/// - `forward` returns the objective's sums for the batch; `backward` accumulates the gradient
///   of the batch's *mean* loss (times `lossScale`) plus the MoE auxiliary losses.
/// - `checkpointKind` is written as `config.kind` and selects the loader in MoEStore's registry.
public protocol TrainableModel: AnyObject {
    associatedtype Batch

    /// The `kind` in the checkpoint's `config` (ARCHITECTURE §5.3): `"mlp"`, `"transformer"`.
    static var checkpointKind: String { get }
    /// The architecture as JSON with sorted keys, including `kind`; stored as the checkpoint's
    /// `config` attribute, and enough (with the parameters) to rebuild the model.
    var configJSON: String { get }
    /// Width of the float input the model standardises (`input/{mean,std}`), nil for models whose
    /// input is not a feature vector (tokens).
    var inputFeatures: Int? { get }

    /// Every parameter, in checkpoint order, named by its checkpoint path; `Parameter.decays`
    /// says whether weight decay applies.
    var parameters: [Parameter] { get }
    /// The MoE layers, in block order (empty for a dense model).
    var moeLayers: [MoELayer] { get }
    /// The weighted load-balancing and z losses of the last forward (0 for a dense model).
    var auxiliaryLoss: Double { get }

    /// Forward pass with the loss over `batch`; `context` gives the mode, step and seed.
    func forward(_ batch: Batch, context: ForwardContext) -> ObjectiveSums
    /// Backward pass of the last `forward`.
    func backward(lossScale: Float)
    /// The objective's sums over a whole evaluation set `data`, forwarded in chunks of at most
    /// `batchSize` items, without dropout.
    func evaluationSums(_ data: Batch, batchSize: Int) -> ObjectiveSums
}

extension TrainableModel {
    /// The checkpoint kind of this model's type.
    public var checkpointKind: String { Self.checkpointKind }

    /// Model state that no gradient trains (PyTorch's buffers): the MoE routers' selection-only
    /// expert biases (`blocks/<i>/moe/router/expert_bias`, `router.balance: bias`). Checkpointed
    /// after the parameters; not in the optimizer, no weight decay.
    public var buffers: [Parameter] { moeLayers.compactMap { $0.router.expertBias } }

    /// Ends an optimisation step: when the optimizer `updated` the parameters, every router with
    /// an expert bias moves it by the step's global load (`MoERouter.updateExpertBias`); a
    /// skipped step (non-finite loss or gradient) only forgets that load.
    public func finishStep(updated: Bool) {
        for layer in moeLayers where layer.router.expertBias != nil {
            if updated { layer.router.updateExpertBias() } else { layer.router.discardStepLoad() }
        }
    }
}

/// A batch of feature rows with class labels: `x [rows, features]`, `labels [rows]`, and the
/// rows' domain ids when the data has them (the `domain` router reads them).
public struct LabelledRows: @unchecked Sendable {
    public var x: UnsafePointer<Float>
    public var labels: UnsafePointer<Int>
    public var rows: Int
    public var domains: UnsafePointer<Int>?

    public init(x: UnsafePointer<Float>, labels: UnsafePointer<Int>, rows: Int, domains: UnsafePointer<Int>? = nil) {
        self.x = x
        self.labels = labels
        self.rows = rows
        self.domains = domains
    }
}

extension LabelledRows {
    /// Calls `body` on consecutive chunks of at most `rows` rows (the last one shorter), in order;
    /// `features` is the width of a row of `x`.
    public func forEachChunk(rows chunkRows: Int, features: Int, _ body: (LabelledRows) -> Void) {
        precondition(chunkRows >= 1, "chunks need at least one row")
        var start = 0
        while start < rows {
            let count = min(chunkRows, rows - start)
            body(LabelledRows(x: x + start * features, labels: labels + start, rows: count,
                              domains: domains.map { $0 + start }))
            start += count
        }
    }
}
