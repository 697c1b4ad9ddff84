import XCTest
@testable import MoECore
#if canImport(Glibc)
import Glibc
#endif

/// The vectorised exp and erf against glibc in Float64, over dense grids and the edges.
final class FastMathTests: XCTestCase {
    private func grid(_ lo: Float, _ hi: Float, _ n: Int) -> [Float] {
        (0..<n).map { lo + (hi - lo) * Float($0) / Float(n - 1) }
    }

    private func apply(_ xs: [Float], _ f: (Float) -> Float) -> [Float] { xs.map(f) }

    func testExpRelativeErrorIsWithinAFewUlp() {
        let xs = grid(-87, 88.5, 200_001)
        let ys = apply(xs, FastMath.exp)
        var worst = 0.0
        for (x, y) in zip(xs, ys) {
            let ref = Foundation.exp(Double(x))
            worst = max(worst, abs(Double(y) - ref) / ref)
        }
        XCTAssertLessThan(worst, 4 * Double(Float.ulpOfOne), "max relative error \(worst)")
    }

    func testExpEdges() {
        let ys = apply([0, 1, -1, 89, 1000, -88, -1000, .infinity, -.infinity], FastMath.exp)
        XCTAssertEqual(ys[0], 1)
        XCTAssertEqual(Double(ys[1]), M_E, accuracy: 1e-6)
        XCTAssertEqual(Double(ys[2]), 1 / M_E, accuracy: 1e-7)
        XCTAssertEqual(ys[3], .infinity)
        XCTAssertEqual(ys[4], .infinity)
        XCTAssertEqual(ys[5], 0)
        XCTAssertEqual(ys[6], 0)
        XCTAssertEqual(ys[7], .infinity)
        XCTAssertEqual(ys[8], 0)
    }

    func testErfAbsoluteErrorBelow5e7() {
        let xs = grid(-6, 6, 200_001)
        let ys = apply(xs, FastMath.erf)
        var worst = 0.0
        for (x, y) in zip(xs, ys) { worst = max(worst, abs(Double(y) - Foundation.erf(Double(x)))) }
        XCTAssertLessThan(worst, 5e-7, "max absolute error \(worst)")
        XCTAssertEqual(apply([0], FastMath.erf)[0], 0)
    }

    /// A vectorised loop (as in the GELU layer) gives the same bits as the scalar function.
    func testVectorisedLoopMatchesScalarBits() {
        let xs = grid(-5, 5, 1037)
        var out = [Float](repeating: 0, count: xs.count)
        xs.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { y in
                for i in 0..<xs.count { y[i] = FastMath.exp(x[i]) * FastMath.erf(x[i]) }
            }
        }
        for (i, x) in xs.enumerated() {
            XCTAssertEqual(out[i].bitPattern, (FastMath.exp(x) * FastMath.erf(x)).bitPattern, "x = \(x)")
        }
    }
}

import Foundation
