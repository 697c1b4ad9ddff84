import MoECore

/// Causal multi-head self-attention (Vaswani et al. 2017, "Attention Is All You Need"), as in
/// GPT-2 / nanoGPT's `CausalSelfAttention`, with the checkpoint layout of ARCHITECTURE §5.3:
///
///     <prefix>/qkv/{weight [3·H, H], bias [3·H]}   rows 0..H-1 → q, H..2H-1 → k, 2H..3H-1 → v;
///                                                  head j of each is its rows j·d ..< (j+1)·d
///     <prefix>/out/{weight [H, H], bias [H]}
///
/// For one sequence `x [T, H]` and head `j` (d = H / heads):
///
///     [q k v] = x · W_qkvᵀ + b_qkv                                   (one GEMM over all rows)
///     S_j = q_j · k_jᵀ / √d,   P_j = softmax(S_j + M),   M_ts = −∞ for s > t (causal mask)
///     A_j = P_j · v_j,         A = [A_0 … A_{heads−1}]                 (heads concatenated)
///     y = A · W_outᵀ + b_out
///
/// Backward, per (sequence, head), given `dA_j` from the output projection's backward:
///
///     dP = dA_j · v_jᵀ,   dS = P ⊙ (dP − rowsum(dP ⊙ P)),
///     dq_j = dS · k_j / √d,   dk_j = dSᵀ · q_j / √d,   dv_j = P_jᵀ · dA_j
///
/// Every product is one `cblas_sgemm` per (sequence, head) on strided views of the `[B·T, 3H]`
/// qkv buffer (no copies, no per-token loop); the mask and the 1/√d are fused into the softmax
/// (`CausalSoftmax`) and the GEMM's alpha. The (sequence, head) pairs are independent and too small
/// for OpenBLAS to thread (it runs a 64×64×32 product on one core), so `ParallelFor` spreads them
/// over the process's threads; the projections are OpenBLAS's to thread.
///
/// Memory: the probabilities `P [B, heads, T, T]` are kept for backward (as PyTorch's eager
/// attention does); every buffer grows to the largest batch seen and is then reused, so steps
/// after the first allocate nothing. No attention-probability dropout (nanoGPT's `attn_dropout`):
/// the model applies residual dropout itself.
///
/// Initialisation (GPT-2, Radford et al. 2019; nanoGPT): weights ~ N(0, weightStd²) (0.02),
/// except the output projection ~ N(0, outStd²) — the model passes `0.02/√(2·blocks)`, scaling the
/// residual branches by depth — and zero biases.
public final class CausalSelfAttention {
    public let hidden: Int
    public let heads: Int
    /// Width of one head, `hidden / heads`.
    public let headDim: Int
    public let qkv: Linear
    public let out: Linear

    private var input: UnsafePointer<Float>?
    private var batch = 0, tokens = 0
    private let qkvBuffer: Scratch       // [B·T, 3H]
    private let probabilities: Scratch   // [B, heads, T, T] as one flat column
    private let attended: Scratch        // A [B·T, H]
    private let gradAttended: Scratch    // dA [B·T, H]
    private let gradQKV: Scratch         // [B·T, 3H]
    private let gradScores: Scratch      // per thread: dP, then dS, and a transpose, for one (sequence, head): 2 × [T, T]

    /// A layer named `<prefix>/qkv/…` and `<prefix>/out/…`, initialised from `seed` (each
    /// parameter from its own stream `init/<name>`, like every other layer).
    public init(_ prefix: String, hidden: Int, heads: Int, seed: UInt64,
                weightStd: Float = 0.02, outStd: Float) {
        precondition(heads > 0 && hidden % heads == 0, "CausalSelfAttention: heads \(heads) must divide hidden \(hidden)")
        self.hidden = hidden
        self.heads = heads
        headDim = hidden / heads
        qkv = Linear(prefix + "/qkv", in: hidden, out: 3 * hidden)
        out = Linear(prefix + "/out", in: hidden, out: hidden)
        qkvBuffer = Scratch(width: 3 * hidden)
        probabilities = Scratch(width: 1)
        attended = Scratch(width: hidden)
        gradAttended = Scratch(width: hidden)
        gradQKV = Scratch(width: 3 * hidden)
        gradScores = Scratch(width: 1)
        initialize(seed: seed, weightStd: weightStd, outStd: outStd)
    }

    public var parameters: [Parameter] { qkv.parameters + out.parameters }

    /// GPT-2's initialisation: `qkv/weight ~ N(0, weightStd²)`, `out/weight ~ N(0, outStd²)`,
    /// biases 0.
    public func initialize(seed: UInt64, weightStd: Float = 0.02, outStd: Float) {
        Initializer.normal(qkv.weight, std: weightStd, seed: seed)
        Initializer.normal(out.weight, std: outStd, seed: seed)
        qkv.bias.value.zero()
        out.bias.value.zero()
    }

    /// `y [batch·T, H]` from `x [batch·T, H]` (the T rows of each sequence contiguous).
    /// `x` must stay valid until `backward`.
    public func forward(_ x: UnsafePointer<Float>, batch: Int, tokens T: Int, into y: UnsafeMutablePointer<Float>) {
        let n = batch * T, h = hidden, d = headDim
        qkvBuffer.ensure(rows: n)
        attended.ensure(rows: n)
        probabilities.ensure(rows: batch * heads * T * T)
        input = x
        self.batch = batch
        tokens = T
        let q = qkvBuffer.data, a = attended.data
        qkv.forward(x, rows: n, into: q)
        let scale = 1 / Float(d).squareRoot()
        ParallelFor.ranges(batch * heads) { _, pairs in
            for pair in pairs {
                let b = pair / heads, j = pair % heads
                let rows = q + b * T * 3 * h
                let qj = rows + j * d, kj = rows + h + j * d, vj = rows + 2 * h + j * d
                let p = probabilities.data + pair * T * T
                // S = q·kᵀ/√d, then P = causal softmax(S) in place.
                BLAS.gemm(m: T, n: T, k: d, alpha: scale, qj, lda: 3 * h, kj, transB: true, ldb: 3 * h, p)
                CausalSoftmax.forward(p, tokens: T, ld: T)
                // A_j = P·v, written into head j's columns of A.
                BLAS.gemm(m: T, n: d, k: T, p, vj, ldb: 3 * h, a + b * T * h + j * d, ldc: h)
            }
        }
        out.forward(a, rows: n, into: y)
    }

    /// Given `dy = ∂L/∂y` of the last forward: accumulates every parameter's gradient and writes
    /// (does not accumulate) `dx [batch·T, H]`.
    public func backward(_ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        guard let x = input else { preconditionFailure("CausalSelfAttention.backward before forward") }
        let T = tokens, n = batch * T, h = hidden, d = headDim
        gradAttended.ensure(rows: n)
        gradQKV.ensure(rows: n)
        gradScores.ensure(rows: ParallelFor.threads * 2 * T * T)
        let da = gradAttended.data, dq = gradQKV.data, scores = gradScores.data
        out.backward(attended.data, dy, rows: n, dx: da)
        let scale = 1 / Float(d).squareRoot()
        ParallelFor.ranges(batch * heads) { piece, pairs in
            let ds = scores + piece * 2 * T * T, pt = ds + T * T
            for pair in pairs {
                let b = pair / heads, j = pair % heads
                let rows = qkvBuffer.data + b * T * 3 * h, drows = dq + b * T * 3 * h
                let qj = rows + j * d, kj = rows + h + j * d, vj = rows + 2 * h + j * d
                let p = probabilities.data + pair * T * T
                let daj = da + b * T * h + j * d
                // The two products with a transposed T×T left operand (dv, dk) take an explicit
                // transpose: OpenBLAS's small-matrix kernels cover NN and NT, not TN, which costs
                // packing copies and a beta pass per call.
                // dv = Pᵀ·dA
                Kernels.transpose(rows: T, cols: T, p, lda: T, pt, ldb: T)
                BLAS.gemm(m: T, n: d, k: T, pt, daj, ldb: h, drows + 2 * h + j * d, ldc: 3 * h)
                // dP = dA·vᵀ, then dS = P ⊙ (dP − rowsum(dP ⊙ P)) in place.
                BLAS.gemm(m: T, n: T, k: d, daj, lda: h, vj, transB: true, ldb: 3 * h, ds)
                CausalSoftmax.backward(p, ds, tokens: T, ld: T)
                // dq = dS·k/√d, dk = dSᵀ·q/√d
                BLAS.gemm(m: T, n: d, k: T, alpha: scale, ds, kj, ldb: 3 * h, drows + j * d, ldc: 3 * h)
                Kernels.transpose(rows: T, cols: T, ds, lda: T, pt, ldb: T)
                BLAS.gemm(m: T, n: d, k: T, alpha: scale, pt, qj, ldb: 3 * h, drows + h + j * d, ldc: 3 * h)
            }
        }
        qkv.backward(x, dq, rows: n, dx: dx)
    }
}
