/// How tokens are assigned to experts (ARCHITECTURE §2, "Routers").
public enum RouterKind: String, Codable, CaseIterable, Sendable {
    /// Softmax over E logits, each token takes its k most probable experts (GShard, Lepikhin 2021).
    case topk
    /// Top-1 routing (Switch Transformer, Fedus et al. 2022).
    case `switch`
    /// Top-k on logits plus N(0,1)·softplus(x·W_noiseᵀ) noise while training (Shazeer et al. 2017).
    case noisyTopk = "noisy_topk"
    /// Each expert takes its C most probable tokens (Zhou et al. 2022).
    case expertChoice = "expert_choice"
    /// A fixed, parameter-free assignment from a seeded hash of the token's input (Roller et al. 2021).
    case hash
    /// Route by the sample's domain id (an oracle baseline).
    case domain

    /// Routers with trainable weights (and so aux/z losses).
    public var isLearned: Bool { self != .hash && self != .domain }
    /// Routers where each token chooses (capacity limits apply per expert afterwards).
    public var isTokenChoice: Bool { self == .topk || self == .switch || self == .noisyTopk }
}

/// How a learned router turns logits `z = x·Wᵀ` into expert affinities.
public enum RouterScore: String, Codable, CaseIterable, Sendable {
    /// `p = softmax(z)` over the E experts (GShard, Switch).
    case softmax
    /// `s = σ(z)` per expert, independently (DeepSeek-V3, Liu et al. 2024).
    case sigmoid
}

/// How the router's load is balanced.
public enum RouterBalance: String, Codable, CaseIterable, Sendable {
    /// The Switch auxiliary loss `aux_loss · E · Σ_i f_i P_i` (Fedus et al. 2022).
    case auxLoss = "aux_loss"
    /// Loss-free: a per-expert bias added to the affinities for selection only, moved by
    /// `bias_rate · sign(mean load − load_i)` after every optimizer step (Wang et al. 2024).
    case bias
    /// No balancing (the aux loss is still measured, but not trained on).
    case none
}

/// Which assignments survive when an expert is over capacity.
public enum DropPolicy: String, Codable, CaseIterable, Sendable {
    /// Highest gate probability first (batch-prioritised routing, Riquelme et al. 2021).
    case probs
    /// First choices before second choices, then earlier tokens first (GShard / Switch order).
    case position
}

/// The Mixture-of-Experts part of a model configuration: which blocks are MoE and how they route.
public struct MoEConfig: Codable, Equatable, Sendable {
    public var experts: Int
    /// Indices of the blocks whose FFN is an MoE layer.
    public var blocks: [Int]
    public var router: RouterKind = .topk
    public var k: Int = 2
    /// nil = dropless; else capacity = max(minCapacity, ⌈k·T/E · capacityFactor⌉).
    public var capacityFactor: Double? = nil
    public var minCapacity: Int = 4
    public var dropPolicy: DropPolicy = .probs
    /// Coefficient of the Switch load-balancing loss (averaged over MoE layers).
    public var auxLoss: Float = 0.01
    /// Coefficient of the router z-loss (averaged over MoE layers).
    public var zLoss: Float = 0.001
    /// Multiplicative router-input noise U(1 − jitter, 1 + jitter) while training.
    public var jitter: Float = 0
    /// Renormalise the k selected gates to sum to 1.
    public var normalizeTopk: Bool = true
    /// Seed of the `hash` router's assignment (part of the model: stored in checkpoints).
    public var hashSeed: UInt64 = 0
    /// Hidden width of each expert (`experts/w1 [E, expertFFN, hidden]`); nil = the model's `ffn`.
    /// MoEfication (`split.strategy: neurons`) sets it to `ffn / E`: each expert is one group of
    /// the dense FFN's hidden units. Written to checkpoints as `expert_ffn` when set.
    public var expertFFN: Int? = nil
    /// Affinities of a learned router: softmax (default) or sigmoid (DeepSeek-V3).
    public var score: RouterScore = .softmax
    /// Load balancing: the aux loss (default), the loss-free expert bias, or none.
    public var balance: RouterBalance = .auxLoss
    /// Step size u of the expert-bias update `b_i += u · sign(mean load − load_i)` (`balance: bias`).
    public var biasRate: Float = 0.001

    public init(experts: Int, blocks: [Int], router: RouterKind = .topk, k: Int = 2, capacityFactor: Double? = nil,
                minCapacity: Int = 4, dropPolicy: DropPolicy = .probs, auxLoss: Float = 0.01, zLoss: Float = 0.001,
                jitter: Float = 0, normalizeTopk: Bool = true, hashSeed: UInt64 = 0, expertFFN: Int? = nil,
                score: RouterScore = .softmax, balance: RouterBalance = .auxLoss, biasRate: Float = 0.001) {
        self.experts = experts
        self.blocks = blocks
        self.router = router
        self.k = router == .switch || router == .domain ? 1 : k
        self.capacityFactor = capacityFactor
        self.minCapacity = minCapacity
        self.dropPolicy = dropPolicy
        self.auxLoss = auxLoss
        self.zLoss = zLoss
        self.jitter = jitter
        self.normalizeTopk = normalizeTopk
        self.hashSeed = hashSeed
        self.expertFFN = expertFFN
        self.score = score
        self.balance = balance
        self.biasRate = biasRate
    }

    /// Whether the router keeps a selection-only expert bias (`balance: bias`).
    public var hasExpertBias: Bool { balance == .bias }

    enum CodingKeys: String, CodingKey {
        case experts, blocks, router, k, jitter
        case capacityFactor = "capacity_factor", minCapacity = "min_capacity", dropPolicy = "drop_policy"
        case auxLoss = "aux_loss", zLoss = "z_loss", normalizeTopk = "normalize_topk", hashSeed = "hash_seed"
        case expertFFN = "expert_ffn"
        case score, balance, biasRate = "bias_rate"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = MoEConfig(experts: 1, blocks: [])
        self.init(experts: try c.decode(Int.self, forKey: .experts), blocks: try c.decode([Int].self, forKey: .blocks),
                  router: try c.decodeIfPresent(RouterKind.self, forKey: .router) ?? d.router,
                  k: try c.decodeIfPresent(Int.self, forKey: .k) ?? d.k,
                  capacityFactor: try c.decodeIfPresent(Double.self, forKey: .capacityFactor),
                  minCapacity: try c.decodeIfPresent(Int.self, forKey: .minCapacity) ?? d.minCapacity,
                  dropPolicy: try c.decodeIfPresent(DropPolicy.self, forKey: .dropPolicy) ?? d.dropPolicy,
                  auxLoss: try c.decodeIfPresent(Float.self, forKey: .auxLoss) ?? d.auxLoss,
                  zLoss: try c.decodeIfPresent(Float.self, forKey: .zLoss) ?? d.zLoss,
                  jitter: try c.decodeIfPresent(Float.self, forKey: .jitter) ?? d.jitter,
                  normalizeTopk: try c.decodeIfPresent(Bool.self, forKey: .normalizeTopk) ?? d.normalizeTopk,
                  hashSeed: try c.decodeIfPresent(UInt64.self, forKey: .hashSeed) ?? 0,
                  expertFFN: try c.decodeIfPresent(Int.self, forKey: .expertFFN),
                  score: try c.decodeIfPresent(RouterScore.self, forKey: .score) ?? d.score,
                  balance: try c.decodeIfPresent(RouterBalance.self, forKey: .balance) ?? d.balance,
                  biasRate: try c.decodeIfPresent(Float.self, forKey: .biasRate) ?? d.biasRate)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(experts, forKey: .experts)
        try c.encode(blocks, forKey: .blocks)
        try c.encode(router, forKey: .router)
        try c.encode(k, forKey: .k)
        try c.encode(capacityFactor, forKey: .capacityFactor)  // null = dropless, written explicitly
        try c.encode(minCapacity, forKey: .minCapacity)
        try c.encode(dropPolicy, forKey: .dropPolicy)
        try c.encode(auxLoss, forKey: .auxLoss)
        try c.encode(zLoss, forKey: .zLoss)
        try c.encode(jitter, forKey: .jitter)
        try c.encode(normalizeTopk, forKey: .normalizeTopk)
        try c.encode(hashSeed, forKey: .hashSeed)
        try c.encodeIfPresent(expertFFN, forKey: .expertFFN)
        // Written only when not the default, so the configs of older checkpoints stay the same text.
        if score != .softmax { try c.encode(score, forKey: .score) }
        if balance != .auxLoss { try c.encode(balance, forKey: .balance) }
        if balance == .bias { try c.encode(biasRate, forKey: .biasRate) }
    }

    /// Expert capacity for `tokens` tokens (nil = dropless; expert choice always has one).
    public func capacity(tokens: Int) -> Int? {
        guard let cf = capacityFactor else { return nil }
        return max(minCapacity, Int((Double(k * tokens) / Double(experts) * cf).rounded(.up)))
    }
}
