/// Per-tensor statistics of a fusion result, for the `/fusion/` records.
public struct TensorFusionStatistics: Equatable, Sendable {
    public var name: String
    /// `‖θ_fused − θ_i‖₂` for each model `i`.
    public var distanceToModel: [Double]
    /// `‖θ_i − θ₀‖₂` for each model (the task vector norms); nil without a base.
    public var taskVectorNorm: [Double]?
    /// `cos(τ_i, τ_j)` for every pair `i < j`, in the order (0,1), (0,2), …, (1,2), …; a zero task
    /// vector gives 0. Nil without a base.
    public var taskVectorCosine: [Double]?
    /// TIES/DARE: the fraction of coordinates whose sparsified task vectors disagree in sign.
    public var signConflictFraction: Double?
    /// TIES/DARE: the fraction of task-vector entries the sparsification kept.
    public var keptFraction: Double?
}

extension Fusion {
    /// Statistics of `fused` against the `models` it came from (and their `base`, for the task
    /// vector norms and cosines), in `fused`'s tensor order; `merge` adds the sign-conflict and
    /// kept fractions of a task-vector merge. Norms and dot products in float64.
    public static func statistics(fused: NamedTensors, models: [NamedTensors], base: NamedTensors? = nil,
                                  merge: TaskMergeResult? = nil) throws -> [TensorFusionStatistics] {
        try validate([fused] + models)
        if let base { try validate(models, base: base) }
        return fused.names.map { name in
            let f = fused.values[name]!
            let distances = models.map { distance(f, $0.values[name]!) }
            var norms: [Double]?, cosines: [Double]?
            if let b = base?.values[name] {
                let taus = models.map { m in zip(m.values[name]!, b).map { Double($0) - Double($1) } }
                let n = taus.map { t in t.reduce(0) { $0 + $1 * $1 }.squareRoot() }
                var c: [Double] = []
                for i in 0..<taus.count {
                    for j in (i + 1)..<max(i + 1, taus.count) {
                        let dot = zip(taus[i], taus[j]).reduce(0) { $0 + $1.0 * $1.1 }
                        c.append(n[i] > 0 && n[j] > 0 ? dot / (n[i] * n[j]) : 0)
                    }
                }
                (norms, cosines) = (n, c)
            }
            return TensorFusionStatistics(name: name, distanceToModel: distances, taskVectorNorm: norms,
                                          taskVectorCosine: cosines, signConflictFraction: merge?.signConflictFraction[name],
                                          keptFraction: merge?.keptFraction[name])
        }
    }

    /// `‖a − b‖₂` in float64.
    static func distance(_ a: [Float], _ b: [Float]) -> Double {
        var s = 0.0
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                for j in 0..<a.count { let d = Double(a[j]) - Double(b[j]); s += d * d }
            }
        }
        return s.squareRoot()
    }
}
