#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Elementwise kernels and reductions over contiguous Float32 buffers.
///
/// Written as plain counted loops over raw pointers (no bounds checks, no closures) so that the
/// optimiser vectorises them; reductions accumulate in a fixed order so results are bit-identical
/// from run to run.
public enum Kernels {
    /// y += alpha · x
    @inlinable public static func axpy(_ n: Int, _ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { y[i] += alpha * x[i] }
    }

    /// y = x + y elementwise.
    @inlinable public static func add(_ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        for i in 0..<n { y[i] += x[i] }
    }

    /// z = x + y elementwise.
    @inlinable public static func add(_ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, into z: UnsafeMutablePointer<Float>) {
        for i in 0..<n { z[i] = x[i] + y[i] }
    }

    /// x *= alpha
    @inlinable public static func scale(_ n: Int, _ alpha: Float, _ x: UnsafeMutablePointer<Float>) {
        for i in 0..<n { x[i] *= alpha }
    }

    /// Σ x, in sixteen lanes then a fixed-order lane sum (a single running Float sum cannot be
    /// reordered, so the compiler would not vectorise it; this order is fixed, hence deterministic).
    @inlinable public static func sum(_ n: Int, _ x: UnsafePointer<Float>) -> Float {
        var lanes = SIMD16<Float>(repeating: 0)
        let raw = UnsafeRawPointer(x)
        var i = 0
        while i + 16 <= n {
            lanes += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        var s = lanes.sum()
        while i < n { s += x[i]; i += 1 }
        return s
    }

    /// Σ x · y, in sixteen lanes like `sum`.
    @inlinable public static func dot(_ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>) -> Float {
        var lanes = SIMD16<Float>(repeating: 0)
        let rx = UnsafeRawPointer(x), ry = UnsafeRawPointer(y)
        var i = 0
        while i + 16 <= n {
            lanes += rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
                * ry.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        var s = lanes.sum()
        while i < n { s += x[i] * y[i]; i += 1 }
        return s
    }

    /// Σ x² accumulated in Float64 (used for global gradient norms).
    ///
    /// Every square and every addition is in Double (Double(x)² is exact). Eight lanes accumulate
    /// independently, then are summed: a fixed order (bit-identical from run to run, independent of
    /// alignment) that the compiler can keep in vector registers, since IEEE rules forbid it from
    /// reassociating a single running sum by itself.
    @inlinable public static func sumOfSquares(_ n: Int, _ x: UnsafePointer<Float>) -> Double {
        var lanes = SIMD8<Double>(repeating: 0)
        let raw = UnsafeRawPointer(x)
        var i = 0
        while i + 8 <= n {
            let v = SIMD8<Double>(raw.loadUnaligned(fromByteOffset: i * MemoryLayout<Float>.stride,
                                                    as: SIMD8<Float>.self))
            lanes += v * v
            i += 8
        }
        var total = lanes.sum()
        while i < n {
            let v = Double(x[i])
            total += v * v
            i += 1
        }
        return total
    }

    /// Adds `bias[c]` to every row of `y[rows, cols]`.
    @inlinable public static func addRowBias(rows: Int, cols: Int, _ bias: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let yr = y + r * cols
            for c in 0..<cols { yr[c] += bias[c] }
        }
    }

    /// `out[c] += Σ_r x[r, c]`: column sums, used for bias gradients.
    @inlinable public static func accumulateColumnSums(rows: Int, cols: Int, _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let xr = x + r * cols
            for c in 0..<cols { out[c] += xr[c] }
        }
    }

    /// `b[j, i] = a[i, j]` for `a [rows, cols]` (row stride `lda`) into `b [cols, rows]` (row
    /// stride `ldb`), in 16×16 tiles so that both sides stay in cache lines. Each row of a tile is
    /// loaded as one vector and its lanes stored down a column of `b` (wrapping index arithmetic:
    /// checked multiplies would keep the loop from being unrolled).
    @inlinable public static func transpose(rows: Int, cols: Int, _ a: UnsafePointer<Float>, lda: Int,
                                            _ b: UnsafeMutablePointer<Float>, ldb: Int) {
        let raw = UnsafeRawPointer(a)
        var i0 = 0
        while i0 < rows {
            let i1 = Swift.min(i0 &+ 16, rows)
            var j0 = 0
            while j0 &+ 16 <= cols {
                for i in i0..<i1 {
                    let v = raw.loadUnaligned(fromByteOffset: (i &* lda &+ j0) &* 4, as: SIMD16<Float>.self)
                    let column = b + (j0 &* ldb &+ i)
                    for c in 0..<16 { column[c &* ldb] = v[c] }
                }
                j0 &+= 16
            }
            for i in i0..<i1 { for j in j0..<cols { b[j &* ldb &+ i] = a[i &* lda &+ j] } }
            i0 = i1
        }
    }

    /// Index of the largest of `n` values (first one on ties).
    @inlinable public static func argmax(_ n: Int, _ x: UnsafePointer<Float>) -> Int {
        var best = 0
        var v = x[0]
        for i in 1..<n where x[i] > v { v = x[i]; best = i }
        return best
    }

    /// Whether every value is finite (no NaN, no ±∞).
    @inlinable public static func allFinite(_ n: Int, _ x: UnsafePointer<Float>) -> Bool {
        // x · 0 is 0 for finite x and NaN for NaN or ±∞; any NaN poisons the lanes.
        var lanes = SIMD16<Float>(repeating: 0)
        let raw = UnsafeRawPointer(x)
        var i = 0
        while i + 16 <= n {
            lanes += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self) * 0
            i += 16
        }
        var bad = lanes.sum()
        while i < n { bad += x[i] * 0; i += 1 }
        return !bad.isNaN
    }
}

extension Tensor {
    /// Σ of all elements.
    public func sum() -> Float { Kernels.sum(count, data) }
    /// self += alpha · other
    public func add(_ other: Tensor, scaledBy alpha: Float = 1) {
        precondition(other.count == count)
        Kernels.axpy(count, alpha, other.data, data)
    }
    /// self *= alpha
    public func scale(by alpha: Float) { Kernels.scale(count, alpha, data) }
    /// Largest absolute difference to `other` (for tests and checks).
    public func maxAbsDifference(_ other: Tensor) -> Float {
        precondition(other.count == count)
        var m: Float = 0
        for i in 0..<count { m = Swift.max(m, Swift.abs(data[i] - other.data[i])) }
        return m
    }
}
