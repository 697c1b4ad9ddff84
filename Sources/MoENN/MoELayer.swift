import MoECore
#if canImport(Glibc)
import Glibc
#endif

/// A sparse Mixture-of-Experts feed-forward layer (Shazeer et al. 2017; GShard; Switch):
///
///     y_t = Σ_{e ∈ experts(t)} g_te · FFN_e(x_t),   FFN_e(x) = W2_e · act(W1_e · x + b1_e) + b2_e
///
/// Experts are stored `[E, out, in]` (`experts/w1 [E, ffn, hidden]`, `experts/w2 [E, hidden, ffn]`),
/// as in mlx-swift; `ffn` is the width of one expert (`MoEConfig.expertFFN`, default the
/// model's). Dispatch is grouped: the router's assignments are ordered by expert, the
/// tokens' rows gathered into one buffer, and each expert runs one GEMM pair on its contiguous
/// rows (never a per-token loop); outputs are scaled by their gates and scattered back. A token
/// whose every assignment was dropped by capacity gets 0 here, so the residual passes it unchanged.
/// With `MoEConfig.sharedExperts` S > 0, the S always-active shared experts' sum (`SharedExperts`)
/// is added to every row with gate 1, after the routed combine.
public final class MoELayer: FeedForwardLayer {
    public let config: MoEConfig
    public let router: MoERouter
    public let w1: Parameter, b1: Parameter, w2: Parameter, b2: Parameter
    public let activation: Activation
    /// The always-active shared experts (`MoEConfig.sharedExperts > 0`), added with gate 1; nil when none.
    public let shared: SharedExperts?
    /// Widths of a token row and of one expert's hidden layer.
    public let hidden: Int, ffn: Int
    private let gathered: Scratch, out: Scratch
    // The local dispatcher's buffers: act'(pre), the activations, and their gradient.
    let pre: Scratch, act: Scratch, dAct: Scratch
    private let dOut: Scratch, dIn: Scratch
    private var dGate: [Float] = []
    private var trainedForward = false
    /// When set, each forward/backward adds its phase times here (for `make bench`).
    public var profile: MoEProfile?

    public init(_ prefix: String, index: Int, hidden: Int, ffn: Int, activation: Activation, config: MoEConfig, moeLayers: Int) {
        self.config = config
        self.hidden = hidden
        self.ffn = ffn
        self.activation = activation
        let e = config.experts
        router = MoERouter(prefix, index: index, hidden: hidden, config: config, moeLayers: moeLayers)
        w1 = Parameter(name: prefix + "/experts/w1", shape: [e, ffn, hidden])
        b1 = Parameter(name: prefix + "/experts/b1", shape: [e, ffn], decays: false)
        w2 = Parameter(name: prefix + "/experts/w2", shape: [e, hidden, ffn])
        b2 = Parameter(name: prefix + "/experts/b2", shape: [e, hidden], decays: false)
        gathered = Scratch(width: hidden); pre = Scratch(width: ffn); act = Scratch(width: ffn); out = Scratch(width: hidden)
        dOut = Scratch(width: hidden); dAct = Scratch(width: ffn); dIn = Scratch(width: hidden)
        shared = config.sharedExperts > 0
            ? SharedExperts(prefix, count: config.sharedExperts, hidden: hidden, ffn: config.sharedFFN ?? ffn, activation: activation) : nil
    }

    /// Router, routed experts, then the shared experts (`moe/shared/*`) when there are any.
    public var parameters: [Parameter] { router.parameters + [w1, b1, w2, b2] + (shared?.parameters ?? []) }

    /// Each expert like a PyTorch `Linear`: U(±1/√fan_in), drawn per tensor from the seed.
    public func initialize(seed: UInt64) {
        router.initialize(seed: seed)
        for (p, fanIn) in [(w1, hidden), (b1, hidden), (w2, ffn), (b2, ffn)] {
            let bound = 1 / Float(fanIn).squareRoot()
            var rng = RNG(seed: seed, purpose: "init/" + p.name)
            rng.fillUniform(p.value, low: -bound, high: bound)
        }
        shared?.initialize(seed: seed)
    }

    /// `weighted aux + z loss` of the last forward, already scaled by the coefficients / layers.
    public var auxiliaryLoss: Float { router.auxScale * router.auxLoss + router.zScale * router.zLoss }

    /// Where the experts run (`ExpertDispatch.swift`): here by default; expert parallelism
    /// (`parallelism.mode: expert`) swaps in a dispatcher that runs each expert on its owner rank.
    public var dispatcher: any ExpertDispatcher = LocalExpertDispatcher()

    public func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                        context: ForwardContext) {
        var clock = profile.map { _ in MoEProfile.now() }
        trainedForward = context.training
        router.forward(x, rows: n, context: context)
        profile?.add(.routerForward, since: &clock)
        let r = router.routing
        let a = r.total
        gathered.ensure(rows: a); pre.ensure(rows: a); act.ensure(rows: a); out.ensure(rows: a)
        let xg = gathered.data
        for i in 0..<a { (xg + i * hidden).update(from: x + r.token[i] * hidden, count: hidden) }
        profile?.add(.gather, since: &clock)
        dispatcher.forward(self, input: xg, output: out.data, training: context.training)
        profile?.add(.expertsForward, since: &clock)
        y.update(repeating: 0, count: n * hidden)
        for i in 0..<a { Kernels.axpy(hidden, r.gate[i], out.data + i * hidden, y + r.token[i] * hidden) }
        if let shared {
            shared.forward(x, rows: n, training: context.training)
            Kernels.add(n * hidden, shared.out.data, y)  // gate 1
        }
        profile?.add(.combine, since: &clock)
    }

    public func backward(_ dy: UnsafePointer<Float>, rows n: Int, dx: UnsafeMutablePointer<Float>) {
        precondition(trainedForward, "MoELayer.backward needs a forward with training: true (it keeps act'(pre))")
        var clock = profile.map { _ in MoEProfile.now() }
        let r = router.routing
        let a = r.total
        dOut.ensure(rows: a); dAct.ensure(rows: a); dIn.ensure(rows: a)
        if dGate.count < a { dGate = [Float](repeating: 0, count: a) }
        // Combine backward: ∂L/∂gate = dy_t · y_e(x_t), ∂L/∂y_e(x_t) = gate · dy_t.
        for i in 0..<a {
            let dyt = dy + r.token[i] * hidden
            dGate[i] = Kernels.dot(hidden, dyt, out.data + i * hidden)
            let d = dOut.data + i * hidden, g = r.gate[i]
            for j in 0..<hidden { d[j] = g * dyt[j] }
        }
        profile?.add(.combine, since: &clock)
        dispatcher.backward(self, input: gathered.data, dOut: dOut.data, dIn: dIn.data)
        profile?.add(.expertsBackward, since: &clock)
        dx.update(repeating: 0, count: n * hidden)
        for i in 0..<a { Kernels.add(hidden, dIn.data + i * hidden, dx + r.token[i] * hidden) }
        shared?.backward(dy, dx: dx)
        profile?.add(.gather, since: &clock)
        dGate.withUnsafeBufferPointer { router.backward(dGate: $0.baseAddress!, rows: n, dx: dx) }
        profile?.add(.routerBackward, since: &clock)
    }
}

extension MoELayer {
    /// Runs experts `experts` on rows grouped by expert: expert `e` takes rows
    /// `offsets[e − lo] ..< offsets[e − lo + 1]` of `input [rows, hidden]` (lo = experts.lowerBound)
    /// and writes the same rows of `out [rows, hidden]`; `pre` keeps act'(pre) when training, `act`
    /// the activations (both `[rows, ffn]`), for `expertsBackward`.
    public func expertsForward(_ experts: Range<Int>, offsets: [Int], input: UnsafePointer<Float>, pre: UnsafeMutablePointer<Float>,
                        act: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, training: Bool) {
        forEachExpert(experts, offsets: offsets) { e, o, rows in
            guard rows > 0 else { return }
            let h = pre + o * ffn, g = act + o * ffn, ye = out + o * hidden
            BLAS.gemm(m: rows, n: ffn, k: hidden, input + o * hidden, w1.value.data + e * ffn * hidden, transB: true, h)
            Kernels.addRowBias(rows: rows, cols: ffn, b1.value.data + e * ffn, h)
            if training {
                activation.forwardKeepingDerivative(h, g, count: rows * ffn)  // `pre` now holds act'(pre)
            } else {
                activation.forward(h, g, count: rows * ffn)
            }
            BLAS.gemm(m: rows, n: hidden, k: ffn, g, w2.value.data + e * hidden * ffn, transB: true, ye)
            Kernels.addRowBias(rows: rows, cols: hidden, b2.value.data + e * hidden, ye)
        }
    }

    /// The backward of `expertsForward` on the same rows: accumulates the experts' weight
    /// gradients and writes ∂L/∂input into `dIn`, from ∂L/∂out in `dOut` (`dAct` is scratch).
    public func expertsBackward(_ experts: Range<Int>, offsets: [Int], dOut: UnsafePointer<Float>, dAct: UnsafeMutablePointer<Float>,
                         input: UnsafePointer<Float>, pre: UnsafePointer<Float>, act: UnsafePointer<Float>, dIn: UnsafeMutablePointer<Float>) {
        forEachExpert(experts, offsets: offsets) { e, o, rows in
            guard rows > 0 else { return }
            let dye = dOut + o * hidden, da = dAct + o * ffn
            BLAS.gemm(m: hidden, n: ffn, k: rows, dye, transA: true, act + o * ffn, beta: 1, w2.grad.data + e * hidden * ffn)
            Kernels.accumulateColumnSums(rows: rows, cols: hidden, dye, b2.grad.data + e * hidden)
            BLAS.gemm(m: rows, n: ffn, k: hidden, dye, w2.value.data + e * hidden * ffn, da)
            Activation.backward(derivative: pre + o * ffn, da, da, count: rows * ffn)
            BLAS.gemm(m: ffn, n: hidden, k: rows, da, transA: true, input + o * hidden, beta: 1, w1.grad.data + e * ffn * hidden)
            Kernels.accumulateColumnSums(rows: rows, cols: ffn, da, b1.grad.data + e * ffn)
            BLAS.gemm(m: rows, n: hidden, k: ffn, da, w1.value.data + e * ffn * hidden, dIn + o * hidden)
        }
    }

    /// `body(e, firstRow, rows)` for each expert of `experts`, the experts cut into contiguous
    /// groups of about equal rows, one group per thread (`ParallelFor`): each expert's GEMM pair
    /// is too small for OpenBLAS to thread well, and experts touch disjoint rows and weights.
    private func forEachExpert(_ experts: Range<Int>, offsets: [Int], _ body: (Int, Int, Int) -> Void) {
        let lo = experts.lowerBound
        ParallelFor.ranges(experts.count, cumulativeWeight: { offsets[$0] }) { _, group in
            for i in group { body(lo + i, offsets[i], offsets[i + 1] - offsets[i]) }
        }
    }
}

/// Wall time per phase of an MoE layer, summed over calls (forward and backward).
public struct MoEProfile: Sendable {
    public enum Phase: String, CaseIterable, Sendable {
        case routerForward = "router forward (logits, softmax, top-k, capacity, grouping)"
        case gather = "gather rows / scatter-add gradients"
        case expertsForward = "expert GEMMs + activation, forward"
        case combine = "combine (gate-weighted scatter) and its backward"
        case expertsBackward = "expert GEMMs + activation, backward"
        case routerBackward = "router backward (softmax, aux/z grads, router GEMMs)"
    }
    public var seconds: [Phase: Double] = [:]
    public init() {}

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    mutating func add(_ phase: Phase, since clock: inout Double?) {
        let t = MoEProfile.now()
        seconds[phase, default: 0] += t - (clock ?? t)
        clock = t
    }
}
