import MoECore

/// The residual MLP classifier of ARCHITECTURE §5.3:
///
///     h₀ = embed(x)                         Linear(features → hidden)
///     hᵢ₊₁ = hᵢ + F_i(LN_i(hᵢ))             blocks (pre-norm residual)
///     logits = head(LN(h_B))                Linear(hidden → classes)
///     loss = CrossEntropy(logits, y)
///
/// Parameters are named by their checkpoint path (`embed/weight`, `blocks/0/ffn/w1`, …).
/// The forward and backward walk is `ResidualStage` over every block, the walk GPipe stages and
/// layer-local stages run over their own block ranges (`stage(_:embed:head:)`). Activations live in buffers sized for the largest batch seen, so after the first step a
/// forward/backward pair allocates nothing.
public final class ResidualMLP {
    public let config: ModelConfig
    public let embed: Linear
    public let blocks: [ResidualBlock]
    public let norm: LayerNorm
    public let head: Linear
    /// Every parameter, in checkpoint order.
    public let parameters: [Parameter]

    /// The forward and backward walk over every block (see `ResidualStage`).
    private let walk: ResidualStage
    private var lastLabels: UnsafePointer<Int>?
    private var sampleKeys = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private var sampleKeyCapacity = 0

    deinit { sampleKeys.deallocate() }

    /// A model with PyTorch-default initialisation drawn from `seed`.
    public init(config: ModelConfig, seed: UInt64) {
        self.config = config
        let h = config.hidden
        embed = Linear("embed", in: config.features, out: h)
        let moeBlocks = Set(config.moe?.blocks ?? [])
        blocks = (0..<config.blocks).map { i in
            let layer: FeedForwardLayer
            if let moe = config.moe, moeBlocks.contains(i) {
                let m = MoELayer("blocks/\(i)/moe", index: i, hidden: h, ffn: moe.expertFFN ?? config.ffn, activation: config.activation,
                                 config: moe, moeLayers: moeBlocks.count)
                m.initialize(seed: seed)
                layer = m
            } else {
                let ffn = DenseFFN("blocks/\(i)/ffn", hidden: h, ffn: config.ffn, activation: config.activation)
                ffn.initialize(seed: seed)
                layer = ffn
            }
            return ResidualBlock(index: i, hidden: h, feedForward: layer, dropout: config.dropout,
                                 normEps: config.normEps)
        }
        norm = LayerNorm("norm", dim: h, eps: config.normEps)
        head = Linear("head", in: h, out: config.classes)
        embed.initialize(seed: seed)
        head.initialize(seed: seed)
        walk = ResidualStage(embed: embed, blocks: blocks, head: ClassifierHead(norm: norm, linear: head))
        parameters = walk.parameters
    }

    /// The MoE layers, in block order.
    public var moeLayers: [MoELayer] { blocks.compactMap { $0.feedForward as? MoELayer } }

    /// Σ over MoE layers of the weighted load-balancing and z losses of the last forward
    /// (`aux_loss · mean_layers(aux) + z_loss · mean_layers(z)`); 0 for a dense model.
    public var auxiliaryLoss: Double { moeLayers.reduce(0) { $0 + Double($1.auxiliaryLoss) } }

    /// Logits of the last forward pass, `[rows, classes]` (valid for the rows of that pass).
    public var logits: UnsafeMutablePointer<Float> { walk.head!.logits }
    /// Softmax probabilities of the last forward pass with labels.
    public var probabilities: UnsafeMutablePointer<Float> { walk.head!.probabilities }

    /// Computes logits for `n` rows of `x [n, features]` (kept in `logits`).
    public func forwardLogits(_ x: UnsafePointer<Float>, rows n: Int, context: ForwardContext) {
        var context = context
        if config.moe?.router == .hash {
            if sampleKeyCapacity < n {
                sampleKeys.deallocate()
                sampleKeys = .allocate(capacity: n)
                sampleKeyCapacity = n
            }
            let f = config.features
            for t in 0..<n {
                var h: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a over the row's bits
                for j in 0..<f { h = (h ^ UInt64(x[t * f + j].bitPattern)) &* 0x0000_0100_0000_01b3 }
                sampleKeys[t] = h
            }
            context.sampleKeys = UnsafePointer(sampleKeys)
        }
        walk.forward(x, rows: n, context: context)
    }

    /// Forward pass with the cross-entropy loss: returns the mean loss and the number of
    /// correct argmax predictions. `labels` must stay valid until `backward`.
    @discardableResult
    public func forward(_ x: UnsafePointer<Float>, labels: UnsafePointer<Int>, rows n: Int,
                        context: ForwardContext) -> (loss: Double, correct: Int) {
        forwardLogits(x, rows: n, context: context)
        lastLabels = labels
        return walk.loss(labels: labels, rows: n)
    }

    /// Backward pass of the last `forward`: accumulates every parameter's gradient of the mean
    /// loss (times `lossScale`).
    public func backward(lossScale: Float = 1) {
        guard let labels = lastLabels else { preconditionFailure("backward before forward") }
        walk.backward(gradOutput: nil, labels: labels, lossScale: lossScale)
    }

    /// Addresses of every activation buffer (for tests that check buffers are reused, not reallocated).
    var activationStorage: [UnsafeMutablePointer<Float>] { walk.activationStorage }

    /// Mean loss and accuracy over a whole data set, in batches of `batchSize` (no dropout).
    public func evaluate(x: Tensor, labels: [Int], domains: [Int]? = nil, batchSize: Int = 1024) -> (loss: Double, accuracy: Double) {
        let n = x.rows
        guard n > 0 else { return (0, 0) }
        let sums = labels.withUnsafeBufferPointer { lb in
            withDomains(domains) { d in
                evaluationSums(LabelledRows(x: x.data, labels: lb.baseAddress!, rows: n, domains: d), batchSize: batchSize)
            }
        }
        return (sums.lossSum / Double(n), Double(sums.correct) / Double(n))
    }

    private func withDomains<R>(_ domains: [Int]?, _ body: (UnsafePointer<Int>?) -> R) -> R {
        guard let domains else { return body(nil) }
        return domains.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
