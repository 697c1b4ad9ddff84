#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// The per-model coefficients of weighted averaging (`fusion.weights`, ARCHITECTURE §2). Every
/// helper returns non-negative weights that sum to 1.
public enum FusionWeights {
    /// `1/M` for each of `count` models.
    public static func uniform(count: Int) throws -> [Double] {
        guard count > 0 else { throw FusionError.invalidParameter("uniform weights need at least one model") }
        return Array(repeating: 1 / Double(count), count: count)
    }

    /// FedAvg (McMahan et al. 2017): `w_i = n_i / Σ_j n_j`, `n_i` the number of training examples
    /// (or tokens) model `i` saw. Counts must be non-negative and not all zero.
    public static func dataSize(_ counts: [Int]) throws -> [Double] {
        guard !counts.isEmpty else { throw FusionError.invalidParameter("data_size weights need at least one model") }
        if let i = counts.firstIndex(where: { $0 < 0 }) {
            throw FusionError.invalidParameter("data_size: model \(i) has a negative example count \(counts[i])")
        }
        let total = counts.reduce(0.0) { $0 + Double($1) }
        guard total > 0 else { throw FusionError.invalidParameter("data_size: every model has 0 examples") }
        return counts.map { Double($0) / total }
    }

    /// `w = softmax(−loss / temperature)`: `w_i = exp(−(L_i − L_min)/T) / Σ_j exp(−(L_j − L_min)/T)`.
    /// Subtracting the smallest loss first keeps every exponent ≤ 0, so nothing overflows and the
    /// best model's term is exactly 1. Lower validation loss gives more weight; `T → ∞` tends to
    /// uniform, `T → 0` to the best model alone. Losses must be finite, `temperature > 0`.
    public static func valLoss(_ losses: [Double], temperature: Double = 1) throws -> [Double] {
        guard !losses.isEmpty else { throw FusionError.invalidParameter("val_loss weights need at least one model") }
        guard temperature > 0, temperature.isFinite else {
            throw FusionError.invalidParameter("val_loss: temperature must be positive and finite, got \(temperature)")
        }
        if let i = losses.firstIndex(where: { !$0.isFinite }) {
            throw FusionError.invalidParameter("val_loss: model \(i) has a non-finite validation loss \(losses[i])")
        }
        let best = losses.min()!
        let e = losses.map { exp(-($0 - best) / temperature) }
        let total = e.reduce(0, +)
        return e.map { $0 / total }
    }

    /// An explicit list: one finite, non-negative weight per model, not all zero. With
    /// `normalize` (mergekit's default) they are divided by their sum; without, returned as given.
    public static func explicit(_ weights: [Double], modelCount: Int, normalize: Bool = true) throws -> [Double] {
        try check(weights, modelCount: modelCount, what: "weights")
        return normalize ? normalized(weights) : weights
    }

    /// Throws unless `weights` has `modelCount` finite non-negative entries, not all zero.
    static func check(_ weights: [Double], modelCount: Int, what: String) throws {
        guard weights.count == modelCount else {
            throw FusionError.invalidParameter("\(what): \(weights.count) weights for \(modelCount) models")
        }
        if let i = weights.firstIndex(where: { !($0 >= 0) || !$0.isFinite }) {
            throw FusionError.invalidParameter("\(what): the weight of model \(i) is \(weights[i]); weights must be finite and non-negative")
        }
        guard weights.contains(where: { $0 > 0 }) else {
            throw FusionError.invalidParameter("\(what): all weights are zero")
        }
    }

    static func normalized(_ w: [Double]) -> [Double] {
        let total = w.reduce(0, +)
        return w.map { $0 / total }
    }
}

extension Fusion {
    /// Weighted parameter averaging (model soup / FedAvg / mergekit `linear`):
    /// `θ = Σ_i w_i θ_i`, with `w_i ← w_i / Σ_j w_j` when `normalize` (the default, as in mergekit).
    /// `weights` nil means uniform. Accumulates in float32 in model order, tensor by tensor.
    /// Wortsman et al. 2022 ("Model soups"), McMahan et al. 2017 (FedAvg).
    public static func average(_ models: [NamedTensors], weights: [Double]? = nil, normalize: Bool = true) throws -> NamedTensors {
        try validate(models)
        let w = try resolveWeights(weights, count: models.count, normalize: normalize)
        return combine(models, coefficients: w)
    }

    /// `weights` checked (finite, non-negative, not all zero, one per model) and, with
    /// `normalize`, scaled to sum 1; nil gives 1 each (or 1/M each when normalising).
    static func resolveWeights(_ weights: [Double]?, count: Int, normalize: Bool) throws -> [Double] {
        let w = weights ?? Array(repeating: 1, count: count)
        return try FusionWeights.explicit(w, modelCount: count, normalize: normalize)
    }

    /// `Σ_i c_i θ_i` per tensor (no checks): the kernel of averaging, in float32.
    static func combine(_ models: [NamedTensors], coefficients c: [Double]) -> NamedTensors {
        let reference = models[0]
        var out: [String: [Float]] = [:]
        out.reserveCapacity(reference.names.count)
        for name in reference.names {
            let n = reference.values[name]!.count
            var acc = [Float](repeating: 0, count: n)
            acc.withUnsafeMutableBufferPointer { a in
                for (i, model) in models.enumerated() where c[i] != 0 {
                    let ci = Float(c[i])
                    model.values[name]!.withUnsafeBufferPointer { x in
                        for j in 0..<n { a[j] += ci * x[j] }
                    }
                }
            }
            out[name] = acc
        }
        return reference.with(values: out)
    }
}
