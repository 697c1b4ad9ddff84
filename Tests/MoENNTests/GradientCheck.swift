import XCTest
import MoECore
@testable import MoENN

/// Central finite differences, `∂L/∂θᵢ ≈ (L(θᵢ + h) − L(θᵢ − h)) / 2h`, compared with an
/// analytic gradient.
///
/// Tolerance: `|analytic − numeric| ≤ atol + rtol · max(|analytic|, |numeric|)` with
/// `h = 1e-2`, `atol = 1e-3`, `rtol = 2e-2` by default. The losses are Float32 computations
/// accumulated in Float64: at h = 1e-2 the rounding noise of the quotient is about 1e-5 and the
/// truncation error O(h²) about 1e-5 for these smooth functions, so the bounds leave a margin of
/// ~100× while a wrong formula (a dropped term, a wrong sign or factor) misses them by far.
struct GradientCheck {
    var h: Float = 1e-2
    var atol: Double = 1e-3
    var rtol: Double = 2e-2

    /// Numerical gradient of `loss` with respect to every element of `tensor`.
    func numerical(_ tensor: Tensor, loss: () -> Double) -> [Double] {
        (0..<tensor.count).map { i in
            let saved = tensor.data[i]
            tensor.data[i] = saved + h
            let plus = loss()
            tensor.data[i] = saved - h
            let minus = loss()
            tensor.data[i] = saved
            return (plus - minus) / Double(2 * h)
        }
    }

    /// The indices where `analytic` and `numeric` disagree beyond the tolerance.
    func mismatches(analytic: [Double], numeric: [Double]) -> [Int] {
        precondition(analytic.count == numeric.count)
        return analytic.indices.filter { i in
            abs(analytic[i] - numeric[i]) > atol + rtol * max(abs(analytic[i]), abs(numeric[i]))
        }
    }

    /// Asserts that the analytic gradient matches the numerical one everywhere, and that it is
    /// not trivially zero (a check against an all-zero gradient proves nothing).
    func assertMatches(_ name: String, analytic: Tensor, numeric: [Double],
                       file: StaticString = #filePath, line: UInt = #line) {
        let a = analytic.array.map(Double.init)
        let bad = mismatches(analytic: a, numeric: numeric)
        XCTAssertTrue(bad.isEmpty,
                      "\(name): \(bad.count)/\(a.count) entries differ, first at \(bad.first ?? -1): analytic \(bad.first.map { a[$0] } ?? 0) vs numeric \(bad.first.map { numeric[$0] } ?? 0)",
                      file: file, line: line)
        XCTAssertGreaterThan(numeric.map(abs).max() ?? 0, 1e-4, "\(name): gradient is zero; the check is vacuous",
                             file: file, line: line)
    }
}

/// Random tensors for tests, from a fixed seed.
func randomTensor(_ shape: [Int], seed: UInt64, purpose: String, scale: Float = 1) -> Tensor {
    var rng = RNG(seed: seed, purpose: purpose)
    let t = Tensor(shape: shape)
    rng.fillNormal(t, std: scale)
    return t
}

/// `Σ w ⊙ y` in Float64: a scalar loss whose gradient with respect to `y` is `w`.
func weightedSum(_ y: UnsafePointer<Float>, _ w: Tensor) -> Double {
    var s: Double = 0
    for i in 0..<w.count { s += Double(y[i]) * Double(w.data[i]) }
    return s
}
