import MoECore

/// How task vectors `τ_i = θ_i − θ₀` are sparsified before they are merged (mergekit's
/// `sparsification_method`).
public enum Sparsification: Equatable, Sendable {
    /// Keep every entry (task arithmetic).
    case none
    /// TIES "trim" (Yadav et al. 2023; mergekit `magnitude`): per tensor and per model keep the
    /// `k` entries of largest `|τ|`, zero the rest. See `Fusion.magnitudeKeepCount` for `k` and
    /// `Fusion.magnitudeTrim` for the tie rule. `density ≥ 1` keeps everything.
    case magnitude(density: Double)
    /// DARE (Yu et al. 2024; mergekit `random`): keep each entry independently with probability
    /// `density` (mask from `Fusion.dareMask`), and with `rescale` divide the kept entries by
    /// `density` so that the expectation of `τ̂` is `τ`.
    case random(density: Double, rescale: Bool, seed: UInt64)

    var density: Double? {
        switch self {
        case .none: return nil
        case .magnitude(let d), .random(let d, _, _): return d
        }
    }
}

extension Fusion {
    /// The number of entries TIES keeps out of `count` at `density`: `k = ⌊density · count⌋`
    /// (Python's `int(density * n)` in mergekit's `magnitude`, including its float64 rounding, e.g.
    /// `0.29 · 100 → 28`), but at least 1 when `count > 0` (mergekit asserts `k > 0` instead; a
    /// bias of 4 entries at density 0.2 would otherwise refuse the whole merge), and `count` when
    /// `density ≥ 1`.
    public static func magnitudeKeepCount(density: Double, count: Int) -> Int {
        if density >= 1 || count == 0 { return count }
        return min(count, max(1, Int((density * Double(count)).rounded(.down))))
    }

    /// Zeroes all but the `k = magnitudeKeepCount(density, τ.count)` entries of largest magnitude
    /// of `tau` in place and returns `k`. Tie rule: entries whose `|τ|` equals the k-th largest
    /// magnitude are kept in increasing flat index order until `k` entries are kept (deterministic;
    /// mergekit's `torch.argsort` leaves this order unspecified). `scratch` must hold at least
    /// `tau.count` floats; it is overwritten (reused across models so nothing is allocated).
    /// O(n) on average: a three-way quickselect finds the threshold.
    @discardableResult
    public static func magnitudeTrim(_ tau: UnsafeMutableBufferPointer<Float>, density: Double,
                                     scratch: UnsafeMutableBufferPointer<Float>) -> Int {
        let n = tau.count
        let k = magnitudeKeepCount(density: density, count: n)
        if k >= n { return n }
        for j in 0..<n { scratch[j] = abs(tau[j]) }
        // The k-th largest magnitude is the (n − k)-th smallest (0-based).
        let threshold = select(UnsafeMutableBufferPointer(rebasing: scratch[0..<n]), rank: n - k)
        var above = 0
        for j in 0..<n where abs(tau[j]) > threshold { above += 1 }
        var equalsToKeep = k - above
        for j in 0..<n {
            let m = abs(tau[j])
            if m > threshold { continue }
            if m == threshold && equalsToKeep > 0 { equalsToKeep -= 1; continue }
            tau[j] = 0
        }
        return k
    }

    /// The value of rank `rank` (0-based, ascending) of `a`, reordering `a`: iterative quickselect
    /// with a median-of-three pivot and a three-way (Dutch flag) partition, so runs of equal
    /// values (e.g. many zeros) cost one pass.
    static func select(_ a: UnsafeMutableBufferPointer<Float>, rank: Int) -> Float {
        var lo = 0, hi = a.count - 1
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            let x = a[lo], y = a[mid], z = a[hi]
            let pivot = max(min(x, y), min(max(x, y), z))
            var lt = lo, i = lo, gt = hi
            while i <= gt {
                let v = a[i]
                if v < pivot { a.swapAt(lt, i); lt += 1; i += 1 } else if v > pivot { a.swapAt(i, gt); gt -= 1 } else { i += 1 }
            }
            if rank < lt { hi = lt - 1 } else if rank > gt { lo = gt + 1 } else { return pivot }
        }
        return a[lo]
    }

    /// The DARE keep mask of tensor `tensor` of model `model` (its position in the list given to
    /// the merge): element `j` is kept iff the `j`-th `uniform()` draw of
    /// `RNG(seed: seed, purpose: "fusion/dare/" + tensor, stream: model)` is `< density`. Keyed by
    /// (seed, model index, tensor name), so it does not depend on tensor order, and is exported so
    /// that a reference implementation can apply the same mask.
    public static func dareMask(seed: UInt64, model: Int, tensor: String, count: Int, density: Double) -> [Bool] {
        var rng = dareRNG(seed: seed, model: model, tensor: tensor)
        let d = Float(density)
        return (0..<count).map { _ in rng.uniform() < d }
    }

    static func dareRNG(seed: UInt64, model: Int, tensor: String) -> RNG {
        RNG(seed: seed, purpose: "fusion/dare/" + tensor, stream: UInt64(model))
    }

    /// Applies DARE to `tau` in place (same mask as `dareMask`) and returns the number kept.
    /// `density ≥ 1` keeps everything and does not rescale (as mergekit's `bernoulli`).
    @discardableResult
    static func dareDrop(_ tau: UnsafeMutableBufferPointer<Float>, density: Double, rescale: Bool,
                         seed: UInt64, model: Int, tensor: String) -> Int {
        if density >= 1 { return tau.count }
        var rng = dareRNG(seed: seed, model: model, tensor: tensor)
        let d = Float(density)
        var kept = 0
        for j in 0..<tau.count {
            if rng.uniform() < d {
                if rescale { tau[j] /= d }
                kept += 1
            } else {
                tau[j] = 0
            }
        }
        return kept
    }
}
