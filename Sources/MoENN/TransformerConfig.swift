import Foundation

/// The decoder-only transformer LM's architecture (ARCHITECTURE §2 and §5.3, kind `transformer`).
/// Stored as JSON (sorted keys, with `kind: "transformer"`) in every checkpoint's `config`
/// attribute: with the parameters it is enough to rebuild the forward pass. Decoding fills every
/// missing key but `context` with its default. MoE blocks are named as in the `mlp`
/// (`moe.blocks`), so upcycling, MoEfication and expert merging see the same layout.
public struct TransformerConfig: Codable, Equatable, Sendable {
    /// Token vocabulary (256 for byte-level text).
    public var vocab: Int = 256
    /// Longest window the model reads (rows of `pos/weight`).
    public var context: Int
    /// Width of the residual stream (d_model).
    public var hidden: Int = 128
    /// Attention heads; each has `hidden / heads` dimensions.
    public var heads: Int = 4
    /// Number of transformer blocks.
    public var blocks: Int = 4
    /// Inner width of each FFN (4·hidden in GPT-2).
    public var ffn: Int = 512
    public var activation: Activation = .gelu
    /// Dropout on the embedding sum and on each residual branch while training (0 = off).
    public var dropout: Float = 0
    /// Logits use the token embedding (`logits = LN(x)·embed/weightᵀ`) instead of `head/weight`.
    public var tieEmbeddings: Bool = false
    /// LayerNorm ε.
    public var normEps: Float = 1e-5
    /// The Mixture-of-Experts blocks (`moe.blocks`) and their router; nil = a dense model.
    public var moe: MoEConfig? = nil

    public init(vocab: Int = 256, context: Int, hidden: Int = 128, heads: Int = 4, blocks: Int = 4, ffn: Int = 512,
                activation: Activation = .gelu, dropout: Float = 0, tieEmbeddings: Bool = false, normEps: Float = 1e-5,
                moe: MoEConfig? = nil) {
        precondition(heads > 0 && hidden % heads == 0, "heads (\(heads)) must divide hidden (\(hidden))")
        self.vocab = vocab
        self.context = context
        self.hidden = hidden
        self.heads = heads
        self.blocks = blocks
        self.ffn = ffn
        self.activation = activation
        self.dropout = dropout
        self.tieEmbeddings = tieEmbeddings
        self.normEps = normEps
        self.moe = moe
    }

    /// This configuration as JSON with sorted keys (the checkpoint's `config` attribute).
    public var json: String { sortedKeysJSON(self) }

    enum CodingKeys: String, CodingKey {
        case kind, vocab, context, hidden, heads, blocks, ffn, activation, dropout, moe
        case tieEmbeddings = "tie_embeddings", normEps = "norm_eps"
    }

    /// Errors of a config JSON that decodes but describes no model.
    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = TransformerConfig(context: 1)
        context = try c.decode(Int.self, forKey: .context)
        vocab = try c.decodeIfPresent(Int.self, forKey: .vocab) ?? d.vocab
        hidden = try c.decodeIfPresent(Int.self, forKey: .hidden) ?? d.hidden
        heads = try c.decodeIfPresent(Int.self, forKey: .heads) ?? d.heads
        blocks = try c.decodeIfPresent(Int.self, forKey: .blocks) ?? d.blocks
        ffn = try c.decodeIfPresent(Int.self, forKey: .ffn) ?? d.ffn
        activation = try c.decodeIfPresent(Activation.self, forKey: .activation) ?? d.activation
        dropout = try c.decodeIfPresent(Float.self, forKey: .dropout) ?? d.dropout
        tieEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieEmbeddings) ?? d.tieEmbeddings
        normEps = try c.decodeIfPresent(Float.self, forKey: .normEps) ?? d.normEps
        moe = try c.decodeIfPresent(MoEConfig.self, forKey: .moe)
        guard heads > 0, hidden > 0, hidden % heads == 0 else {
            throw Invalid(description: "heads (\(heads)) must divide hidden (\(hidden))")
        }
        guard vocab > 0, context > 0, blocks >= 0, ffn > 0 else {
            throw Invalid(description: "vocab (\(vocab)), context (\(context)) and ffn (\(ffn)) must be positive, blocks (\(blocks)) not negative")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(TransformerLM.checkpointKind, forKey: .kind)  // the checkpoint registry's key
        try c.encode(vocab, forKey: .vocab)
        try c.encode(context, forKey: .context)
        try c.encode(hidden, forKey: .hidden)
        try c.encode(heads, forKey: .heads)
        try c.encode(blocks, forKey: .blocks)
        try c.encode(ffn, forKey: .ffn)
        try c.encode(activation, forKey: .activation)
        try c.encode(dropout, forKey: .dropout)
        try c.encode(tieEmbeddings, forKey: .tieEmbeddings)
        try c.encode(normEps, forKey: .normEps)
        try c.encode(moe, forKey: .moe)  // null for a dense model
    }
}
