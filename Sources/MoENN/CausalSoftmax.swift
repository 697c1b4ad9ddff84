import MoECore

/// The row kernels of causal self-attention: a fused, masked, numerically stable softmax over the
/// score rows of one (sequence, head), and its backward.
///
/// Scores are `[T, T]` row-major (row `t` is the query at position `t`); the causal mask keeps
/// keys `0...t` of row `t`, which is the same as adding `−∞` above the diagonal before the softmax:
///
///     p_tj = exp(s_tj − m_t) / Σ_{i≤t} exp(s_ti − m_t)   for j ≤ t,   m_t = max_{i≤t} s_ti
///     p_tj = 0                                            for j > t
///
/// Backward of `p = softmax(s)` on a row, given `dp = ∂L/∂p` (Jacobian `diag(p) − p pᵀ`):
///
///     ds_tj = p_tj · (dp_tj − Σ_i dp_ti · p_ti)
///
/// which is 0 for the masked entries (`p_tj = 0`), so the mask needs no separate backward.
/// Both run in fixed order (deterministic) and use `FastMath.exp`, so the loops vectorise.
public enum CausalSoftmax {
    /// Replaces the lower triangle (diagonal included) of each of the `T` rows of `s` (row stride
    /// `ld`) by its causal softmax and zeroes the entries above the diagonal.
    @inlinable
    public static func forward(_ s: UnsafeMutablePointer<Float>, tokens T: Int, ld: Int) {
        forward(s, rows: T, offset: 0, width: T, ld: ld)
    }

    /// The causal softmax of `rows` queries at positions `offset ..< offset + rows` over the keys
    /// of positions `0 ..< width` (incremental decoding: the earlier keys come from a `KVCache`):
    /// row `i` keeps keys `0...offset + i`, zeroes the rest. `forward(s, tokens: T, ld:)` is the
    /// square case `offset = 0`, `width = T`.
    @inlinable
    public static func forward(_ s: UnsafeMutablePointer<Float>, rows: Int, offset: Int, width: Int, ld: Int) {
        for t in 0..<rows {
            let row = s + t * ld
            let n = offset + t + 1
            let m = max(n, row)
            // Separate passes (exp and store; lane sum; scale) so that each loop vectorises.
            for j in 0..<n { row[j] = FastMath.exp(row[j] - m) }
            let inv = 1 / Kernels.sum(n, row)
            for j in 0..<n { row[j] *= inv }
            for j in n..<width { row[j] = 0 }
        }
    }

    /// max of `x[0..<n]` (n ≥ 1), in sixteen lanes. Compare-and-select (`replacing(with:where:)`)
    /// compiles to vector compares and blends; the standard library's `pointwiseMax` and `max()`
    /// go lane by lane through `Float.maximum` (NaN rules) and were most of the softmax's time.
    @inlinable
    public static func max(_ n: Int, _ x: UnsafePointer<Float>) -> Float {
        let raw = UnsafeRawPointer(x)
        var lanes = SIMD16<Float>(repeating: -.infinity)
        var i = 0
        while i + 16 <= n {
            let v = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            lanes = lanes.replacing(with: v, where: v .> lanes)
            i += 16
        }
        let h8 = lanes.lowHalf.replacing(with: lanes.highHalf, where: lanes.highHalf .> lanes.lowHalf)
        let h4 = h8.lowHalf.replacing(with: h8.highHalf, where: h8.highHalf .> h8.lowHalf)
        let h2 = h4.lowHalf.replacing(with: h4.highHalf, where: h4.highHalf .> h4.lowHalf)
        var m = h2[1] > h2[0] ? h2[1] : h2[0]
        while i < n { if x[i] > m { m = x[i] }; i += 1 }
        return m
    }

    /// Overwrites `dp` (`T` rows of stride `ld`) with `ds = p ⊙ (dp − rowsum(dp ⊙ p))` on the
    /// causal lower triangle and 0 above it; `p` holds the forward's probabilities (stride `ld`).
    @inlinable
    public static func backward(_ p: UnsafePointer<Float>, _ dp: UnsafeMutablePointer<Float>,
                                tokens T: Int, ld: Int) {
        for t in 0..<T {
            let pr = p + t * ld, dr = dp + t * ld
            let n = t + 1
            let dot = Kernels.dot(n, pr, dr)
            for j in 0..<n { dr[j] = pr[j] * (dr[j] - dot) }
            for j in n..<T { dr[j] = 0 }
        }
    }
}
