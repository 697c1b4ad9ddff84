import MoECore

/// The decoder-only transformer language model of ARCHITECTURE §2 and §5.3 (kind `transformer`),
/// GPT-2 style (Radford et al. 2019) with pre-norm blocks as in nanoGPT:
///
///     x₀ = Dropout(embed[tokens] + pos[0..<T])          `embed/weight [vocab, hidden]`, `pos/weight [context, hidden]`
///     xᵢ₊₁ = Block_i(xᵢ)                                 `TransformerBlock`: attention, then FFN or MoE
///     logits = LN(x_B) · Wᵀ                               W = `head/weight [vocab, hidden]`, or `embed/weight` when tied
///     loss = mean over the batch·T scored positions of −log softmax(logits)[next token]
///
/// An MoE layer routes each of the batch·T tokens as a row; the `hash` router keys each token by
/// its id (Roller et al. 2021) and the `domain` router by its window's domain.
///
/// Initialisation (GPT-2, as nanoGPT's `_init_weights`): every weight matrix — embeddings, head,
/// `attn/qkv`, the FFNs' and experts' `w1`, the router — is N(0, 0.02²); the residual output
/// projections (`attn/out/weight`, the FFN's and the experts' `w2`) are N(0, (0.02/√(2·blocks))²),
/// so the residual stream's variance does not grow with depth; every bias is 0, LayerNorm gains
/// 1 and shifts 0, and `noisy_topk`'s noise projection starts at 0. Each tensor is drawn from
/// its own stream `RNG(seed, "init/<name>")`, so a tensor's start depends only on the seed and
/// its name.
///
/// The forward and backward walk is `TransformerStage` over every block, the walk GPipe stages
/// and layer-local stages run over their own block ranges (`stage(_:embed:head:)`).
/// Activations live in buffers sized for the largest batch seen: after the first step a
/// forward/backward pair allocates nothing.
public final class TransformerLM {
    public let config: TransformerConfig
    public let embed: Parameter
    public let pos: Parameter
    public let blocks: [TransformerBlock]
    public let norm: LayerNorm
    /// The output projection; nil when `tieEmbeddings` (the logits then use `embed`).
    public let head: Parameter?
    /// Every parameter, in checkpoint order.
    public let parameters: [Parameter]

    /// The forward and backward walk over every block (see `TransformerStage`).
    private var walk: TransformerStage!
    private var lastBatch: TokenWindows?

    /// A model with GPT-2 initialisation drawn from `seed`.
    public init(config: TransformerConfig, seed: UInt64) {
        self.config = config
        let h = config.hidden
        embed = Parameter(name: "embed/weight", shape: [config.vocab, h])
        pos = Parameter(name: "pos/weight", shape: [config.context, h])
        let moeBlocks = Set(config.moe?.blocks ?? [])
        let residualStd = 0.02 / Float(2 * max(config.blocks, 1)).squareRoot()
        blocks = (0..<config.blocks).map { i in
            let layer: FeedForwardLayer
            if let moe = config.moe, moeBlocks.contains(i) {
                layer = MoELayer("blocks/\(i)/moe", index: i, hidden: h, ffn: moe.expertFFN ?? config.ffn,
                                 activation: config.activation, config: moe, moeLayers: moeBlocks.count)
            } else {
                layer = DenseFFN("blocks/\(i)/ffn", hidden: h, ffn: config.ffn, activation: config.activation)
            }
            let attention = CausalSelfAttention("blocks/\(i)/attn", hidden: h, heads: config.heads, seed: seed,
                                                weightStd: 0.02, outStd: residualStd)
            return TransformerBlock(index: i, hidden: h, attention: attention, feedForward: layer,
                                    dropout: config.dropout, normEps: config.normEps)
        }
        norm = LayerNorm("norm", dim: h, eps: config.normEps)
        head = config.tieEmbeddings ? nil : Parameter(name: "head/weight", shape: [config.vocab, h])
        parameters = [embed, pos] + blocks.flatMap(\.parameters) + norm.parameters + (head.map { [$0] } ?? [])
        walk = stage(0..<config.blocks, embed: true, head: true)
        initialize(seed: seed)
    }

    /// GPT-2 initialisation of every parameter (see the type's documentation).
    public func initialize(seed: UInt64) {
        let residualStd = 0.02 / Float(2 * max(config.blocks, 1)).squareRoot()
        let norms = Set((blocks.flatMap { $0.attentionNorm.parameters + $0.residual.norm.parameters } + norm.parameters).map(\.name))
        for p in parameters where !norms.contains(p.name) {
            let name = p.name
            if name.hasSuffix("/bias") || name.hasSuffix("/b1") || name.hasSuffix("/b2") || name.hasSuffix("/noise_weight") {
                p.value.zero()
                continue
            }
            let residualOutput = name.hasSuffix("attn/out/weight") || name.hasSuffix("/w2")
            Initializer.normal(p, std: residualOutput ? residualStd : 0.02, seed: seed)
        }
    }

    /// The MoE layers, in block order.
    public var moeLayers: [MoELayer] { blocks.compactMap { $0.feedForward as? MoELayer } }

    /// Σ over MoE layers of the weighted load-balancing and z losses of the last forward; 0 for a dense model.
    public var auxiliaryLoss: Double { moeLayers.reduce(0) { $0 + Double($1.auxiliaryLoss) } }

    /// Logits of the last forward, `[batch·T, vocab]` (row `b·T + t` predicts token t + 1 of window b).
    public var logits: UnsafeMutablePointer<Float> { walk.head!.logits }
    /// The projection the logits use: `head/weight`, or `embed/weight` when tied.
    public var outputWeight: Parameter { head ?? embed }

    /// Computes logits for tokens `0..<T` of `batch` rows of `tokens` (row `b` starts at
    /// `tokens + b·rowStride`), kept in `logits`. `context.rowOffset` counts windows here: each
    /// window is T token rows for the dropout and router streams. `domains` (one per window,
    /// optional) reach the `domain` router per token.
    public func forwardLogits(_ tokens: UnsafePointer<Int32>, batch: Int, tokens T: Int, rowStride: Int,
                              domains: UnsafePointer<Int>? = nil, context: ForwardContext) {
        lastBatch = nil
        walk.forward(tokens, batch: batch, tokens: T, rowStride: rowStride, domains: domains, input: nil, context: context)
    }

    /// Forward pass with the next-token cross-entropy of every scored position of `batch`.
    public func forward(_ batch: TokenWindows, context: ForwardContext) -> ObjectiveSums {
        walk.forward(batch, input: nil, context: context)
        lastBatch = batch
        return walk.loss(batch)
    }

    /// Backward pass of the last `forward` (which must have been a training forward):
    /// accumulates every parameter's gradient of the mean loss over the scored tokens (times
    /// `lossScale`) plus the MoE layers' auxiliary losses.
    public func backward(lossScale: Float = 1) {
        guard let batch = lastBatch else { preconditionFailure("TransformerLM.backward needs a forward with targets first") }
        walk.backward(batch, gradOutput: nil, lossScale: lossScale)
    }
}
