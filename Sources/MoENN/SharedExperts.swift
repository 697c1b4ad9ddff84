import MoECore

/// The always-active shared experts of an MoE layer (DeepSeekMoE, Dai et al. 2024; Qwen-MoE):
/// S feed-forward networks that every token passes through, added to the routed output with
/// gate 1:
///
///     y_t = Σ_{e ∈ experts(t)} g_te · FFN_e(x_t) + Σ_{s<S} FFN^shared_s(x_t),
///     FFN^shared_s(x) = W2_s · act(W1_s · x + b1_s) + b2_s
///
/// Stored like the routed experts, `[S, out, in]`: `shared/w1 [S, ffn, hidden]`, `shared/b1 [S, ffn]`,
/// `shared/w2 [S, hidden, ffn]`, `shared/b2 [S, hidden]` (`ffn` = `MoEConfig.sharedFFN`). Each
/// shared expert runs one GEMM pair on all rows; their outputs are summed in expert order into a
/// separate buffer, which the layer then adds to the routed output.
///
/// Backward (per shared expert s, with dy = ∂L/∂y and a_s = act(pre_s)):
///
///     ∂W2_s += dyᵀ·a_s,  ∂b2_s += Σ_t dy_t,  d_s = (dy·W2_s) ⊙ act'(pre_s),
///     ∂W1_s += d_sᵀ·x,  ∂b1_s += Σ_t d_s,  ∂L/∂x += d_s·W1_s
public final class SharedExperts {
    public let count: Int, hidden: Int, ffn: Int
    public let w1: Parameter, b1: Parameter, w2: Parameter, b2: Parameter
    public let activation: Activation
    /// act'(pre) after a training forward (act(pre) otherwise), and the activations: `[rows, S·ffn]`,
    /// expert s in columns `s·ffn ..< (s+1)·ffn`; `dAct` is the backward's scratch.
    private let pre: Scratch, act: Scratch, dAct: Scratch
    /// Σ_s FFN^shared_s(x) of the last forward, `[rows, hidden]`.
    let out: Scratch
    private var input: UnsafePointer<Float>?
    private var rows = 0

    public init(_ prefix: String, count: Int, hidden: Int, ffn: Int, activation: Activation) {
        self.count = count
        self.hidden = hidden
        self.ffn = ffn
        self.activation = activation
        w1 = Parameter(name: prefix + "/shared/w1", shape: [count, ffn, hidden])
        b1 = Parameter(name: prefix + "/shared/b1", shape: [count, ffn], decays: false)
        w2 = Parameter(name: prefix + "/shared/w2", shape: [count, hidden, ffn])
        b2 = Parameter(name: prefix + "/shared/b2", shape: [count, hidden], decays: false)
        pre = Scratch(width: count * ffn); act = Scratch(width: count * ffn); dAct = Scratch(width: count * ffn)
        out = Scratch(width: hidden)
    }

    public var parameters: [Parameter] { [w1, b1, w2, b2] }

    /// Like the routed experts (and a PyTorch `Linear`): U(±1/√fan_in), drawn per tensor from the seed.
    public func initialize(seed: UInt64) {
        for (p, fanIn) in [(w1, hidden), (b1, hidden), (w2, ffn), (b2, ffn)] {
            let bound = 1 / Float(fanIn).squareRoot()
            var rng = RNG(seed: seed, purpose: "init/" + p.name)
            rng.fillUniform(p.value, low: -bound, high: bound)
        }
    }

    /// `out = Σ_s FFN^shared_s(x)` for `n` rows of `x [n, hidden]` (kept until `backward`).
    public func forward(_ x: UnsafePointer<Float>, rows n: Int, training: Bool) {
        pre.ensure(rows: n); act.ensure(rows: n); out.ensure(rows: n)
        input = x
        rows = n
        let width = count * ffn, y = out.data
        for s in 0..<count {
            let h = pre.data + s * ffn
            BLAS.gemm(m: n, n: ffn, k: hidden, x, w1.value.data + s * ffn * hidden, transB: true, h, ldc: width)
            for t in 0..<n { Kernels.add(ffn, b1.value.data + s * ffn, h + t * width) }
        }
        if training {
            activation.forwardKeepingDerivative(pre.data, act.data, count: n * width)  // `pre` now holds act'(pre)
        } else {
            activation.forward(pre.data, act.data, count: n * width)
        }
        for s in 0..<count {
            BLAS.gemm(m: n, n: hidden, k: ffn, act.data + s * ffn, lda: width, w2.value.data + s * hidden * ffn, transB: true,
                      beta: s == 0 ? 0 : 1, y)
        }
        for s in 0..<count { Kernels.addRowBias(rows: n, cols: hidden, b2.value.data + s * hidden, y) }
    }

    /// Accumulates the shared experts' gradients and adds their ∂L/∂x to `dx` (`[n, hidden]`),
    /// given `dy = ∂L/∂y` of the last training forward.
    public func backward(_ dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
        guard let x = input else { preconditionFailure("SharedExperts.backward before forward") }
        let n = rows, width = count * ffn
        dAct.ensure(rows: n)
        for s in 0..<count {
            let a = act.data + s * ffn, d = dAct.data + s * ffn
            BLAS.gemm(m: hidden, n: ffn, k: n, dy, transA: true, a, ldb: width, beta: 1, w2.grad.data + s * hidden * ffn)
            Kernels.accumulateColumnSums(rows: n, cols: hidden, dy, b2.grad.data + s * hidden)
            BLAS.gemm(m: n, n: ffn, k: hidden, dy, w2.value.data + s * hidden * ffn, d, ldc: width)
        }
        Activation.backward(derivative: pre.data, dAct.data, dAct.data, count: n * width)
        for s in 0..<count {
            let d = dAct.data + s * ffn
            BLAS.gemm(m: ffn, n: hidden, k: n, d, transA: true, lda: width, x, beta: 1, w1.grad.data + s * ffn * hidden)
            for t in 0..<n { Kernels.add(ffn, d + t * width, b1.grad.data + s * ffn) }
            BLAS.gemm(m: n, n: hidden, k: ffn, d, lda: width, w1.value.data + s * ffn * hidden, beta: 1, dx)
        }
    }
}
