import Foundation

/// The residual MLP's architecture (ARCHITECTURE §5.3). Stored as JSON in every checkpoint's
/// `config` attribute, so a reader with h5py and numpy can rebuild the forward pass.
/// Decoding fills every missing key with its default (mlx-swift style). Encoding writes
/// `kind: "mlp"`; decoding ignores `kind` (MoEStore's registry reads it to choose this type).
public struct ModelConfig: Codable, Equatable, Sendable {
    /// Input features per sample.
    public var features: Int
    /// Output classes.
    public var classes: Int
    /// Width of the residual stream.
    public var hidden: Int = 128
    /// Inner width of each FFN.
    public var ffn: Int = 512
    /// Number of residual blocks.
    public var blocks: Int = 2
    public var activation: Activation = .gelu
    /// Dropout probability on each block's output (0 = off).
    public var dropout: Float = 0
    /// LayerNorm ε.
    public var normEps: Float = 1e-5
    /// The Mixture-of-Experts blocks and their router; nil = a dense model.
    public var moe: MoEConfig? = nil

    public init(features: Int, classes: Int, hidden: Int = 128, ffn: Int = 512, blocks: Int = 2,
                activation: Activation = .gelu, dropout: Float = 0, normEps: Float = 1e-5, moe: MoEConfig? = nil) {
        self.features = features
        self.classes = classes
        self.hidden = hidden
        self.ffn = ffn
        self.blocks = blocks
        self.activation = activation
        self.dropout = dropout
        self.normEps = normEps
        self.moe = moe
    }

    /// This configuration as JSON with sorted keys (the checkpoint's `config` attribute).
    public var json: String { sortedKeysJSON(self) }

    enum CodingKeys: String, CodingKey {
        case kind, features, classes, hidden, ffn, blocks, activation, dropout, moe
        case normEps = "norm_eps"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ModelConfig(features: 1, classes: 1)
        features = try c.decode(Int.self, forKey: .features)
        classes = try c.decode(Int.self, forKey: .classes)
        hidden = try c.decodeIfPresent(Int.self, forKey: .hidden) ?? d.hidden
        ffn = try c.decodeIfPresent(Int.self, forKey: .ffn) ?? d.ffn
        blocks = try c.decodeIfPresent(Int.self, forKey: .blocks) ?? d.blocks
        activation = try c.decodeIfPresent(Activation.self, forKey: .activation) ?? d.activation
        dropout = try c.decodeIfPresent(Float.self, forKey: .dropout) ?? d.dropout
        normEps = try c.decodeIfPresent(Float.self, forKey: .normEps) ?? d.normEps
        moe = try c.decodeIfPresent(MoEConfig.self, forKey: .moe)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ResidualMLP.checkpointKind, forKey: .kind)  // the checkpoint registry's key
        try c.encode(features, forKey: .features)
        try c.encode(classes, forKey: .classes)
        try c.encode(hidden, forKey: .hidden)
        try c.encode(ffn, forKey: .ffn)
        try c.encode(blocks, forKey: .blocks)
        try c.encode(activation, forKey: .activation)
        try c.encode(dropout, forKey: .dropout)
        try c.encode(normEps, forKey: .normEps)
        try c.encode(moe, forKey: .moe)  // null for a dense model
    }
}

/// A model configuration as compact JSON with sorted keys: the checkpoint's `config` attribute,
/// byte-stable for a given configuration (model configs always encode).
func sortedKeysJSON<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try! encoder.encode(value), as: UTF8.self)
}
