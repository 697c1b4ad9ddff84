#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

extension Fusion {
    /// Spherical linear interpolation of two models (Shoemake 1985, "Animating rotation with
    /// quaternion curves"; mergekit `slerp`), tensor by tensor, each tensor a flat vector:
    ///
    /// - `â = a/‖a‖`, `b̂ = b/‖b‖` (a norm ≤ `epsilon` leaves the vector as is, so a zero tensor
    ///   has `cos Ω = 0`, as in mergekit's `normalize`); `cos Ω = â·b̂`, in float64.
    /// - If `|cos Ω| > dotThreshold` (nearly parallel or anti-parallel, where `sin Ω → 0`), linear
    ///   interpolation `(1 − t)·a + t·b`.
    /// - Else `Ω = acos(cos Ω)` and `θ = sin((1 − t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b`, applied
    ///   to the un-normalised tensors (as mergekit does, so norms interpolate roughly linearly).
    ///
    /// `t = 0` gives `a`, `t = 1` gives `b`. `dotThreshold` defaults to `1 − 1e-6`; mergekit's
    /// `DOT_THRESHOLD` is 0.9995 (pass it to match mergekit exactly near the threshold).
    public static func slerp(_ a: NamedTensors, _ b: NamedTensors, t: Double, dotThreshold: Double = 1 - 1e-6,
                             epsilon: Double = 1e-8) throws -> NamedTensors {
        try validate([a, b])
        guard t.isFinite else { throw FusionError.invalidParameter("slerp: t must be finite, got \(t)") }
        var out: [String: [Float]] = [:]
        for name in a.names {
            let x = a.values[name]!, y = b.values[name]!
            let (ca, cb) = slerpCoefficients(x, y, t: t, dotThreshold: dotThreshold, epsilon: epsilon)
            let fa = Float(ca), fb = Float(cb)
            var r = [Float](repeating: 0, count: x.count)
            r.withUnsafeMutableBufferPointer { r in
                x.withUnsafeBufferPointer { x in
                    y.withUnsafeBufferPointer { y in
                        for j in 0..<r.count { r[j] = fa * x[j] + fb * y[j] }
                    }
                }
            }
            out[name] = r
        }
        return a.with(values: out)
    }

    /// The coefficients `(c_a, c_b)` with `slerp(a, b, t) = c_a·a + c_b·b` for one tensor.
    public static func slerpCoefficients(_ a: [Float], _ b: [Float], t: Double, dotThreshold: Double = 1 - 1e-6,
                                         epsilon: Double = 1e-8) -> (Double, Double) {
        var aa = 0.0, bb = 0.0, ab = 0.0
        a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { y in
                for j in 0..<x.count {
                    let u = Double(x[j]), v = Double(y[j])
                    aa += u * u; bb += v * v; ab += u * v
                }
            }
        }
        let na = aa.squareRoot(), nb = bb.squareRoot()
        let dot = ab / ((na > epsilon ? na : 1) * (nb > epsilon ? nb : 1))
        if abs(dot) > dotThreshold { return (1 - t, t) }
        let omega = acos(min(1, max(-1, dot)))
        let s = sin(omega)
        return (sin((1 - t) * omega) / s, sin(t * omega) / s)
    }
}
