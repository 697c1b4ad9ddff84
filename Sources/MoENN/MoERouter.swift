import MoECore
#if canImport(Glibc)
import Glibc
#endif

/// The assignments of one forward pass, grouped by expert: expert `e` serves the rows
/// `offsets[e] ..< offsets[e + 1]` of `token`, `gate` and `slot` (tokens ascending within an
/// expert, so results never depend on timing or sort stability).
public struct Routing {
    public var tokens = 0
    public var experts = 0
    public var offsets: [Int] = []
    public var token: [Int] = []
    public var gate: [Float] = []
    /// Token-choice routers: the selection slot `t·k + j`; expert choice: the pair's index in `token`.
    public var slot: [Int] = []
    /// Assignments each expert was chosen for before capacity (token choice), for the aux loss.
    public var chosen: [Int] = []
    public var total: Int { offsets.last ?? 0 }
    public func count(_ e: Int) -> Int { offsets[e + 1] - offsets[e] }
}

/// The router of an MoE layer: logits `z = x·Wᵀ` (`weight [E, hidden]`), float32 affinities,
/// expert selection, capacity, and the backward pass from gate gradients (plus the auxiliary
/// losses) to `W` and `x`.
///
/// Affinities (`score`): `p = softmax(z)` (default), or `p = σ(z)` per expert (DeepSeek-V3). The
/// top-k is chosen on `p + b`, where `b` is the selection-only expert bias of `balance: bias`
/// (`expert_bias [E]`, 0 otherwise); the gates never contain `b`: `g = p` of the selected
/// experts, or `p / Σ_{selected} p` with `normalizeTopk` and k > 1.
/// Losses, per layer, with T tokens and f_i the fraction of the T·k selections that chose i:
///
///     aux = E · Σ_i f_i · P_i,   P_i = (1/T) Σ_t p̂_ti          (Switch Transformer, eq. 4)
///     z   = (1/T) Σ_t (log Σ_j e^{z_tj})²                       (ST-MoE, Zoph et al. 2022)
///
/// with `p̂ = p` for softmax and `p̂_ti = s_ti / Σ_j s_tj` for sigmoid (the normalised affinities
/// of DeepSeek-V3's balance losses, as Megatron-Core computes them).
/// `∂aux/∂p̂_ti = E·f_i/T` (f is a count, not differentiated), `∂z/∂z_tj = 2·lse_t·softmax(z)_tj/T`;
/// sigmoid: `∂p̂_ti/∂s_tj = (δ_ij − p̂_ti)/S_t`, `∂s/∂z = s(1 − s)`. The aux loss enters training
/// only with `balance: aux_loss` (its coefficient is 0 otherwise; it is still measured).
///
/// Loss-free balancing (Wang et al. 2024): after every optimizer step,
/// `b_i += bias_rate · sign(mean_j c_j − c_i)`, c_i the selections of expert i (before capacity)
/// summed over the step's forwards and over the whole global batch (`statisticsReducer`).
public final class MoERouter {
    public let config: MoEConfig
    public let index: Int
    public let weight: Parameter
    /// `noisy_topk` only: the noise scale projection `W_noise [E, hidden]`.
    public let noiseWeight: Parameter?
    /// `balance: bias` only: the selection-only expert bias `b [E]`, a buffer (checkpointed as
    /// `<prefix>/router/expert_bias`; no gradient, no weight decay, not in `parameters`).
    public let expertBias: Parameter?
    /// Selections per expert over the global batch, summed over the training forwards since the
    /// last `updateExpertBias` (the load c of the bias update).
    public private(set) var stepLoad: [Double]
    let hidden: Int
    /// Loss coefficients already divided by the number of MoE layers.
    let auxScale: Float, zScale: Float

    // Buffers of the last forward (grown to the largest batch, reused).
    let logits: Scratch, probs: Scratch, cleanProbs: Scratch
    let noiseLogits: Scratch, noise: Scratch, jitterMask: Scratch, dz: Scratch, dh: Scratch, dxr: Scratch
    var lse: [Float] = []
    /// Sigmoid scores: each token's `S_t = Σ_j s_tj`.
    var scoreSum: [Float] = []
    /// Sigmoid scores: `c_i = ∂(weighted aux)/∂p̂_ti` of the last backward.
    private lazy var auxCoefficient = [Float](repeating: 0, count: config.experts)
    var noisyLSE: [Float] = []
    /// Preallocated buffers of the selection (see MoESelection.swift).
    var work = SelectionWorkspace()
    public internal(set) var routing = Routing()
    public private(set) var auxLoss: Float = 0
    public private(set) var zLoss: Float = 0
    private var input: UnsafePointer<Float>?
    private var training = false
    private var jittered = false
    private var jitterSeed: (seed: UInt64, step: UInt64, rowOffset: Int) = (0, 0, 0)

    /// Data- and expert-parallel training: sums the router's batch statistics over the ranks of
    /// the group (an all-reduce, in rank order). Called in every training forward with
    /// `[chosen_0 … chosen_{E−1}, P_0 … P_{E−1}, T, Σ_t lse_t²]` (selections per expert, summed
    /// probabilities per expert, tokens, summed squared log-sum-exp) of this rank's tokens; on
    /// return the buffer holds the sums over all ranks. The balancing and z losses and their
    /// gradients then use the global batch (`f_i`, `P_i` and `T` of all ranks' tokens), exactly
    /// as one process holding the whole batch would. nil: the batch is all on this process.
    public var statisticsReducer: ((UnsafeMutableBufferPointer<Double>) -> Void)?
    private var reduced: [Double] = []
    /// Tokens of the global batch and selections per expert over it (this rank's alone when no
    /// reducer is set), as used by the losses of the last forward.
    public private(set) var globalTokens = 0
    public private(set) var globalChosen: [Double] = []

    public init(_ prefix: String, index: Int, hidden: Int, config: MoEConfig, moeLayers: Int) {
        self.config = config
        self.index = index
        self.hidden = hidden
        let e = config.experts
        weight = Parameter(name: prefix + "/router/weight", shape: [e, hidden])
        noiseWeight = config.router == .noisyTopk ? Parameter(name: prefix + "/router/noise_weight", shape: [e, hidden]) : nil
        expertBias = config.hasExpertBias ? Parameter(name: prefix + "/router/expert_bias", shape: [e], decays: false) : nil
        stepLoad = [Double](repeating: 0, count: e)
        auxScale = config.balance == .auxLoss ? config.auxLoss / Float(moeLayers) : 0
        zScale = config.zLoss / Float(moeLayers)
        logits = Scratch(width: e); probs = Scratch(width: e); cleanProbs = Scratch(width: e)
        noiseLogits = Scratch(width: e); noise = Scratch(width: e); dz = Scratch(width: e); dh = Scratch(width: e)
        jitterMask = Scratch(width: hidden); dxr = Scratch(width: hidden)
    }

    public var parameters: [Parameter] { config.router.isLearned ? [weight] + (noiseWeight.map { [$0] } ?? []) : [] }

    /// PyTorch-style U(±1/√hidden) for the router weights; the noise projection starts at zero
    /// (so training starts with softplus(0) = log 2 noise scale).
    public func initialize(seed: UInt64) {
        guard config.router.isLearned else { return }
        let bound = 1 / Float(hidden).squareRoot()
        var rng = RNG(seed: seed, purpose: "init/" + weight.name)
        rng.fillUniform(weight.value, low: -bound, high: bound)
    }

    /// Routes `n` tokens of `x [n, hidden]`. After the first call for the largest batch, it
    /// allocates nothing: every buffer is kept and reused.
    public func forward(_ x: UnsafePointer<Float>, rows n: Int, context: ForwardContext) {
        let e = config.experts, k = config.k
        input = x
        training = context.training
        logits.ensure(rows: n); probs.ensure(rows: n); cleanProbs.ensure(rows: n)
        jittered = context.training && config.jitter > 0 && config.router.isLearned
        var xr = x
        if jittered {
            jitterMask.ensure(rows: n)
            jitterSeed = (context.seed, UInt64(context.step), context.rowOffset)
            var rng = RNG(seed: context.seed, purpose: "router/jitter/\(index)", stream: UInt64(context.step))
            rng.skip(context.rowOffset * hidden)
            let m = jitterMask.data
            for i in 0..<(n * hidden) { m[i] = rng.uniform(1 - config.jitter, 1 + config.jitter) * x[i] }
            xr = UnsafePointer(m)
        }
        routedInput = xr
        auxLoss = 0; zLoss = 0; zSquares = 0
        if config.router.isLearned {
            BLAS.gemm(m: n, n: e, k: hidden, xr, weight.value.data, transB: true, logits.data)
            softmaxRows(logits.data, into: cleanProbs.data, rows: n, width: e, lse: &lse)
            if config.score == .sigmoid { sigmoidRows(rows: n) }
            var z2: Double = 0
            for t in 0..<n { z2 += Double(lse[t]) * Double(lse[t]) }
            zSquares = z2
            if config.router == .noisyTopk && context.training, let wn = noiseWeight {
                noiseLogits.ensure(rows: n); noise.ensure(rows: n)
                BLAS.gemm(m: n, n: e, k: hidden, xr, wn.value.data, transB: true, noiseLogits.data)
                var rng = RNG(seed: context.seed, purpose: "router/noise/\(index)", stream: UInt64(context.step))
                rng.skipNormals(context.rowOffset * e)
                rng.fillNormal(noise.tensor)
                let z = logits.data, h = noiseLogits.data, nz = noise.data, p = probs.data
                for i in 0..<(n * e) { p[i] = z[i] + nz[i] * softplus(h[i]) }  // noisy logits, softmaxed in place
                softmaxRows(p, into: p, rows: n, width: e, lse: &noisyLSE)
            } else if config.score == .softmax {
                probs.data.update(from: cleanProbs.data, count: n * e)
            }
        }
        select(rows: n, context: context)
        reduceStatistics(rows: n, training: context.training)
        if context.training && expertBias != nil { for i in 0..<e { stepLoad[i] += globalChosen[i] } }
        let tokens = Double(globalTokens)
        if config.router.isLearned { zLoss = Float(zSquares / tokens) }
        if config.router.isTokenChoice {
            // aux = E · Σ f_i P_i, f_i = chosen_i / (T k), P_i = Σ_t p_ti / T.
            var total: Double = 0
            for i in 0..<e { total += globalChosen[i] / (tokens * Double(k)) * reduced[e + i] / tokens }
            auxLoss = Float(Double(e) * total)
        }
    }

    private var zSquares: Double = 0

    /// Fills `reduced` with this batch's statistics (see `statisticsReducer`) and sums them over
    /// the group when training with a reducer; sets `globalTokens` and `globalChosen`.
    private func reduceStatistics(rows n: Int, training: Bool) {
        let e = config.experts
        if reduced.count != 2 * e + 2 { reduced = [Double](repeating: 0, count: 2 * e + 2) }
        if globalChosen.count != e { globalChosen = [Double](repeating: 0, count: e) }
        let p = probs.data, sigmoid = config.score == .sigmoid
        for i in 0..<e {
            reduced[i] = Double(routing.chosen[i])
            var pi: Double = 0
            if sigmoid {
                for t in 0..<n { pi += Double(p[t * e + i] / scoreSum[t]) }
            } else {
                for t in 0..<n { pi += Double(p[t * e + i]) }
            }
            reduced[e + i] = pi
        }
        reduced[2 * e] = Double(n)
        reduced[2 * e + 1] = zSquares
        if training, let reduce = statisticsReducer { reduced.withUnsafeMutableBufferPointer { reduce($0) } }
        for i in 0..<e { globalChosen[i] = reduced[i] }
        globalTokens = Int(reduced[2 * e])
        zSquares = reduced[2 * e + 1]
    }

    var routedInput: UnsafePointer<Float>?

    /// Given `dGate` (∂L/∂gate for each assignment in `routing` order), adds the aux and z-loss
    /// gradients, back-propagates through the softmax (and noise) to the router weights, and adds
    /// the router's share of ∂L/∂x into `dx`.
    public func backward(dGate: UnsafePointer<Float>, rows n: Int, dx: UnsafeMutablePointer<Float>) {
        guard config.router.isLearned, let x = routedInput else { return }
        let e = config.experts, k = config.k
        dz.ensure(rows: n)
        let p = probs.data, d = dz.data
        // ∂L/∂p into dz's storage first.
        d.update(repeating: 0, count: n * e)
        switch config.router {
        case .expertChoice:
            for ex in 0..<e {
                for a in routing.offsets[ex]..<routing.offsets[ex + 1] { d[routing.token[a] * e + ex] += dGate[a] }
            }
        default:
            work.ensureSlotGradient(n * k)
            let dSlot = work.slotGradient
            dSlot.update(repeating: 0, count: n * k)
            for a in 0..<routing.total { dSlot[routing.slot[a]] = dGate[a] }
            let selected = work.selected, selectedGate = work.selectedGate, selectedSum = work.selectedSum
            for t in 0..<n {
                if config.normalizeTopk && k > 1 {
                    // g_j = p_j / S: ∂L/∂p_j = (dg_j − Σ_i dg_i g_i) / S for the selected j.
                    var dot: Float = 0
                    for j in 0..<k { dot += dSlot[t * k + j] * selectedGate[t * k + j] }
                    for j in 0..<k { d[t * e + selected[t * k + j]] += (dSlot[t * k + j] - dot) / selectedSum[t] }
                } else {
                    for j in 0..<k { d[t * e + selected[t * k + j]] += dSlot[t * k + j] }
                }
            }
            // Load balancing: ∂(auxScale·aux)/∂p_ti = auxScale · E · f_i / T (f and T of the
            // global batch, see `statisticsReducer`).
            let tokens = Float(globalTokens)
            if config.score == .sigmoid {
                // p̂_ti = s_ti / S_t: ∂/∂s_tj = (c_j − Σ_i c_i p̂_ti) / S_t, c_i = auxScale·E·f_i/T.
                for i in 0..<e { auxCoefficient[i] = auxScale * Float(e) * Float(globalChosen[i]) / (tokens * Float(k)) / tokens }
                for t in 0..<n {
                    var dot: Float = 0
                    for i in 0..<e { dot += auxCoefficient[i] * p[t * e + i] }
                    dot /= scoreSum[t]
                    for j in 0..<e { d[t * e + j] += (auxCoefficient[j] - dot) / scoreSum[t] }
                }
            } else {
                for i in 0..<e {
                    let g = auxScale * Float(e) * Float(globalChosen[i]) / (tokens * Float(k)) / tokens
                    for t in 0..<n { d[t * e + i] += g }
                }
            }
        }
        if config.score == .sigmoid {
            // s = σ(z): dz_tj = ds_tj · s_tj (1 − s_tj), in place.
            for i in 0..<(n * e) { d[i] *= p[i] * (1 - p[i]) }
        } else {
            // Softmax: dz_tj = p_tj (dp_tj − Σ_i p_ti dp_ti), in place.
            for t in 0..<n {
                let pt = p + t * e, dt = d + t * e
                var s: Float = 0
                for i in 0..<e { s += pt[i] * dt[i] }
                for i in 0..<e { dt[i] = pt[i] * (dt[i] - s) }
            }
        }
        dxr.ensure(rows: n)
        // Noise branch (noisy top-k while training): z' = z + ε·softplus(h), ∂z'/∂h = ε·σ(h).
        var hasNoise = false
        if config.router == .noisyTopk && training, let wn = noiseWeight {
            dh.ensure(rows: n)
            let h = noiseLogits.data, nz = noise.data, dhp = dh.data
            for i in 0..<(n * e) { dhp[i] = d[i] * nz[i] * sigmoid(h[i]) }
            BLAS.gemm(m: e, n: hidden, k: n, dhp, transA: true, x, beta: 1, wn.grad.data)
            BLAS.gemm(m: n, n: hidden, k: e, dhp, wn.value.data, dxr.data)
            hasNoise = true
        }
        // z-loss on the clean logits: ∂/∂z_tj = zScale · 2 · lse_t · softmax(z)_tj / T.
        let pc = cleanProbs.data
        for t in 0..<n {
            let c = zScale * 2 * lse[t] / Float(globalTokens)
            for i in 0..<e { d[t * e + i] += c * pc[t * e + i] }
        }
        BLAS.gemm(m: e, n: hidden, k: n, d, transA: true, x, beta: 1, weight.grad.data)
        BLAS.gemm(m: n, n: hidden, k: e, d, weight.value.data, beta: hasNoise ? 1 : 0, dxr.data)
        let g = dxr.data
        if jittered {
            // x_r = x ⊙ u: ∂L/∂x = ∂L/∂x_r ⊙ u, with u = x_r / x recomputed from the stored product.
            var rng = RNG(seed: jitterSeed.seed, purpose: "router/jitter/\(index)", stream: jitterSeed.step)
            rng.skip(jitterSeed.rowOffset * hidden)
            for i in 0..<(n * hidden) { dx[i] += g[i] * rng.uniform(1 - config.jitter, 1 + config.jitter) }
        } else {
            for i in 0..<(n * hidden) { dx[i] += g[i] }
        }
    }

}

extension MoERouter {
    /// `p = σ(z)` of the logits into `probs`, and each token's `S_t = Σ_j s_tj` into `scoreSum`.
    func sigmoidRows(rows n: Int) {
        let e = config.experts, z = logits.data, p = probs.data
        if scoreSum.count < n { scoreSum = [Float](repeating: 0, count: n) }
        for t in 0..<n {
            var s: Float = 0
            for j in 0..<e { p[t * e + j] = sigmoid(z[t * e + j]); s += p[t * e + j] }
            scoreSum[t] = s
        }
    }

    /// Loss-free balancing (Wang et al. 2024), after an optimizer step: `b_i += bias_rate ·
    /// sign(mean_j c_j − c_i)` with c the global selections since the last update (`stepLoad`),
    /// which it then clears. Every rank of a data- or expert-parallel group holds the same c
    /// (all-reduced), so the biases stay identical. Nothing happens without an expert bias.
    public func updateExpertBias() {
        guard let b = expertBias else { return }
        let e = config.experts
        let mean = stepLoad.reduce(0, +) / Double(e)
        for i in 0..<e {
            let gap = mean - stepLoad[i]
            if gap != 0 { b.value.data[i] += gap > 0 ? config.biasRate : -config.biasRate }
        }
        discardStepLoad()
    }

    /// Forgets the load counted since the last update (a step that was skipped, e.g. a
    /// non-finite loss, moves no bias).
    public func discardStepLoad() {
        for i in stepLoad.indices { stepLoad[i] = 0 }
    }
}

@inline(__always) func softplus(_ x: Float) -> Float { x > 20 ? x : log1pf(expf(x)) }
@inline(__always) func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }

/// Row-wise softmax of `rows × width` values, with each row's log-sum-exp.
func softmaxRows(_ z: UnsafePointer<Float>, into p: UnsafeMutablePointer<Float>, rows: Int, width: Int, lse: inout [Float]) {
    if lse.count < rows { lse = [Float](repeating: 0, count: rows) }
    for t in 0..<rows {
        let zt = z + t * width, pt = p + t * width
        var m = zt[0]
        for i in 1..<width { m = max(m, zt[i]) }
        var s: Float = 0
        for i in 0..<width { pt[i] = expf(zt[i] - m); s += pt[i] }
        for i in 0..<width { pt[i] /= s }
        lse[t] = m + logf(s)
    }
}
