/// The result of a task-vector merge: the model plus what the sparsification and sign election
/// did to each tensor (for the `/fusion/` records).
public struct TaskMergeResult: Equatable, Sendable {
    public var model: NamedTensors
    /// Per tensor: kept task-vector entries / (models × elements). 1 without sparsification.
    public var keptFraction: [String: Double]
    /// Per tensor: fraction of coordinates where the (sparsified, weighted) task vectors have both
    /// a positive and a negative entry, i.e. where TIES' sign election discards something.
    public var signConflictFraction: [String: Double]
}

extension Fusion {
    /// Task arithmetic (Ilharco et al. 2023, "Editing models with task arithmetic"; mergekit
    /// `task_arithmetic`): `θ = θ₀ + λ · Σ_i w_i τ_i` with `τ_i = θ_i − θ₀`.
    ///
    /// `weights` nil means 1 each. With `normalize` the sum is divided by `Σ_i w_i`
    /// (`θ₀ + λ · Σ w_i τ_i / Σ w_i`); the default is false, the paper's form (mergekit's
    /// `task_arithmetic` defaults to `normalize: true`; pass it to match). λ may be negative
    /// (task negation); weights are non-negative.
    public static func taskArithmetic(base: NamedTensors, models: [NamedTensors], weights: [Double]? = nil,
                                      lambda: Double = 1, normalize: Bool = false) throws -> TaskMergeResult {
        try generalizedTaskArithmetic(base: base, models: models, weights: weights, lambda: lambda,
                                      normalize: normalize, sparsification: .none, consensus: false)
    }

    /// TIES-merging (Yadav et al. 2023, "TIES-Merging: resolving interference when merging
    /// models"; mergekit `ties`):
    /// 1. trim: `τ̂_i = magnitudeTrim(τ_i, density)` per tensor (top `⌊density·n⌋` by `|τ|`, at
    ///    least 1, ties by lower index; density ≥ 1 keeps all);
    /// 2. elect: `γ = +1 if Σ_i w_i τ̂_i ≥ 0 else −1` per coordinate (sign of the summed mass; a
    ///    zero sum elects +, as mergekit's `sign_weight >= 0`);
    /// 3. disjoint merge: `A = {i : sign(w_i τ̂_i) = γ}` (zero entries agree with nothing),
    ///    `τ_m = Σ_{i∈A} w_i τ̂_i / Σ_{i∈A} w_i` when `normalize` (the default; a divisor of 0, i.e.
    ///    A empty, is replaced by 1, so the coordinate stays at θ₀), else just the sum;
    /// 4. `θ = θ₀ + λ · τ_m`.
    /// All-zero task vectors give exactly θ₀; with equal weights and density 1 it is the mean of
    /// the task vectors that agree with the elected sign.
    public static func ties(base: NamedTensors, models: [NamedTensors], weights: [Double]? = nil,
                            density: Double, lambda: Double = 1, normalize: Bool = true) throws -> TaskMergeResult {
        try generalizedTaskArithmetic(base: base, models: models, weights: weights, lambda: lambda, normalize: normalize,
                                      sparsification: .magnitude(density: density), consensus: true)
    }

    /// DARE (Yu et al. 2024, "Language models are Super Mario"; mergekit `dare_linear`): drop each
    /// entry of `τ_i` with probability `1 − density` (mask `dareMask(seed, i, name)`), divide the
    /// kept ones by `density` when `rescale` (the default), then task arithmetic:
    /// `θ = θ₀ + λ · Σ_i w_i τ̂_i` (divided by `Σ w_i` with `normalize`, default false as in the
    /// paper). Reproducible for a seed, independent of tensor order.
    public static func dare(base: NamedTensors, models: [NamedTensors], weights: [Double]? = nil, density: Double,
                            lambda: Double = 1, rescale: Bool = true, normalize: Bool = false,
                            seed: UInt64) throws -> TaskMergeResult {
        try generalizedTaskArithmetic(base: base, models: models, weights: weights, lambda: lambda, normalize: normalize,
                                      sparsification: .random(density: density, rescale: rescale, seed: seed),
                                      consensus: false)
    }

    /// DARE-TIES (mergekit `dare_ties`): DARE's random drop and rescale as in `dare`, then TIES'
    /// sign election and disjoint merge (steps 2–4 of `ties`, `normalize` default true).
    public static func dareTies(base: NamedTensors, models: [NamedTensors], weights: [Double]? = nil, density: Double,
                                lambda: Double = 1, rescale: Bool = true, normalize: Bool = true,
                                seed: UInt64) throws -> TaskMergeResult {
        try generalizedTaskArithmetic(base: base, models: models, weights: weights, lambda: lambda, normalize: normalize,
                                      sparsification: .random(density: density, rescale: rescale, seed: seed),
                                      consensus: true)
    }

    /// mergekit's "generalized task arithmetic", of which the four methods above are instances:
    /// `τ_i = θ_i − θ₀`, sparsify, weight (`w_i τ̂_i`), then either the plain sum (divided by
    /// `Σ w_i` with `normalize`) or, with `consensus`, TIES' sign election and disjoint merge; last
    /// `θ = θ₀ + λ · merged`. The output has the base's tensor order.
    public static func generalizedTaskArithmetic(base: NamedTensors, models: [NamedTensors], weights: [Double]?,
                                                 lambda: Double, normalize: Bool, sparsification: Sparsification,
                                                 consensus: Bool) throws -> TaskMergeResult {
        try validate(models, base: base)
        let m = models.count
        let w = try resolveWeights(weights, count: m, normalize: false)
        guard lambda.isFinite else { throw FusionError.invalidParameter("lambda must be finite, got \(lambda)") }
        if let d = sparsification.density, !(d > 0 && d <= 1) {
            throw FusionError.invalidParameter("density must be in (0, 1], got \(d)")
        }
        let wf = w.map { Float($0) }
        let plainScale = Float(lambda / (normalize ? w.reduce(0, +) : 1))
        let lam = Float(lambda)
        var out: [String: [Float]] = [:], kept: [String: Double] = [:], conflicts: [String: Double] = [:]
        for name in base.names {
            let theta0 = base.values[name]!
            let n = theta0.count
            var deltas = [Float](repeating: 0, count: m * n)
            var scratch = [Float](repeating: 0, count: sparsification == .none ? 0 : n)
            var result = theta0
            var keptCount = 0, conflictCount = 0
            deltas.withUnsafeMutableBufferPointer { d in
                scratch.withUnsafeMutableBufferPointer { s in
                    theta0.withUnsafeBufferPointer { b in
                        for i in 0..<m {
                            let tau = UnsafeMutableBufferPointer(rebasing: d[(i * n)..<((i + 1) * n)])
                            models[i].values[name]!.withUnsafeBufferPointer { x in
                                for j in 0..<n { tau[j] = x[j] - b[j] }
                            }
                            switch sparsification {
                            case .none: keptCount += n
                            case .magnitude(let density): keptCount += magnitudeTrim(tau, density: density, scratch: s)
                            case .random(let density, let rescale, let seed):
                                keptCount += dareDrop(tau, density: density, rescale: rescale, seed: seed, model: i, tensor: name)
                            }
                            let wi = wf[i]
                            for j in 0..<n { tau[j] *= wi }
                        }
                    }
                }
                result.withUnsafeMutableBufferPointer { r in
                    for j in 0..<n {
                        var sum: Float = 0, hasPositive = false, hasNegative = false
                        for i in 0..<m {
                            let v = d[i * n + j]
                            sum += v
                            if v > 0 { hasPositive = true } else if v < 0 { hasNegative = true }
                        }
                        if hasPositive && hasNegative { conflictCount += 1 }
                        if !consensus {
                            r[j] += plainScale * sum
                            continue
                        }
                        let positive = sum >= 0
                        var mixed: Float = 0, divisor: Float = 0
                        for i in 0..<m {
                            let v = d[i * n + j]
                            if positive ? v > 0 : v < 0 { mixed += v; divisor += wf[i] }
                        }
                        if normalize && divisor != 0 { mixed /= divisor }
                        r[j] += lam * mixed
                    }
                }
            }
            out[name] = result
            kept[name] = n == 0 ? 1 : Double(keptCount) / Double(m * n)
            conflicts[name] = n == 0 ? 0 : Double(conflictCount) / Double(n)
        }
        return TaskMergeResult(model: base.with(values: out), keptFraction: kept, signConflictFraction: conflicts)
    }
}
