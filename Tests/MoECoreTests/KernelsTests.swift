import XCTest
@testable import MoECore

final class KernelsTests: XCTestCase {
    // Dyadic values (small integers and halves) keep every Float operation exact, so the
    // elementwise kernels can be compared with ==; random data checks the general case.

    func testAxpy() {
        var y: [Float] = [1, 2, 3, 4, 5]
        let x: [Float] = [10, 20, 30, 40, 50]
        Kernels.axpy(5, 0.5, x, &y)
        XCTAssertEqual(y, [6, 12, 18, 24, 30])
        Kernels.axpy(3, -1, x, &y)                 // only the first n elements
        XCTAssertEqual(y, [-4, -8, -12, 24, 30])
        let xs = randomFloats(1003, purpose: "axpy-x"), ys = randomFloats(1003, purpose: "axpy-y")
        var out = ys
        Kernels.axpy(xs.count, 0.3, xs, &out)
        for i in 0..<xs.count {
            XCTAssertEqual(Double(out[i]), Double(ys[i]) + 0.3 * Double(xs[i]), accuracy: 1e-6 * (1 + abs(Double(ys[i]))))
        }
    }

    func testTranspose() {
        // Sizes around the 16×16 tile (partial tiles at both edges), strided source and target.
        for (rows, cols) in [(1, 1), (3, 37), (17, 16), (64, 64), (33, 5)] {
            let (lda, ldb) = (cols + 3, rows + 2)
            let a = (0..<rows * lda).map { Float($0) }
            var b = [Float](repeating: -1, count: cols * ldb)
            Kernels.transpose(rows: rows, cols: cols, a, lda: lda, &b, ldb: ldb)
            for j in 0..<cols {
                for i in 0..<ldb {
                    XCTAssertEqual(b[j * ldb + i], i < rows ? a[i * lda + j] : -1, "\(rows)×\(cols) at [\(j), \(i)]")
                }
            }
        }
    }

    func testAddInPlaceAndInto() {
        var y: [Float] = [1, 2, 3, 4]
        Kernels.add(4, [0.5, -2, 10, 0], &y)
        XCTAssertEqual(y, [1.5, 0, 13, 4])
        var z = [Float](repeating: .nan, count: 4)
        Kernels.add(4, [1, 2, 3, 4], [10, 20, 30, 40], into: &z)
        XCTAssertEqual(z, [11, 22, 33, 44])
        // Output aliasing an input (z = x + z) is fine for an elementwise kernel.
        Kernels.add(4, [1, 1, 1, 1], z, into: &z)
        XCTAssertEqual(z, [12, 23, 34, 45])
    }

    func testScale() {
        var x: [Float] = [1, -2, 3, 0, 8]
        Kernels.scale(5, -0.25, &x)
        XCTAssertEqual(x, [-0.25, 0.5, -0.75, -0, -2])
        Kernels.scale(2, 0, &x)
        XCTAssertEqual(x.prefix(2), [0, 0])
        XCTAssertEqual(x.suffix(3), [-0.75, -0, -2])
    }

    func testSumAndDot() {
        XCTAssertEqual(Kernels.sum(4, [1, 2, 3, 4.5]), 10.5)
        XCTAssertEqual(Kernels.sum(0, [Float](repeating: 1, count: 1)), 0)
        XCTAssertEqual(Kernels.dot(3, [1, 2, 3], [4, -5, 6]), 12)
        XCTAssertEqual(Kernels.dot(0, [1], [1]), 0)
        let n = 10_000
        let x = randomFloats(n, purpose: "sum-x"), y = randomFloats(n, purpose: "sum-y")
        let refSum = x.reduce(0.0) { $0 + Double($1) }
        let absSum = x.reduce(0.0) { $0 + abs(Double($1)) }
        let refDot = zip(x, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let absDot = zip(x, y).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) }
        // Float accumulation: error ≲ n·ε·Σ|terms| in the worst case, ~√n·ε typically.
        XCTAssertEqual(Double(Kernels.sum(n, x)), refSum, accuracy: 1e-4 * absSum)
        XCTAssertEqual(Double(Kernels.dot(n, x, y)), refDot, accuracy: 1e-4 * absDot)
        // Fixed order: bit-identical on repeat.
        XCTAssertEqual(Kernels.sum(n, x).bitPattern, Kernels.sum(n, x).bitPattern)
    }

    func testSumOfSquaresAccumulatesInDouble() {
        let n = 1_000_000
        // Magnitudes over six decades, so that Float partial sums would lose the small terms.
        var rng = RNG(seed: 11, purpose: "test/sumsq")
        let x = (0..<n).map { _ in rng.normal() * pow(10, Float(rng.int(below: 7)) - 3) }
        // Double(x)·Double(x) is exact (48 significant bits), so this reference has only the
        // rounding of a Double sum, ~1e-16 relative per addition.
        let ref = x.reduce(0.0) { $0 + Double($1) * Double($1) }
        let got = Kernels.sumOfSquares(n, x)
        XCTAssertEqual(got, ref, accuracy: 1e-10 * ref, "relative error \(abs(got - ref) / ref)")
        XCTAssertEqual(got.bitPattern, Kernels.sumOfSquares(n, x).bitPattern)

        // Adversarial: 4096² = 2²⁴, then a million ones. In Float, 2²⁴ + 1 rounds back to 2²⁴
        // and every 1 is lost; in Double the sum is exact.
        var y = [Float](repeating: 1, count: n)
        y[0] = 4096
        XCTAssertEqual(Kernels.sumOfSquares(n, y), 16_777_216 + Double(n - 1))
        XCTAssertEqual(Kernels.sumOfSquares(0, y), 0)
        XCTAssertEqual(Kernels.sumOfSquares(3, [3, -4, 0.5]), 25.25)
    }

    func testAddRowBias() {
        var y: [Float] = [1, 2, 3,
                          4, 5, 6]
        Kernels.addRowBias(rows: 2, cols: 3, [10, 20, 30], &y)
        XCTAssertEqual(y, [11, 22, 33, 14, 25, 36])
        Kernels.addRowBias(rows: 1, cols: 3, [-1, -1, -1], &y)  // only the first row
        XCTAssertEqual(y, [10, 21, 32, 14, 25, 36])
    }

    func testAccumulateColumnSums() {
        let x: [Float] = [1, 2, 3,
                          4, 5, 6,
                          7, 8, 9.5]
        var out: [Float] = [100, 200, 300]                         // accumulates, does not overwrite
        Kernels.accumulateColumnSums(rows: 3, cols: 3, x, &out)
        XCTAssertEqual(out, [112, 215, 318.5])
        var zeros: [Float] = [0, 0]
        Kernels.accumulateColumnSums(rows: 3, cols: 2, [1, 2, 3, 4, 5, 6], &zeros)
        XCTAssertEqual(zeros, [9, 12])
        Kernels.accumulateColumnSums(rows: 0, cols: 2, [Float](repeating: .nan, count: 2), &zeros)
        XCTAssertEqual(zeros, [9, 12])
    }

    func testArgmax() {
        XCTAssertEqual(Kernels.argmax(1, [-5]), 0)
        XCTAssertEqual(Kernels.argmax(5, [1, 3, 2, 3, 0]), 1)          // tie → first
        XCTAssertEqual(Kernels.argmax(4, [7, 7, 7, 7]), 0)
        XCTAssertEqual(Kernels.argmax(4, [-4, -3, -2, -1]), 3)         // at the end
        XCTAssertEqual(Kernels.argmax(4, [9, -3, -2, -1]), 0)          // at the start
        XCTAssertEqual(Kernels.argmax(3, [-.infinity, -.infinity, -1e30]), 2)
        XCTAssertEqual(Kernels.argmax(3, [1, .infinity, .infinity]), 1)
        XCTAssertEqual(Kernels.argmax(3, [1, 2, 3, 99]), 2)             // only the first n
        XCTAssertEqual(Kernels.argmax(2, [-0.0, 0.0]), 0)              // -0 == 0: a tie
    }

    func testAllFinite() {
        let finite: [Float] = [0, -0.0, 1, -1, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
                               .leastNonzeroMagnitude, .leastNormalMagnitude / 3]
        XCTAssertTrue(Kernels.allFinite(finite.count, finite))
        XCTAssertTrue(Kernels.allFinite(0, [Float.nan]))
        for bad: Float in [.nan, -.nan, .signalingNaN, .infinity, -.infinity] {
            for position in [0, 4, finite.count] {
                var v = finite
                v.insert(bad, at: position)
                XCTAssertFalse(Kernels.allFinite(v.count, v), "\(bad) at \(position) not detected")
            }
        }
        // +∞ and −∞ together (their sum would be NaN anyway, but each alone must be caught too).
        XCTAssertFalse(Kernels.allFinite(2, [.infinity, 1]))
        XCTAssertFalse(Kernels.allFinite(2, [1, -.infinity]))
        // Large finite values whose sum overflows are still finite.
        XCTAssertTrue(Kernels.allFinite(3, [.greatestFiniteMagnitude, .greatestFiniteMagnitude, 1]))
        // One bad value among a million.
        var big = randomFloats(1_000_000, purpose: "finite")
        XCTAssertTrue(Kernels.allFinite(big.count, big))
        big[765_432] = .infinity
        XCTAssertFalse(Kernels.allFinite(big.count, big))
    }

    // MARK: Tensor conveniences built on the kernels

    func testTensorArithmetic() {
        let a = Tensor(shape: [2, 2], values: [1, 2, 3, 4])
        let b = Tensor(shape: [4], values: [10, 20, 30, 40])
        XCTAssertEqual(a.sum(), 10)
        a.add(b, scaledBy: 0.5)
        XCTAssertEqual(a.array, [6, 12, 18, 24])
        a.add(b)
        XCTAssertEqual(a.array, [16, 32, 48, 64])
        a.scale(by: 0.25)
        XCTAssertEqual(a.array, [4, 8, 12, 16])
        XCTAssertEqual(b.array, [10, 20, 30, 40])  // the operand is untouched
    }
}
