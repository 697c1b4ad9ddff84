/// What one optimisation step costs a group of processes (zero for a step in one process).
/// Sums over a log window divided by its steps give the `/metrics` series of a group
/// (`compute_seconds`, `communication_seconds`, `wait_seconds`, `bytes_sent`, `bytes_received`,
/// `compression_error`); `waitSeconds / seconds` is a pipeline's bubble.
public struct GroupCosts: Equatable, Sendable {
    /// Wall seconds of the step on this rank.
    public var seconds = 0.0
    /// Seconds of this rank's own computation (the step's wall time minus communication and waiting).
    public var computeSeconds = 0.0
    /// Seconds moving data, and idle waiting for peers.
    public var communicationSeconds = 0.0, waitSeconds = 0.0
    public var bytesSent = 0.0, bytesReceived = 0.0
    /// Relative error `‖v − decode(encode(v))‖ / ‖v‖` of this rank's compressed gradient (0 without).
    public var compressionError = 0.0

    public init(seconds: Double = 0, computeSeconds: Double = 0, communicationSeconds: Double = 0, waitSeconds: Double = 0,
                bytesSent: Double = 0, bytesReceived: Double = 0, compressionError: Double = 0) {
        self.seconds = seconds; self.computeSeconds = computeSeconds
        self.communicationSeconds = communicationSeconds; self.waitSeconds = waitSeconds
        self.bytesSent = bytesSent; self.bytesReceived = bytesReceived; self.compressionError = compressionError
    }
}

/// What one optimisation step measured, whatever the strategy that took it (local, layer-local,
/// data-, expert- or pipeline-parallel): the figures are the whole batch's, on every rank.
public struct StepReport: Sendable {
    /// The objective over the whole batch: `lossSum = loss · scored`, so that a log window's
    /// sums and means are the ones a step's mean loss gives.
    public var sums: ObjectiveSums
    /// The batch's mean loss (non-finite when the step diverged: then the parameters are untouched).
    public var loss: Double
    /// Weighted load-balancing + z losses of the MoE layers (0 for a dense model).
    public var auxLoss: Double
    /// Global gradient norm before clipping (non-finite when the step diverged).
    public var gradNorm: Double
    public var lr: Float
    /// Layer-local training: each stage's objective through its own head, the last stage's
    /// being `sums`; empty for the other strategies.
    public var stages: [ObjectiveSums] = []
    /// The step's costs on this rank (zero in one process).
    public var costs = GroupCosts()
    /// Stop after this step: this process's wish, or in a group, any rank's (agreed by a
    /// collective, so every rank stops at the same step).
    public var stop: Bool

    /// A step whose batch mean loss is `loss` over `scored` items, `correct` of them right.
    public init(loss: Double, correct: Int, scored: Int, auxLoss: Double = 0, gradNorm: Double, lr: Float, stop: Bool) {
        sums = ObjectiveSums(lossSum: loss * Double(scored), correct: correct, scored: scored)
        self.loss = loss
        self.auxLoss = auxLoss
        self.gradNorm = gradNorm
        self.lr = lr
        self.stop = stop
    }

    /// The figures in the older per-step result type.
    public var result: StepResult {
        StepResult(loss: loss, auxLoss: auxLoss, correct: sums.correct, gradNorm: gradNorm, lr: lr)
    }
}

/// How one optimisation step is taken on a batch: zero gradients, forward, backward, reduce
/// (in a group), clip, update. A training loop drives any strategy the same way
/// (ARCHITECTURE §3): local (`Trainer`), layer-local (`LayerwiseTrainer`), and in MoEParallel
/// data- and expert-parallel (`DataParallelStep`) and pipeline (`PipelineTrainer`).
///
/// A strategy holds no data: the caller feeds batches. A non-finite loss or gradient leaves the
/// parameters untouched and is reported (the caller decides to stop).
public protocol StepStrategy<Batch>: AnyObject {
    associatedtype Batch
    /// Steps taken so far (the optimizer's count; restored with its state on resume).
    var step: Int { get }
    /// One step on `batch`. `stop` is this process's wish to stop after it (e.g. SIGINT); the
    /// report's `stop` is the group's decision.
    func trainStep(on batch: Batch, stop: Bool) throws -> StepReport
}

/// A model whose batch can be cut into contiguous row ranges (data-parallel ranks, micro-batches):
/// feature rows of a classifier, token windows of a language model.
public protocol RowBatchedModel: TrainableModel {
    /// Rows of `batch` (the unit it is cut by: samples, or windows).
    func rowCount(of batch: Batch) -> Int
    /// Rows `range` of `batch` (pointers into it, no copy).
    func rows(_ range: Range<Int>, of batch: Batch) -> Batch
    /// Items the objective scores in `batch` (`ObjectiveSums.scored` of its forward): one per
    /// row for a classifier, one per predicted token for a language model. A data-parallel rank
    /// weights its mean loss by its share of these (`n_r / n` in `DataParallelGroup`'s formula).
    func scoredItems(of batch: Batch) -> Int
}

extension RowBatchedModel {
    /// One scored item per row.
    public func scoredItems(of batch: Batch) -> Int { rowCount(of: batch) }
}

extension ResidualMLP: RowBatchedModel {
    public func rowCount(of batch: LabelledRows) -> Int { batch.rows }

    public func rows(_ range: Range<Int>, of batch: LabelledRows) -> LabelledRows {
        LabelledRows(x: batch.x + range.lowerBound * config.features, labels: batch.labels + range.lowerBound,
                     rows: range.count, domains: batch.domains.map { $0 + range.lowerBound })
    }
}

/// A language model's batch is cut by windows; every window scores its `length − 1` predicted tokens.
extension TransformerLM: RowBatchedModel {
    public func rowCount(of batch: TokenWindows) -> Int { batch.batch }

    public func rows(_ range: Range<Int>, of batch: TokenWindows) -> TokenWindows { batch.windows(range.lowerBound, count: range.count) }

    public func scoredItems(of batch: TokenWindows) -> Int { batch.scoredTokens }
}
