extension Fusion {
    /// Fisher-weighted averaging (Matena & Raffel 2022, "Merging models with Fisher-weighted
    /// averaging"), with the diagonal Fisher `F_i` of each model:
    ///
    ///     θ = Σ_i w_i (F_i + ε) θ_i / Σ_i w_i (F_i + ε)        (element-wise)
    ///
    /// The smoothing `ε` (`epsilon`, default 1e-8) is added to every Fisher, in numerator and
    /// denominator alike, rather than to the denominator only: the result stays a convex
    /// combination of the θ_i at every coordinate (no shrinkage toward 0 where Σ F is small), is
    /// exactly the `w`-weighted average where all Fishers are 0, and tends to the paper's
    /// `Σ w_i F_i θ_i / Σ w_i F_i` as `ε → 0`. Choose `ε` small next to typical Fisher values.
    /// `weights` are the paper's model weights λ_i (nil: uniform); `fishers[i]` must have the
    /// names and shapes of the models (non-negative, finite values). Computed in float64 per element.
    public static func fisher(_ models: [NamedTensors], fishers: [NamedTensors], weights: [Double]? = nil,
                              epsilon: Double = 1e-8) throws -> NamedTensors {
        try validate(models)
        guard fishers.count == models.count else {
            throw FusionError.invalidParameter("fisher: \(fishers.count) Fisher sets for \(models.count) models")
        }
        for (i, f) in fishers.enumerated() {
            do { try validate([models[0], f]) } catch let error as FusionError {
                throw error.renumbered(i, what: "the Fisher of")
            }
        }
        guard epsilon > 0, epsilon.isFinite else {
            throw FusionError.invalidParameter("fisher: epsilon must be positive and finite, got \(epsilon)")
        }
        let w = try resolveWeights(weights, count: models.count, normalize: true)
        let reference = models[0]
        var out: [String: [Float]] = [:]
        var numerator = [Double](), denominator = [Double]()
        for name in reference.names {
            let n = reference.values[name]!.count
            numerator = [Double](repeating: 0, count: n)
            denominator = [Double](repeating: 0, count: n)
            for (i, model) in models.enumerated() where w[i] != 0 {
                let f = fishers[i].values[name]!
                if let j = f.firstIndex(where: { !($0 >= 0) || !$0.isFinite }) {
                    throw FusionError.invalidParameter("fisher: tensor \(name) of the Fisher of model \(i) has the value \(f[j]) at \(j)")
                }
                let x = model.values[name]!
                for j in 0..<n {
                    let c = w[i] * (Double(f[j]) + epsilon)
                    numerator[j] += c * Double(x[j])
                    denominator[j] += c
                }
            }
            out[name] = (0..<n).map { Float(numerator[$0] / denominator[$0]) }
        }
        return reference.with(values: out)
    }
}

/// Accumulates a diagonal (empirical) Fisher from per-batch gradients:
/// `F = (1/B) Σ_b g_b ⊙ g_b`, `g_b` the gradient of the loss on batch `b` (`fisher_samples`
/// batches). Squared batch-mean gradients are a coarser estimate than the paper's per-example
/// Fisher (near a minimum, about 1/batch-size of it); what the merge uses is the ratio between
/// models, which is comparable when every model is measured on the same batches.
public struct FisherAccumulator: Sendable {
    public private(set) var names: [String]
    public private(set) var shapes: [String: [Int]]
    private var sums: [String: [Float]]
    /// Number of batches added so far.
    public private(set) var batches = 0

    /// An accumulator for tensors with these names and shapes (e.g. a model's).
    public init(like model: NamedTensors) {
        names = model.names
        shapes = model.shapes
        sums = Dictionary(uniqueKeysWithValues: model.names.map { ($0, [Float](repeating: 0, count: model.shapes[$0]!.reduce(1, *))) })
    }

    /// Adds one batch's gradients (`gradients[name]` for every name, same sizes): `F += g²`.
    public mutating func add(gradients: [String: [Float]]) throws {
        for name in names {
            guard let g = gradients[name] else { throw FusionError.invalidParameter("Fisher: batch \(batches) has no gradient for tensor \(name)") }
            guard g.count == sums[name]!.count else {
                throw FusionError.invalidParameter("Fisher: gradient of \(name) has \(g.count) values, expected \(sums[name]!.count)")
            }
        }
        for name in names {
            let g = gradients[name]!
            sums[name]!.withUnsafeMutableBufferPointer { s in
                g.withUnsafeBufferPointer { g in
                    for j in 0..<g.count { s[j] += g[j] * g[j] }
                }
            }
        }
        batches += 1
    }

    /// The diagonal Fisher `Σ g² / B` as named tensors (zeros before any batch).
    public func fisher() -> NamedTensors {
        let scale: Float = batches > 0 ? 1 / Float(batches) : 0
        return NamedTensors(names: names, shapes: shapes, values: sums.mapValues { $0.map { $0 * scale } })
    }
}
