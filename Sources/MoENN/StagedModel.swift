import MoECore

/// One stage of a model cut into contiguous runs of blocks: a view of the model's layers over
/// blocks `[b_s, b_{s+1})`, with the embedding when it is the first stage and a head (the model's
/// own, or an auxiliary one) when its output is scored. The stage owns only its activations.
///
///     first stage:  h = blocks(embed(batch))          (reads the batch itself)
///     later stage:  h = blocks(h_{s−1})                (reads the previous stage's output)
///     with a head:  L = CrossEntropy(head(h), targets of the batch)
///
/// Activations between stages are `[activationRows, hidden]` floats (`StagedModel`): rows for a
/// classifier, batch·T token positions for a language model. Every stage receives the batch too
/// (the targets, token ids and domains a stage may need), so the pipeline and layer-local
/// training are written once for every model kind (`PipelineTrainer`, `LayerwiseModel`).
public protocol ModelStage<Batch>: AnyObject {
    associatedtype Batch
    /// The parameters the stage trains, in checkpoint order: embedding, blocks, head.
    var parameters: [Parameter] { get }
    /// Runs the stage on `batch`: `input` is the previous stage's output (nil for the stage with
    /// the embedding, which reads the batch); it must stay valid until `backward`. Returns the
    /// output `[activationRows, hidden]` (valid until the next forward); with a head, the logits
    /// are computed too.
    @discardableResult
    func forward(_ batch: Batch, input: UnsafePointer<Float>?, context: ForwardContext) -> UnsafePointer<Float>
    /// The head's cross-entropy of the last forward (a stage with a head).
    func loss(_ batch: Batch) -> ObjectiveSums
    /// Backward of the last forward (and `loss`): from the head's loss (its gradient of the mean
    /// times `lossScale`) when the stage has a head, else from `gradOutput` = ∂L/∂output.
    /// Accumulates the stage's parameter gradients; returns ∂L/∂input (valid until the next
    /// backward), nil for the stage with the embedding.
    @discardableResult
    func backward(_ batch: Batch, gradOutput: UnsafePointer<Float>?, lossScale: Float) -> UnsafePointer<Float>?
}

/// A model whose block stack can be cut into stages (`split.strategy: layerwise`): GPipe
/// (`PipelineTrainer`) runs its `stage`s with the model's own head on the last, decoupled greedy
/// learning (`LayerwiseModel`) adds an auxiliary head to every other stage. The stack of all the
/// stages with the embedding first and the model's head last computes exactly the model.
public protocol StagedModel: RowBatchedModel {
    associatedtype Stage: ModelStage where Stage.Batch == Batch
    /// Blocks of the stack.
    var blockCount: Int { get }
    /// Width of the activations passed between stages.
    var hiddenWidth: Int { get }
    /// Rows of the activation `[rows, hidden]` a stage hands to the next one for `batch`.
    func activationRows(of batch: Batch) -> Int
    /// Blocks `range` as a stage: with the embedding when `embed`, with the model's final head
    /// (norm + output projection) when `head`.
    func stage(_ range: Range<Int>, embed: Bool, head: Bool) -> Stage
    /// Blocks `range` with auxiliary head `s` of decoupled greedy learning, named `aux/<s>/…`,
    /// shaped and initialised like the model's own head (drawn from `seed`); returns the stage and
    /// the head's parameters.
    func auxiliaryStage(_ range: Range<Int>, embed: Bool, index s: Int, seed: UInt64) -> (stage: Stage, head: [Parameter])
}

extension StagedModel {
    /// The parameters of stage `s` of this model cut into `ranges` (disjoint; their union, in
    /// stage order, is `parameters`).
    public func stageParameters(_ s: Int, of ranges: [Range<Int>]) -> [Parameter] {
        stage(ranges[s], embed: s == 0, head: s == ranges.count - 1).parameters
    }
}

/// The residual MLP's stages are its one walk (`ResidualStage`) over a run of blocks; an
/// auxiliary head is a `ClassifierHead` `Linear(LN(h))` (hidden → classes) like the model's.
extension ResidualMLP: StagedModel {
    public var blockCount: Int { config.blocks }
    public var hiddenWidth: Int { config.hidden }
    public func activationRows(of batch: LabelledRows) -> Int { batch.rows }

    public func auxiliaryStage(_ range: Range<Int>, embed: Bool, index s: Int, seed: UInt64) -> (stage: ResidualStage, head: [Parameter]) {
        let norm = LayerNorm("aux/\(s)/norm", dim: config.hidden, eps: config.normEps)
        let linear = Linear("aux/\(s)/head", in: config.hidden, out: config.classes)
        linear.initialize(seed: seed &+ UInt64(s + 1))
        let head = ClassifierHead(norm: norm, linear: linear)
        return (ResidualStage(embed: embed ? self.embed : nil, blocks: Array(blocks[range]), head: head), head.parameters)
    }
}

extension ResidualStage: ModelStage {
    public func forward(_ batch: LabelledRows, input: UnsafePointer<Float>?, context: ForwardContext) -> UnsafePointer<Float> {
        var context = context
        context.domains = batch.domains
        return forward(input ?? batch.x, rows: batch.rows, context: context)
    }

    public func loss(_ batch: LabelledRows) -> ObjectiveSums {
        let l = loss(labels: batch.labels, rows: batch.rows)
        return ObjectiveSums(lossSum: l.loss * Double(batch.rows), correct: l.correct, scored: batch.rows)
    }

    public func backward(_ batch: LabelledRows, gradOutput: UnsafePointer<Float>?, lossScale: Float) -> UnsafePointer<Float>? {
        backward(gradOutput: gradOutput, labels: batch.labels, lossScale: lossScale)
    }
}

/// GPipe's micro-batches: a batch of `n` rows cut into `count` contiguous runs of rows, as even
/// as possible (the first `n mod count` one row longer, as `numpy.array_split`); never an empty
/// run (a batch of fewer than `count` rows gives `n` micro-batches of one row).
public enum MicroBatches {
    public static func split(rows n: Int, count: Int) -> [Range<Int>] {
        precondition(n >= 0 && count >= 1)
        return EvenSplit.ranges(n, parts: max(1, min(count, n)))
    }
}
