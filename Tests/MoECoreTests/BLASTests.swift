import XCTest
@testable import MoECore

/// `BLAS.gemm` / `BLAS.matmul` against a naive triple loop in Double.
final class BLASTests: XCTestCase {
    /// One stored row-major matrix, possibly a submatrix of a wider buffer (`ld` > `cols`).
    /// Padding holds NaN so that reading it (a wrong stride) poisons the result.
    struct Stored {
        var rows: Int, cols: Int, ld: Int
        var values: [Float]
        init(rows: Int, cols: Int, pad: Int, purpose: String, padValue: Float = .nan) {
            self.rows = rows; self.cols = cols; self.ld = cols + pad
            let dense = randomFloats(rows * cols, purpose: purpose)
            values = [Float](repeating: padValue, count: max(rows * ld, 1))
            for r in 0..<rows { for c in 0..<cols { values[r * ld + c] = dense[r * cols + c] } }
        }
        subscript(r: Int, c: Int) -> Double { Double(values[r * ld + c]) }
    }

    struct Case: CustomStringConvertible {
        var m: Int, n: Int, k: Int
        var transA = false, transB = false
        var alpha: Float = 1, beta: Float = 0
        var padA = 0, padB = 0, padC = 0
        /// Pass lda/ldb/ldc explicitly even without padding (exercises both code paths).
        var explicitLD = false
        var description: String {
            "m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB) α=\(alpha) β=\(beta) pads=\(padA),\(padB),\(padC)"
        }
    }

    /// Runs `BLAS.gemm` on random operands and checks every element of `C` (including its
    /// padding, which must be untouched) against the Double reference with relative tolerance
    /// 1e-5 of Σ|α·a·b| + |β·c| (the scale of the terms, so cancellation cannot excuse errors).
    func check(_ t: Case, file: StaticString = #filePath, line: UInt = #line) {
        let a = Stored(rows: t.transA ? t.k : t.m, cols: t.transA ? t.m : t.k, pad: t.padA, purpose: "A\(t)")
        let b = Stored(rows: t.transB ? t.n : t.k, cols: t.transB ? t.k : t.n, pad: t.padB, purpose: "B\(t)")
        let sentinel: Float = -777.25
        var c = Stored(rows: t.m, cols: t.n, pad: t.padC, purpose: "C\(t)", padValue: sentinel)
        let c0 = c
        let useLD = t.explicitLD || t.padA + t.padB + t.padC > 0
        a.values.withUnsafeBufferPointer { pa in
            b.values.withUnsafeBufferPointer { pb in
                c.values.withUnsafeMutableBufferPointer { pc in
                    BLAS.gemm(m: t.m, n: t.n, k: t.k, alpha: t.alpha,
                              pa.baseAddress!, transA: t.transA, lda: useLD ? a.ld : nil,
                              pb.baseAddress!, transB: t.transB, ldb: useLD ? b.ld : nil,
                              beta: t.beta, pc.baseAddress!, ldc: useLD ? c.ld : nil)
                }
            }
        }
        var worst = 0.0
        for i in 0..<t.m {
            for j in 0..<t.n {
                var s = 0.0, scale = 0.0
                for p in 0..<t.k {
                    let x = t.transA ? a[p, i] : a[i, p]
                    let y = t.transB ? b[j, p] : b[p, j]
                    s += x * y
                    scale += abs(x * y)
                }
                let old = c0[i, j]
                let ref = Double(t.alpha) * s + (t.beta == 0 ? 0 : Double(t.beta) * old)
                let bound = abs(Double(t.alpha)) * scale + abs(Double(t.beta) * old)
                let err = abs(c[i, j] - ref)
                worst = max(worst, err / max(bound, .leastNormalMagnitude))
                if !(err <= 1e-5 * bound) {
                    XCTFail("\(t): C[\(i),\(j)] = \(c[i, j]), expected \(ref)", file: file, line: line)
                    return
                }
            }
            for j in t.n..<c.ld where c.values[i * c.ld + j] != sentinel {
                XCTFail("\(t): padding C[\(i),\(j)] was overwritten", file: file, line: line)
                return
            }
        }
        XCTAssertLessThan(worst, 1e-5, "\(t)", file: file, line: line)
    }

    func testAllTransposeCombinationsSmallNonSquare() {
        for tA in [false, true] { for tB in [false, true] {
            check(Case(m: 7, n: 5, k: 3, transA: tA, transB: tB))
            check(Case(m: 7, n: 5, k: 3, transA: tA, transB: tB, explicitLD: true))
            check(Case(m: 1, n: 1, k: 1, transA: tA, transB: tB))
            check(Case(m: 1, n: 9, k: 4, transA: tA, transB: tB))   // a single row (GEMV-like)
        } }
    }

    func testAllTransposeCombinationsLarger() {
        for tA in [false, true] { for tB in [false, true] {
            check(Case(m: 33, n: 17, k: 65, transA: tA, transB: tB))
            check(Case(m: 65, n: 33, k: 17, transA: tA, transB: tB))
        } }
    }

    func testAlphaAndBetaAccumulate() {
        for tA in [false, true] { for tB in [false, true] {
            check(Case(m: 7, n: 5, k: 3, transA: tA, transB: tB, alpha: 1, beta: 1))
            check(Case(m: 33, n: 17, k: 65, transA: tA, transB: tB, alpha: -2, beta: 0.5))
            check(Case(m: 7, n: 5, k: 3, transA: tA, transB: tB, alpha: 0.25, beta: 0))
            check(Case(m: 7, n: 5, k: 3, transA: tA, transB: tB, alpha: 0, beta: 3))
        } }
        // beta = 1 really adds: two calls equal one call with alpha = 2.
        let a: [Float] = [1, 2, 3, 4, 5, 6]          // [2, 3]
        let b: [Float] = [1, 0, 0, 1, 1, 1]          // [3, 2]
        var c = [Float](repeating: 0, count: 4)
        BLAS.gemm(m: 2, n: 2, k: 3, a, b, c: &c)
        BLAS.gemm(m: 2, n: 2, k: 3, a, b, beta: 1, c: &c)
        XCTAssertEqual(c, [8, 10, 20, 22])           // 2 · [[4, 5], [10, 11]]
    }

    func testBetaZeroIgnoresGarbageInC() {
        // BLAS convention: with beta = 0, C is write-only (NaN in C must not leak through).
        let a: [Float] = [1, 2, 3, 4], b: [Float] = [1, 1, 1, 1]
        var c = [Float](repeating: .nan, count: 4)
        BLAS.gemm(m: 2, n: 2, k: 2, a, b, c: &c)
        XCTAssertEqual(c, [3, 3, 7, 7])
    }

    func testLeadingDimensionsSubmatrices() {
        for tA in [false, true] { for tB in [false, true] {
            check(Case(m: 7, n: 5, k: 3, transA: tA, transB: tB, padA: 2, padB: 3, padC: 4))
            check(Case(m: 33, n: 17, k: 65, transA: tA, transB: tB, alpha: 1.5, beta: -1,
                       padA: 1, padB: 7, padC: 5))
            check(Case(m: 7, n: 5, k: 3, transA: tA, transB: tB, padC: 3))
        } }
    }

    func testEmptyInnerDimensionScalesC() {
        // k = 0: C = beta · C, A and B never read (they may be tiny), padding untouched.
        check(Case(m: 4, n: 3, k: 0, beta: 0))
        check(Case(m: 4, n: 3, k: 0, beta: 2.5, padC: 2))
        check(Case(m: 4, n: 3, k: 0, transA: true, transB: true, alpha: 3, beta: -1))
        var c: [Float] = [1, .nan, 3, 4]
        BLAS.gemm(m: 2, n: 2, k: 0, [Float](), [Float](), c: &c)
        XCTAssertEqual(c, [0, 0, 0, 0])
        c = [1, 2, 3, 4]
        BLAS.gemm(m: 2, n: 2, k: 0, [Float](), [Float](), beta: 2, c: &c)
        XCTAssertEqual(c, [2, 4, 6, 8])
    }

    func testEmptyOutputIsNoOp() {
        var c: [Float] = [1, 2, 3]
        BLAS.gemm(m: 0, n: 3, k: 2, [Float](), [Float](repeating: 1, count: 6), c: &c)
        BLAS.gemm(m: 3, n: 0, k: 2, [Float](repeating: 1, count: 6), [Float](), c: &c)
        XCTAssertEqual(c, [1, 2, 3])
    }

    // MARK: matmul on tensors

    func reference(_ a: Tensor, transA: Bool, _ b: Tensor, transB: Bool, c0: [Float],
                   alpha: Float, beta: Float) -> (value: [Double], bound: [Double]) {
        let (m, k) = transA ? (a.rowStride, a.rows) : (a.rows, a.rowStride)
        let n = transB ? b.rows : b.rowStride
        var value = [Double](repeating: 0, count: m * n), bound = value
        for i in 0..<m { for j in 0..<n {
            var s = 0.0, sc = 0.0
            for p in 0..<k {
                let x = Double(transA ? a.data[p * m + i] : a.data[i * k + p])
                let y = Double(transB ? b.data[j * k + p] : b.data[p * n + j])
                s += x * y; sc += abs(x * y)
            }
            let old = Double(c0[i * n + j])
            value[i * n + j] = Double(alpha) * s + (beta == 0 ? 0 : Double(beta) * old)
            bound[i * n + j] = abs(Double(alpha)) * sc + abs(Double(beta) * old)
        } }
        return (value, bound)
    }

    func checkMatmul(aShape: [Int], transA: Bool, bShape: [Int], transB: Bool, cShape: [Int],
                     alpha: Float = 1, beta: Float = 0, line: UInt = #line) {
        let a = Tensor(shape: aShape, values: randomFloats(aShape.reduce(1, *), purpose: "mmA\(aShape)"))
        let b = Tensor(shape: bShape, values: randomFloats(bShape.reduce(1, *), purpose: "mmB\(bShape)"))
        let c = Tensor(shape: cShape, values: randomFloats(cShape.reduce(1, *), purpose: "mmC\(cShape)"))
        let c0 = c.array
        BLAS.matmul(a, transA: transA, b, transB: transB, into: c, alpha: alpha, beta: beta)
        let (ref, bound) = reference(a, transA: transA, b, transB: transB, c0: c0, alpha: alpha, beta: beta)
        XCTAssertEqual(ref.count, c.count, line: line)
        for i in 0..<c.count where !(abs(Double(c[i]) - ref[i]) <= 1e-5 * bound[i]) {
            XCTFail("matmul \(aShape)\(transA ? "ᵀ" : "")·\(bShape)\(transB ? "ᵀ" : ""): element \(i) = \(c[i]), expected \(ref[i])", line: line)
            return
        }
    }

    func testMatmulAllTransposes() {
        let (m, n, k) = (33, 17, 65)
        for tA in [false, true] { for tB in [false, true] {
            checkMatmul(aShape: tA ? [k, m] : [m, k], transA: tA, bShape: tB ? [n, k] : [k, n], transB: tB,
                        cShape: [m, n])
            checkMatmul(aShape: tA ? [3, 7] : [7, 3], transA: tA, bShape: tB ? [5, 3] : [3, 5], transB: tB,
                        cShape: [7, 5], alpha: -1.5, beta: 0.75)
        } }
    }

    func testMatmulViewsHigherRankAsMatrix() {
        // [2, 3, 4] is the matrix [2, 12]; a [B, T, C] activation times a [C', C]ᵀ weight, etc.
        checkMatmul(aShape: [2, 3, 4], transA: false, bShape: [12, 5], transB: false, cShape: [2, 5])
        checkMatmul(aShape: [6, 4], transA: false, bShape: [5, 2, 2], transB: true, cShape: [6, 5])
        // A rank-1 [4] is the column [4, 1]: times [1, 3] it is an outer product.
        checkMatmul(aShape: [4], transA: false, bShape: [1, 3], transB: false, cShape: [4, 3], alpha: 2)
    }

    func testMatmulEmptyShapes() {
        // An expert that received no tokens: [0, d] · [d, h] → [0, h] must be a no-op, not a crash.
        checkMatmul(aShape: [0, 4], transA: false, bShape: [4, 3], transB: false, cShape: [0, 3])
        checkMatmul(aShape: [0, 4], transA: false, bShape: [3, 4], transB: true, cShape: [0, 3])
        // Gradient of a weight from zero tokens: [0, d]ᵀ · [0, h] → [d, h] = beta · C.
        checkMatmul(aShape: [0, 4], transA: true, bShape: [0, 3], transB: false, cShape: [4, 3], beta: 1)
        checkMatmul(aShape: [0, 4], transA: true, bShape: [0, 3], transB: false, cShape: [4, 3], beta: 0)
        checkMatmul(aShape: [3, 0], transA: false, bShape: [0, 2], transB: false, cShape: [3, 2], beta: 0.5)
    }
}

private extension BLAS {
    /// Dense, default-stride gemm on arrays (test convenience).
    static func gemm(m: Int, n: Int, k: Int, alpha: Float = 1, _ a: [Float], _ b: [Float],
                     beta: Float = 0, c: inout [Float]) {
        let a = a.isEmpty ? [0] : a, b = b.isEmpty ? [0] : b
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    gemm(m: m, n: n, k: k, alpha: alpha, pa.baseAddress!, pb.baseAddress!,
                         beta: beta, pc.baseAddress!)
                }
            }
        }
    }
}
