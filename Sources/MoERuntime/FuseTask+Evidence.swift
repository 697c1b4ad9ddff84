import MoEData
import MoEFusion
import MoEHDF5

/// The evidence of issue 6 item 3: interpolation curves, loss barriers and per-tensor statistics.
extension FuseTask {
    /// α = 0, 0.1, …, 1 (11 points).
    static let alphas: [Double] = (0...10).map { Double($0) / 10 }

    struct Curve {
        var a: String, b: String
        /// What the curve is measured on (`barrierDomains`).
        var data = "val"
        /// Validation loss and accuracy of θ(α) = (1−α)θ_a + αθ_b at each of `alphas`.
        var losses: [Double], accuracies: [Double]
        /// The loss barrier max over α of [L(α) − ((1−α)·L(0) + α·L(1))]; 0 at the ends, so never
        /// below 0.
        var barrier: Double { Self.barrier(losses) }
        /// The same on the validation error 1 − accuracy: the "error barrier" of Frankle et al.
        /// 2020 ("Linear mode connectivity and the lottery ticket hypothesis"). Experts that know
        /// different domains can have a concave loss path on the full split (their confident
        /// mistakes cost more than a near-uniform average does), so the error barrier is reported too.
        var errorBarrier: Double { Self.barrier(accuracies.map { 1 - $0 }) }

        static func barrier(_ values: [Double]) -> Double {
            let (l0, l1) = (values.first!, values.last!)
            return zip(alphas, values).map { alpha, l in l - ((1 - alpha) * l0 + alpha * l1) }.max()!
        }
    }

    /// The validation loss and accuracy along the straight line from `x` (α = 0) to `y` (α = 1),
    /// interpolated in float32 as `Fusion.average` does, on the validation data of `domains` (nil:
    /// the whole split; for LM experts a fixed subset of it, `FusionProbe.curveSubset`). For LM experts the loss is the mean nats per predicted token (§5.4) and
    /// the accuracy the next-token accuracy, so the error barrier is on the next-token error.
    static func interpolation(_ a: String, _ b: String, _ x: NamedTensors, _ y: NamedTensors, on domains: Set<Int>?,
                              probe: any FusionProbe) throws -> Curve {
        let points = try alphas.map { alpha -> (loss: Double, accuracy: Double) in
            let point = alpha == 0 ? x : alpha == 1 ? y : try Fusion.average([x, y], weights: [1 - alpha, alpha], normalize: false)
            return probe.curvePoint(point, domains: domains)
        }
        return Curve(a: a, b: b, losses: points.map(\.loss), accuracies: points.map(\.accuracy))
    }

    /// The validation data a path between models is measured on, as the domains it holds, and
    /// its description: with `split.shard_by: domain`, the validation data of the domains the
    /// path's experts were trained on (expert i: domains d with d mod E = i; a path between two
    /// experts: both experts' domains; fused–expert i: expert i's) among the domains `present`
    /// in the validation split, else the whole validation split (nil). Domain experts are
    /// confidently wrong on the domains they never saw, so on the whole split their own losses
    /// are high and any average looks "better" (a concave path, barrier 0); on their own domains
    /// the path shows whether the average keeps what each endpoint knows.
    func barrierDomains(experts: [Int], present: [Int]?) -> (domains: Set<Int>?, description: String) {
        guard spec.split.shardBy == .domain, let present else { return (nil, "val") }
        let e = spec.experts
        let domains = present.filter { experts.contains($0 % e) }
        guard !domains.isEmpty else { return (nil, "val") }
        return (Set(domains), "val, domain" + (domains.count == 1 ? " " : "s ") + domains.map(String.init).joined(separator: ", "))
    }

    /// Whether fusion collapsed, and why (nil: it did not). Four documented tests, any of which flags it:
    /// 1. the fused model is worse than the worst expert: a higher validation loss, or a lower
    ///    validation accuracy;
    /// 2. the largest loss barrier between two experts exceeds `barrierThresholdFraction · ln(classes)`
    ///    (half the loss of a uniform guess; for LM experts classes = the vocabulary and the
    ///    accuracies below are next-token accuracies);
    /// 3. the fused model keeps less than half of the experts' mean validation-accuracy gain over
    ///    chance (1/classes): acc_fused − 1/C < ½ (mean_i acc_i − 1/C). Weights averaged across
    ///    different basins give a near-uniform predictor, whose loss can still look moderate;
    /// 4. the largest error barrier between two experts exceeds half that mean gain: the straight
    ///    path between them loses at least half of what training gained. (Domain experts are
    ///    confidently wrong off their domains, so their loss paths are often concave, loss barrier
    ///    0, even between independent initialisations; the error barrier still shows the valley.)
    static func collapse(fused: Metrics, experts: [Metrics], barrier: Double, threshold: Double, errorBarrier: Double,
                         classes: Int) -> String? {
        var reasons: [String] = []
        let worst = experts.map(\.valLoss).max()!
        if fused.valLoss > worst {
            reasons.append("the fused model's val loss \(formatMetric(fused.valLoss)) is worse than the worst expert's \(formatMetric(worst))")
        }
        let worstAccuracy = experts.map(\.valAccuracy).min()!
        if fused.valAccuracy < worstAccuracy {
            reasons.append("the fused model's val accuracy \(formatMetric(fused.valAccuracy)) is below the worst expert's \(formatMetric(worstAccuracy))")
        }
        if barrier > threshold { reasons.append("the loss barrier between experts is \(formatMetric(barrier)) (threshold \(formatMetric(threshold)))") }
        let chance = 1 / Double(classes), mean = experts.map(\.valAccuracy).reduce(0, +) / Double(experts.count)
        if fused.valAccuracy - chance < 0.5 * (mean - chance) {
            reasons.append("the fused model's val accuracy \(formatMetric(fused.valAccuracy)) keeps less than half of the experts' mean gain over chance "
                           + "(mean \(formatMetric(mean)), chance \(formatMetric(chance)))")
        }
        if errorBarrier > 0.5 * (mean - chance) {
            reasons.append("the error barrier between experts is \(formatMetric(errorBarrier)), more than half the experts' mean accuracy gain over chance "
                           + "(\(formatMetric(mean - chance)))")
        }
        return reasons.isEmpty ? nil : "fusion collapsed: " + reasons.joined(separator: "; ") + " — weight averaging needs experts in one basin (a shared initialisation)"
    }

    /// `/fusion/tensors`: one row per tensor (`name`, in checkpoint order), one column per expert:
    /// `distance` ‖θ_fused − θ_i‖₂, `task_vector_norm` ‖θ_i − θ₀‖₂, `task_vector_cosine` cos(τ_i, τ_j)
    /// per pair i < j in the order (0,1), (0,2), …; with TIES/DARE `kept_fraction` and
    /// `sign_conflict_fraction` per tensor.
    static func writeStatistics(_ stats: [TensorFusionStatistics], experts: Int, to group: H5Group) throws {
        let t = stats.count
        try group.createString("tensors/names", stats.map(\.name).joined(separator: "\n"))
        try group.createDataset("tensors/distance", stats.flatMap(\.distanceToModel), shape: [t, experts])
        if stats.allSatisfy({ $0.taskVectorNorm != nil }) {
            try group.createDataset("tensors/task_vector_norm", stats.flatMap { $0.taskVectorNorm! }, shape: [t, experts])
            let pairs = experts * (experts - 1) / 2
            if pairs > 0 { try group.createDataset("tensors/task_vector_cosine", stats.flatMap { $0.taskVectorCosine! }, shape: [t, pairs]) }
        }
        if stats.allSatisfy({ $0.keptFraction != nil }) {
            try group.createDataset("tensors/kept_fraction", stats.map { $0.keptFraction! })
        }
        if stats.allSatisfy({ $0.signConflictFraction != nil }) {
            try group.createDataset("tensors/sign_conflict_fraction", stats.map { $0.signConflictFraction! })
        }
    }
}
