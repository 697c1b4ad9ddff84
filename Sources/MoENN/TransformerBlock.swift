import MoECore

/// A GPT-2 pre-norm transformer block (Radford et al. 2019) over `batch` sequences of `T` tokens:
///
///     h  = x + Dropout(out(Attn(LN₁(x))))     causal multi-head self-attention (`attn/norm`, `attn/qkv`, `attn/out`)
///     x' = h + Dropout(F(LN₂(h)))             `ResidualBlock`: F = `ffn` (DenseFFN) or `moe` (MoELayer)
///
/// The second half is the `mlp`'s `ResidualBlock` itself, so the FFN/MoE names, dropout streams
/// and numerics are exactly the MLP's. Backward, with m₁ the attention branch's dropout mask:
///
///     ∂L/∂h = ResidualBlockᵀ(∂L/∂x'),   ∂L/∂x = ∂L/∂h + LN₁ᵀ(Attnᵀ(m₁ ⊙ ∂L/∂h))
public final class TransformerBlock {
    public let index: Int
    public let attentionNorm: LayerNorm
    public let attention: CausalSelfAttention
    /// `h + Dropout(F(LN₂(h)))` with norm `blocks/<i>/norm` and F `blocks/<i>/ffn` or `blocks/<i>/moe`.
    public let residual: ResidualBlock
    public let dropout: Float
    private let normed: Scratch, mean: Scratch, rstd: Scratch, branch: Scratch, mask: Scratch, middle: Scratch
    private let gradNormed: Scratch
    private var input: UnsafePointer<Float>?
    private var rows = 0, droppedOut = false

    public init(index: Int, hidden: Int, attention: CausalSelfAttention, feedForward: FeedForwardLayer,
                dropout: Float, normEps: Float) {
        self.index = index
        self.attentionNorm = LayerNorm("blocks/\(index)/attn/norm", dim: hidden, eps: normEps)
        self.attention = attention
        self.residual = ResidualBlock(index: index, hidden: hidden, feedForward: feedForward, dropout: dropout, normEps: normEps)
        self.dropout = dropout
        normed = Scratch(width: hidden); branch = Scratch(width: hidden); mask = Scratch(width: hidden)
        middle = Scratch(width: hidden); gradNormed = Scratch(width: hidden)
        mean = Scratch(width: 1); rstd = Scratch(width: 1)
    }

    /// In checkpoint order: `attn/norm`, `attn/qkv`, `attn/out`, `norm`, then the FFN or MoE layer.
    public var parameters: [Parameter] { attentionNorm.parameters + attention.parameters + residual.parameters }

    public var feedForward: FeedForwardLayer { residual.feedForward }

    /// `x [batch·T, hidden] → y`; `x` must stay valid until `backward`. `context.rowOffset` counts
    /// token rows here (the model converts windows to rows).
    public func forward(_ x: UnsafePointer<Float>, batch: Int, tokens T: Int, into y: UnsafeMutablePointer<Float>,
                        context: ForwardContext) {
        let n = batch * T, h = attentionNorm.dim
        normed.ensure(rows: n); branch.ensure(rows: n); middle.ensure(rows: n)
        mean.ensure(rows: n); rstd.ensure(rows: n)
        input = x
        rows = n
        attentionNorm.forward(x, rows: n, into: normed.data, mean: mean.data, rstd: rstd.data)
        attention.forward(normed.data, batch: batch, tokens: T, into: branch.data)
        droppedOut = context.training && dropout > 0
        if droppedOut {
            mask.ensure(rows: n)
            var rng = RNG(seed: context.seed, purpose: "dropout/blocks/\(index)/attn", stream: UInt64(context.step))
            rng.skip(context.rowOffset * h)
            Dropout.forward(branch.data, mask: mask.data, count: n * h, p: dropout, rng: &rng)
        }
        Kernels.add(n * h, x, branch.data, into: middle.data)
        residual.forward(middle.data, rows: n, into: y, context: context)
    }

    /// Given `dy = ∂L/∂x'`, accumulates parameter gradients and writes `dx` (`dx` may alias `dy`).
    public func backward(_ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        guard let x = input else { preconditionFailure("TransformerBlock.backward before forward") }
        let n = rows, h = attentionNorm.dim
        gradNormed.ensure(rows: n)
        residual.backward(dy, rows: n, dx: dx)  // dx = ∂L/∂h
        // The branch's gradient reuses the branch buffer (its forward values are no longer needed).
        let dBranch = branch.data
        if droppedOut {
            for i in 0..<(n * h) { dBranch[i] = dx[i] * mask.data[i] }
        } else {
            dBranch.update(from: dx, count: n * h)
        }
        attention.backward(dBranch, dx: gradNormed.data)
        attentionNorm.backward(x, gradNormed.data, rows: n, mean: mean.data, rstd: rstd.data, dx: dx, accumulate: true)
    }
}
