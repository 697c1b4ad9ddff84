/// The name of a residual MLP parameter (ARCHITECTURE §5.3), parsed into what upcycling,
/// MoEfication and the fusions need to know: which block, and whether it is a dense FFN tensor,
/// the stacked experts of an MoE block, its router, or its shared experts. One parser and one builder for
/// `blocks/<i>/ffn/<t>`, `blocks/<i>/moe/experts/<t>`, `blocks/<i>/moe/router/<t>` and `blocks/<i>/moe/shared/<t>`, instead
/// of string splitting in each of them.
///
///     ParameterPath("blocks/1/moe/experts/w2")           // .experts(block: 1, tensor: "w2")
///     ParameterPath.ffn(block: 1, tensor: "w2").name      // "blocks/1/ffn/w2"
public enum ParameterPath: Hashable, Sendable, CustomStringConvertible {
    /// `blocks/<block>/ffn/<tensor>`: a dense block's FFN (`w1 [ffn, hidden]`, `b1`, `w2`, `b2`).
    case ffn(block: Int, tensor: String)
    /// `blocks/<block>/moe/experts/<tensor>`: the experts of an MoE block, stacked (`[E, …]`).
    case experts(block: Int, tensor: String)
    /// `blocks/<block>/moe/router/<tensor>`: an MoE block's router (`weight`, `noise_weight`).
    case router(block: Int, tensor: String)
    /// `blocks/<block>/moe/shared/<tensor>`: an MoE block's always-active shared experts, stacked (`[S, …]`).
    case shared(block: Int, tensor: String)
    /// Any other parameter (`embed/weight`, `blocks/<i>/norm/…`, `head/…`, `norm/…`), by name.
    case other(String)

    /// Parses `name`; a name of none of the four block forms (or with a block index that is not
    /// an integer) is `.other(name)`.
    public init(_ name: String) {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0] == "blocks", let block = Int(parts[1]) else { self = .other(name); return }
        switch (parts.count, parts[2], parts[3]) {
        case (4, "ffn", let t): self = .ffn(block: block, tensor: String(t))
        case (5, "moe", "experts"): self = .experts(block: block, tensor: String(parts[4]))
        case (5, "moe", "router"): self = .router(block: block, tensor: String(parts[4]))
        case (5, "moe", "shared"): self = .shared(block: block, tensor: String(parts[4]))
        default: self = .other(name)
        }
    }

    /// The parameter's name, as in checkpoints.
    public var name: String {
        switch self {
        case .ffn(let b, let t): return "blocks/\(b)/ffn/\(t)"
        case .experts(let b, let t): return "blocks/\(b)/moe/experts/\(t)"
        case .router(let b, let t): return "blocks/\(b)/moe/router/\(t)"
        case .shared(let b, let t): return "blocks/\(b)/moe/shared/\(t)"
        case .other(let name): return name
        }
    }

    public var description: String { name }

    /// The block of an FFN, experts, router or shared-experts tensor.
    public var block: Int? {
        switch self {
        case .ffn(let b, _), .experts(let b, _), .router(let b, _), .shared(let b, _): return b
        case .other: return nil
        }
    }

    /// Whether the tensor belongs to an MoE layer (its routed or shared experts, or its router).
    public var isMoE: Bool {
        switch self {
        case .experts, .router, .shared: return true
        case .ffn, .other: return false
        }
    }
}
