import MoECore

/// Layer normalisation over the last dimension (Ba et al. 2016), as `nn.LayerNorm(d)`:
///
///     μ = mean(x),  σ² = mean((x − μ)²)  (biased),  r = 1/√(σ² + ε)
///     x̂ = (x − μ)·r,  y = γ ⊙ x̂ + β
///
/// Backward (per row, with g = γ ⊙ dy):
///
///     dx = r · (g − mean(g) − x̂ · mean(g ⊙ x̂)),  dγ += Σ_rows dy ⊙ x̂,  dβ += Σ_rows dy
public final class LayerNorm {
    public let dim: Int
    public let eps: Float
    public let weight: Parameter
    public let bias: Parameter

    public init(_ prefix: String, dim: Int, eps: Float = 1e-5) {
        self.dim = dim
        self.eps = eps
        weight = Parameter(name: prefix + "/weight", shape: [dim], decays: false)
        bias = Parameter(name: prefix + "/bias", shape: [dim], decays: false)
        weight.value.fill(1)
    }

    public var parameters: [Parameter] { [weight, bias] }

    /// Normalises `n` rows of `x` into `y`, saving each row's mean and 1/σ for backward.
    public func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                        mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>) {
        let d = dim
        let g = weight.value.data, b = bias.value.data
        for r in 0..<n {
            let xr = x + r * d, yr = y + r * d
            var s: Float = 0
            for i in 0..<d { s += xr[i] }
            let m = s / Float(d)
            var v: Float = 0
            for i in 0..<d { let c = xr[i] - m; v += c * c }
            let rs = 1 / (v / Float(d) + eps).squareRoot()
            for i in 0..<d { yr[i] = (xr[i] - m) * rs * g[i] + b[i] }
            mean[r] = m
            rstd[r] = rs
        }
    }

    /// Accumulates `dγ`, `dβ`, and writes (or with `accumulate`, adds) `dx`.
    public func backward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, rows n: Int,
                         mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        let d = dim
        let g = weight.value.data
        let dg = weight.grad.data, db = bias.grad.data
        for r in 0..<n {
            let xr = x + r * d, dyr = dy + r * d, dxr = dx + r * d
            let m = mean[r], rs = rstd[r]
            var meanG: Float = 0, meanGX: Float = 0
            for i in 0..<d {
                let xhat = (xr[i] - m) * rs
                let gi = g[i] * dyr[i]
                meanG += gi
                meanGX += gi * xhat
                dg[i] += dyr[i] * xhat
                db[i] += dyr[i]
            }
            meanG /= Float(d)
            meanGX /= Float(d)
            if accumulate {
                for i in 0..<d { dxr[i] += rs * (g[i] * dyr[i] - meanG - (xr[i] - m) * rs * meanGX) }
            } else {
                for i in 0..<d { dxr[i] = rs * (g[i] * dyr[i] - meanG - (xr[i] - m) * rs * meanGX) }
            }
        }
    }
}
