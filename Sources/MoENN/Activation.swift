import MoECore
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Pointwise non-linearities with their derivatives.
///
/// - `gelu`: exact GELU (Hendrycks & Gimpel 2016), PyTorch's `nn.GELU()` default:
///   `y = x·Φ(x) = ½x(1 + erf(x/√2))`, `y' = Φ(x) + x·φ(x)`, `φ(x) = e^{−x²/2}/√(2π)`.
/// - `relu`: `y = max(0, x)`, `y' = 1[x > 0]`.
/// - `silu` (swish): `y = x·σ(x)`, `y' = σ(x)·(1 + x·(1 − σ(x)))`.
public enum Activation: String, Codable, CaseIterable, Sendable {
    case gelu, relu, silu

    /// `y = f(x)` elementwise over `n` values (vectorised: `FastMath.erf`/`exp` replace glibc).
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int) {
        switch self {
        case .gelu:
            for i in 0..<n { let v = x[i]; y[i] = 0.5 * v * (1 + FastMath.erf(v * 0.70710678118654752)) }
        case .relu:
            for i in 0..<n { y[i] = max(x[i], 0) }
        case .silu:
            for i in 0..<n { let v = x[i]; y[i] = v / (1 + FastMath.exp(-v)) }
        }
    }

    /// `y = f(x)` and then `x ← f'(x)`, in one pass (training): erf and exp are evaluated once
    /// per value, and the backward pass is a plain product `dx = dy ⊙ f'(x)`. Reading and writing
    /// through the one pointer `x` (not an aliased pair) keeps the loop vectorisable.
    public func forwardKeepingDerivative(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int) {
        switch self {
        case .gelu:
            for i in 0..<n {
                let v = x[i]
                let cdf = 0.5 * (1 + FastMath.erf(v * 0.70710678118654752))
                y[i] = v * cdf
                x[i] = cdf + v * FastMath.exp(-0.5 * v * v) * 0.39894228040143268
            }
        case .relu:
            for i in 0..<n { let v = x[i]; y[i] = max(v, 0); x[i] = v > 0 ? 1 : 0 }
        case .silu:
            for i in 0..<n {
                let v = x[i]
                let s = 1 / (1 + FastMath.exp(-v))
                y[i] = v * s
                x[i] = s * (1 + v * (1 - s))
            }
        }
    }

    /// `dx = dy ⊙ d` with `d` from `forwardKeepingDerivative` (`dx` may alias `dy`).
    public static func backward(derivative d: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                                _ dx: UnsafeMutablePointer<Float>, count n: Int) {
        if UnsafePointer(dx) == dy {
            for i in 0..<n { dx[i] *= d[i] }
        } else {
            for i in 0..<n { dx[i] = dy[i] * d[i] }
        }
    }

    /// `dx = f'(x) ⊙ dy` elementwise (overwrites `dx`; `dx` may alias `dy`).
    public func backward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                         _ dx: UnsafeMutablePointer<Float>, count n: Int) {
        // One loop per activation and per aliasing case, so each is a plain loop LLVM
        // vectorises: in place (dx == dy) it reads and writes through one pointer, since with two
        // equal pointers the runtime overlap check would send it down the scalar path.
        let inPlace = UnsafePointer(dx) == dy
        switch (self, inPlace) {
        case (.gelu, true): for i in 0..<n { dx[i] *= Activation.geluDerivative(x[i]) }
        case (.gelu, false): for i in 0..<n { dx[i] = dy[i] * Activation.geluDerivative(x[i]) }
        case (.relu, true): for i in 0..<n { dx[i] = x[i] > 0 ? dx[i] : 0 }
        case (.relu, false): for i in 0..<n { dx[i] = x[i] > 0 ? dy[i] : 0 }
        case (.silu, true): for i in 0..<n { dx[i] *= Activation.siluDerivative(x[i]) }
        case (.silu, false): for i in 0..<n { dx[i] = dy[i] * Activation.siluDerivative(x[i]) }
        }
    }

    @inline(__always)
    static func geluDerivative(_ v: Float) -> Float {
        let cdf = 0.5 * (1 + FastMath.erf(v * 0.70710678118654752))
        let pdf = FastMath.exp(-0.5 * v * v) * 0.39894228040143268
        return cdf + v * pdf
    }

    @inline(__always)
    static func siluDerivative(_ v: Float) -> Float {
        let s = 1 / (1 + FastMath.exp(-v))
        return s * (1 + v * (1 - s))
    }
}

/// Inverted dropout (Srivastava et al. 2014): during training each element is kept with
/// probability 1 − p and scaled by 1/(1 − p), so evaluation needs no rescaling.
/// The mask comes from a counter-based stream keyed by (seed, layer name, step): the same
/// step of the same run always drops the same units, including after a resume.
public enum Dropout {
    /// Fills `mask` with 0 or 1/(1 − p) and multiplies `x` by it in place.
    public static func forward(_ x: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<Float>,
                               count n: Int, p: Float, rng: inout RNG) {
        let keep = 1 - p
        let scale = 1 / keep
        for i in 0..<n {
            mask[i] = rng.uniform() < keep ? scale : 0
            x[i] *= mask[i]
        }
    }

    /// `dx = mask ⊙ dy` in place.
    public static func backward(_ dy: UnsafeMutablePointer<Float>, mask: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n { dy[i] *= mask[i] }
    }
}
