import MoECore

/// A pre-norm residual block: `y = x + Dropout(F(LN(x)))`, with F a dense FFN (or, later, an
/// MoE layer). Backward: `dx = dy + LNᵀ(Fᵀ(mask ⊙ dy))`.
public final class ResidualBlock {
    public let index: Int
    public let norm: LayerNorm
    public let feedForward: FeedForwardLayer
    public let dropout: Float
    private let normed: Scratch, mean: Scratch, rstd: Scratch, branch: Scratch, mask: Scratch
    private let gradNormed: Scratch
    private var input: UnsafePointer<Float>?

    public init(index: Int, hidden: Int, feedForward: FeedForwardLayer, dropout: Float, normEps: Float) {
        self.index = index
        self.norm = LayerNorm("blocks/\(index)/norm", dim: hidden, eps: normEps)
        self.feedForward = feedForward
        self.dropout = dropout
        normed = Scratch(width: hidden); branch = Scratch(width: hidden); mask = Scratch(width: hidden)
        gradNormed = Scratch(width: hidden)
        mean = Scratch(width: 1); rstd = Scratch(width: 1)
    }

    public var parameters: [Parameter] { norm.parameters + feedForward.parameters }

    /// `y = x + Dropout(F(LN(x)))` for `n` rows; `x` must stay valid until `backward`.
    public func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                        context: ForwardContext) {
        normed.ensure(rows: n); branch.ensure(rows: n); mask.ensure(rows: n)
        mean.ensure(rows: n); rstd.ensure(rows: n)
        input = x
        let h = norm.dim
        norm.forward(x, rows: n, into: normed.data, mean: mean.data, rstd: rstd.data)
        feedForward.forward(normed.data, rows: n, into: branch.data, context: context)
        if context.training && dropout > 0 {
            var rng = RNG(seed: context.seed, purpose: "dropout/blocks/\(index)", stream: UInt64(context.step))
            rng.skip(context.rowOffset * h)
            Dropout.forward(branch.data, mask: mask.data, count: n * h, p: dropout, rng: &rng)
        } else {
            mask.data.update(repeating: 1, count: n * h)
        }
        Kernels.add(n * h, x, branch.data, into: y)
    }

    /// Addresses of this block's activation buffers (see `ResidualMLP.activationStorage`).
    var activationStorage: [UnsafeMutablePointer<Float>] {
        [normed, mean, rstd, branch, mask, gradNormed].map(\.data) + ((feedForward as? DenseFFN)?.activationStorage ?? [])
    }

    /// Given `dy`, accumulates parameter gradients and writes `dx` (`dx` may alias `dy`).
    public func backward(_ dy: UnsafePointer<Float>, rows n: Int, dx: UnsafeMutablePointer<Float>) {
        guard let x = input else { preconditionFailure("ResidualBlock.backward before forward") }
        let h = norm.dim
        gradNormed.ensure(rows: n)
        // The branch's gradient reuses the branch buffer (its forward values are no longer needed).
        let dBranch = branch.data
        for i in 0..<(n * h) { dBranch[i] = dy[i] * mask.data[i] }
        feedForward.backward(dBranch, rows: n, dx: gradNormed.data)
        if UnsafePointer(dx) != dy { dx.update(from: dy, count: n * h) }
        norm.backward(x, gradNormed.data, rows: n, mean: mean.data, rstd: rstd.data, dx: dx, accumulate: true)
    }
}
