import CBLAS

/// Matrix products through OpenBLAS's `cblas_sgemm`: the only place moe-run multiplies matrices.
///
/// Everything is row-major (C order, like PyTorch). Transposed operands are passed to BLAS
/// as transpose flags, never copied.
public enum BLAS {
    /// `C[m, n] = alpha · op(A) · op(B) + beta · C`, where `op(A)` is `[m, k]` and `op(B)` is `[k, n]`.
    ///
    /// - Parameters:
    ///   - transA: `A` is stored `[k, m]` and used transposed.
    ///   - transB: `B` is stored `[n, k]` and used transposed (e.g. a PyTorch `Linear.weight`).
    ///   - lda, ldb, ldc: row strides of the stored matrices; default to their dense widths.
    @inlinable
    public static func gemm(m: Int, n: Int, k: Int,
                            alpha: Float = 1,
                            _ a: UnsafePointer<Float>, transA: Bool = false, lda: Int? = nil,
                            _ b: UnsafePointer<Float>, transB: Bool = false, ldb: Int? = nil,
                            beta: Float = 0,
                            _ c: UnsafeMutablePointer<Float>, ldc: Int? = nil) {
        if m == 0 || n == 0 { return }
        let lda = lda ?? (transA ? m : k)
        let ldb = ldb ?? (transB ? k : n)
        let ldc = ldc ?? n
        if k == 0 {
            // C = beta · C (BLAS would do the same; spelled out so the empty case is obvious).
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        cblas_sgemm(CblasRowMajor,
                    transA ? CblasTrans : CblasNoTrans,
                    transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha,
                    a, Int32(max(lda, 1)), b, Int32(max(ldb, 1)), beta, c, Int32(max(ldc, 1)))
    }

    /// `C = alpha · op(A) · op(B) + beta · C` on tensors viewed as matrices: a tensor of shape
    /// `[d0, d1, …]` is the matrix `[d0, d1·…]`.
    public static func matmul(_ a: Tensor, transA: Bool = false,
                              _ b: Tensor, transB: Bool = false,
                              into c: Tensor, alpha: Float = 1, beta: Float = 0) {
        let (ar, ac) = (a.rows, a.rowStride)
        let (br, bc) = (b.rows, b.rowStride)
        let (m, k) = transA ? (ac, ar) : (ar, ac)
        let (k2, n) = transB ? (bc, br) : (br, bc)
        precondition(k == k2, "matmul: inner dimensions differ: \(a.shape)\(transA ? "ᵀ" : "") · \(b.shape)\(transB ? "ᵀ" : "")")
        precondition(c.rows == m && c.rowStride == n, "matmul: result \(c.shape) is not [\(m), \(n)]")
        gemm(m: m, n: n, k: k, alpha: alpha, a.data, transA: transA, b.data, transB: transB,
             beta: beta, c.data)
    }
}

/// What OpenBLAS reports about itself.
public enum BLASInfo {
    /// The kernel family OpenBLAS chose at load time, e.g. "SkylakeX", "Haswell", "Prescott".
    public static var coreName: String { String(cString: openblas_get_corename()) }
    /// OpenBLAS's build configuration string (version, threading, max threads).
    public static var config: String { String(cString: openblas_get_config()) }
    /// Threads OpenBLAS uses for one call.
    public static var threads: Int { Int(openblas_get_num_threads()) }
    /// Changes the number of threads OpenBLAS uses from now on.
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
}
