import MoECore

/// A fully connected layer with PyTorch's layout: `weight` is `[out, in]`, `bias` is `[out]`,
/// and `y = x · Wᵀ + b` for `x` of shape `[n, in]`.
public final class Linear {
    public let inFeatures: Int
    public let outFeatures: Int
    public let weight: Parameter
    public let bias: Parameter

    /// A layer whose parameters are named `<prefix>/weight` and `<prefix>/bias`
    /// (or `weightName`/`biasName` when given, e.g. `w1` and `b1` inside an FFN).
    public init(_ prefix: String, in inFeatures: Int, out outFeatures: Int,
                weightName: String = "weight", biasName: String = "bias") {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        weight = Parameter(name: prefix + "/" + weightName, shape: [outFeatures, inFeatures])
        bias = Parameter(name: prefix + "/" + biasName, shape: [outFeatures])
    }

    public var parameters: [Parameter] { [weight, bias] }

    /// PyTorch's default initialisation from `seed`.
    public func initialize(seed: UInt64) {
        Initializer.linear(weight: weight, bias: bias, fanIn: inFeatures, seed: seed)
    }

    /// `y[n, out] = x[n, in] · Wᵀ + b` (one sgemm, W used transposed in place).
    public func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>) {
        BLAS.gemm(m: n, n: outFeatures, k: inFeatures, x, weight.value.data, transB: true, y)
        Kernels.addRowBias(rows: n, cols: outFeatures, bias.value.data, y)
    }

    /// Given `dy = ∂L/∂y`: accumulates `∂L/∂W += dyᵀ · x` and `∂L/∂b += Σ_rows dy`, and
    /// writes `dx = dy · W` when `dx` is given (`accumulate: true` adds to it instead).
    public func backward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, rows n: Int,
                         dx: UnsafeMutablePointer<Float>?, accumulate: Bool = false) {
        BLAS.gemm(m: outFeatures, n: inFeatures, k: n, dy, transA: true, x, beta: 1, weight.grad.data)
        Kernels.accumulateColumnSums(rows: n, cols: outFeatures, dy, bias.grad.data)
        if let dx {
            BLAS.gemm(m: n, n: inFeatures, k: outFeatures, dy, weight.value.data,
                      beta: accumulate ? 1 : 0, dx)
        }
    }
}
