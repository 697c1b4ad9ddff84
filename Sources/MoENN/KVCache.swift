import MoECore

/// The keys and values of causal self-attention for the positions a `TransformerDecoder` has
/// read so far, for incremental decoding (the "KV cache" of autoregressive transformers, as in
/// Pope et al. 2022, "Efficiently Scaling Transformer Inference").
///
/// For block `i`, `keys[i]` and `values[i]` are `[context, hidden]` row-major: row `t` holds the
/// key (value) of position `t` for every head, head `j` in columns `j·d ..< (j+1)·d` (d = hidden
/// / heads), the same column layout as the k and v thirds of the `attn/qkv` output. Rows
/// `0..<count` are valid. A step that reads one new token computes its q, k, v, appends k and v
/// here and attends over rows `0...t`: O(t·hidden) per block instead of a full re-forward.
///
/// Memory: 2 · blocks · context · hidden floats, allocated once.
public final class KVCache {
    public let blocks: Int
    public let context: Int
    public let hidden: Int
    public private(set) var keys: [Tensor]
    public private(set) var values: [Tensor]
    /// Positions cached so far (rows `0..<count` of every block's keys and values).
    public internal(set) var count = 0

    public init(blocks: Int, context: Int, hidden: Int) {
        self.blocks = blocks
        self.context = context
        self.hidden = hidden
        keys = (0..<blocks).map { _ in Tensor(shape: [context, hidden]) }
        values = (0..<blocks).map { _ in Tensor(shape: [context, hidden]) }
    }

    /// Free rows left before the context is full.
    public var free: Int { context - count }

    /// Forgets every cached position (the storage is kept).
    public func reset() { count = 0 }

    /// Stores the k and v of `n` new positions `count..<count+n` for `block`, read from the
    /// `[n, 3·hidden]` qkv rows (columns `hidden..<2·hidden` are k, `2·hidden..<3·hidden` v).
    func store(block: Int, qkv: UnsafePointer<Float>, rows n: Int) {
        precondition(count + n <= context, "KVCache: \(count) + \(n) positions exceed the context \(context)")
        let h = hidden, k = keys[block].data + count * h, v = values[block].data + count * h
        for r in 0..<n {
            (k + r * h).update(from: qkv + r * 3 * h + h, count: h)
            (v + r * h).update(from: qkv + r * 3 * h + 2 * h, count: h)
        }
    }
}
