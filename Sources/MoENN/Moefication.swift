import MoECore

/// MoEfication (Zhang et al. 2022, "MoEfication: Transformer Feed-forward Layers are Mixtures of
/// Experts"): a trained dense FFN `F(x) = W2 · act(W1 · x + b1) + b2` (`W1 [F, H]`, `W2 [H, F]`)
/// is split into E experts by partitioning its F hidden units into E groups `U_0 … U_{E−1}` of
/// `G = F / E` units each. Expert e is the sub-network of its group:
///
///     FFN_e(x) = k · W2[:, U_e] · act(W1[U_e] · x + b1[U_e]) + b2
///     (experts/w1[e] = W1[U_e], b1[e] = b1[U_e], w2[e] = k · W2[:, U_e], b2[e] = b2)
///
/// so that `Σ_e W2[:, U_e] · act(W1[U_e] · x + b1[U_e]) + b2 = F(x)` exactly (the hidden units
/// are only regrouped).
///
/// Gating. MoEfication sums the selected experts' outputs without weights; the MoE layer here
/// weights them by gates, `y = Σ_{e ∈ S(x)} g_e · FFN_e(x)`, with `|S(x)| = k` and, with
/// `normalize_topk`, `Σ_{e ∈ S} g_e = 1`. Each expert's `w2` is therefore scaled by `k` (and its
/// `b2` is the whole dense bias): with uniform gates `g_e = 1/k`,
///
///     y = Σ_{e ∈ S} W2[:, U_e] · act(W1[U_e] · x + b1[U_e]) + b2,
///
/// exactly MoEfication's unweighted sum of the selected groups (plus the dense output bias).
/// With `k = E` and a zero router every expert is selected with gate `1/E` and the moefied model
/// computes the dense function exactly (to float rounding): that is what
/// `MoeficationTests.testZeroRouterWithAllExpertsReproducesTheDenseLogits` checks. With the
/// fitted router the gates are the renormalised `softmax` of small logits, so `k·g_e ≈ 1` and
/// step 0 is close to the selected-groups sum; fine-tuning then learns the gates.
///
/// Router ("fitted", MoEfication's similarity selection): router row e is the mean input-weight
/// vector of group e, `r_e = (1/G) Σ_{i ∈ U_e} W1[i]`, so the logit `x · r_e` is the group's mean
/// pre-activation without its bias: the groups whose units are most excited by `x` rank first.
/// All rows are then scaled by one common factor (largest row norm `defaultRouterNorm`), which
/// keeps the ranking and the gates near `1/k` (see `fitRouter`). No training inputs are needed
/// (the router is a function of `W1` alone).
public enum Moefication {
    /// How hidden units are grouped (`split.method`).
    public enum Method: String, CaseIterable, Sendable { case cluster, contiguous, random }

    /// Lloyd iterations of the balanced k-means (`cluster`).
    public static let clusterIterations = 20

    /// Partitions `units` hidden units into `groups` equal groups (each sorted ascending, groups in
    /// a deterministic order). `w1` (`[units, hidden]`) is needed by `cluster` only.
    ///
    /// - `contiguous`: group g = units `g·G ..< (g+1)·G`.
    /// - `random`: a permutation drawn from `seed`, cut into consecutive runs of G.
    /// - `cluster`: `balancedKMeans` on the normalised rows of `w1`.
    public static func partition(units: Int, groups: Int, method: Method, w1: Tensor? = nil,
                                 seed: UInt64, iterations: Int = clusterIterations) -> [[Int]] {
        precondition(groups >= 1 && units % groups == 0, "moefication needs ffn (\(units)) divisible by experts (\(groups))")
        let size = units / groups
        switch method {
        case .contiguous:
            return (0..<groups).map { g in Array(g * size ..< (g + 1) * size) }
        case .random:
            var rng = RNG(seed: seed, purpose: "moefication/random")
            let perm = rng.permutation(units)
            return (0..<groups).map { g in perm[g * size ..< (g + 1) * size].sorted() }
        case .cluster:
            guard let w1 else { preconditionFailure("cluster partitioning needs w1") }
            precondition(w1.shape.count == 2 && w1.shape[0] == units)
            return balancedKMeans(normalizedRows(w1), points: units, groups: groups, seed: seed, iterations: iterations)
        }
    }

    /// Rows of `m [n, d]` scaled to unit Euclidean norm (zero rows stay zero), row-major `[n·d]`.
    public static func normalizedRows(_ m: Tensor) -> [Float] {
        let n = m.shape[0], d = m.count / max(n, 1)
        var v = m.array
        for i in 0..<n {
            var s: Float = 0
            for j in 0..<d { s += v[i * d + j] * v[i * d + j] }
            let inv = s > 0 ? 1 / s.squareRoot() : 0
            for j in 0..<d { v[i * d + j] *= inv }
        }
        return v
    }

    /// Balanced k-means of the `n` points `v [n·d]` into `groups` clusters of exactly `n / groups`.
    ///
    /// Init: the centroids are `groups` distinct points drawn from `seed`. Each of `iterations`
    /// rounds (stopping early when the assignment no longer changes):
    ///
    /// 1. Assignment by a greedy capacity rule: all `(point, cluster)` pairs are ordered by the
    ///    squared distance `‖v_i − μ_c‖²` ascending (ties: point index, then cluster index) and
    ///    taken in that order; a pair is accepted when the point is unassigned and the cluster
    ///    holds fewer than `n / groups` points. Every point ends in exactly one cluster and all
    ///    clusters have the same size.
    /// 2. Update: `μ_c` = the mean of the cluster's points.
    ///
    /// Returns the clusters' point indices, each sorted, clusters ordered by their smallest index.
    public static func balancedKMeans(_ v: [Float], points n: Int, groups: Int, seed: UInt64,
                                      iterations: Int) -> [[Int]] {
        precondition(groups >= 1 && n % groups == 0 && v.count % max(n, 1) == 0)
        let d = n == 0 ? 0 : v.count / n, size = n / groups
        var rng = RNG(seed: seed, purpose: "moefication/kmeans-init")
        var mu = [Float](repeating: 0, count: groups * d)
        for (c, i) in rng.permutation(n).prefix(groups).enumerated() {
            for j in 0..<d { mu[c * d + j] = v[i * d + j] }
        }
        var assignment = [Int](repeating: -1, count: n)
        var pairs: [(dist: Float, point: Int, cluster: Int)] = []
        pairs.reserveCapacity(n * groups)
        for _ in 0..<max(iterations, 1) {
            pairs.removeAll(keepingCapacity: true)
            for i in 0..<n {
                for c in 0..<groups {
                    var s: Float = 0
                    for j in 0..<d { let t = v[i * d + j] - mu[c * d + j]; s += t * t }
                    pairs.append((s, i, c))
                }
            }
            pairs.sort { ($0.dist, $0.point, $0.cluster) < ($1.dist, $1.point, $1.cluster) }
            var next = [Int](repeating: -1, count: n)
            var fill = [Int](repeating: 0, count: groups)
            for p in pairs where next[p.point] < 0 && fill[p.cluster] < size {
                next[p.point] = p.cluster
                fill[p.cluster] += 1
            }
            let changed = next != assignment
            assignment = next
            mu = centroids(v, points: n, assignment: assignment, groups: groups)
            if !changed { break }
        }
        var clusters = [[Int]](repeating: [], count: groups)
        for i in 0..<n { clusters[assignment[i]].append(i) }
        return clusters.sorted { ($0.first ?? 0) < ($1.first ?? 0) }
    }

    /// The mean of each cluster's points (`[groups·d]`).
    static func centroids(_ v: [Float], points n: Int, assignment: [Int], groups: Int) -> [Float] {
        let d = n == 0 ? 0 : v.count / n
        var mu = [Float](repeating: 0, count: groups * d)
        var count = [Int](repeating: 0, count: groups)
        for i in 0..<n {
            let c = assignment[i]
            count[c] += 1
            for j in 0..<d { mu[c * d + j] += v[i * d + j] }
        }
        for c in 0..<groups where count[c] > 0 {
            for j in 0..<d { mu[c * d + j] /= Float(count[c]) }
        }
        return mu
    }

    /// The k-means objective of a partition: `Σ_g Σ_{i ∈ g} ‖v_i − μ_g‖²` (μ_g the group's mean).
    public static func objective(_ v: [Float], points n: Int, groups: [[Int]]) -> Float {
        let d = n == 0 ? 0 : v.count / n
        var assignment = [Int](repeating: 0, count: n)
        for (g, members) in groups.enumerated() { for i in members { assignment[i] = g } }
        let mu = centroids(v, points: n, assignment: assignment, groups: groups.count)
        var total: Float = 0
        for i in 0..<n {
            let c = assignment[i]
            for j in 0..<d { let t = v[i * d + j] - mu[c * d + j]; total += t * t }
        }
        return total
    }
}

extension Moefication {
    /// The norm of the largest fitted router row (see `fitRouter`).
    public static let defaultRouterNorm: Float = 0.1

    /// Writes the fitted router into `weight [E, hidden]`: row e is the mean of the `w1` rows of
    /// group e, `r_e = (1/G) Σ_{i ∈ U_e} W1[i]`, then every row is multiplied by one common factor
    /// `norm / max_e ‖r_e‖`. The common positive factor leaves the ranking of the logits
    /// `x · r_e` unchanged for every x; it keeps them small (on the block's layer-normalised
    /// inputs, of roughly unit variance per coordinate, `|x · r_e| ≲ norm · √hidden` and
    /// typically about `norm`), so the selected gates stay close to `1/k` and step 0 is close to
    /// MoEfication's unweighted sum of the selected groups. Fine-tuning then learns the scale.
    public static func fitRouter(_ weight: Tensor, w1: Tensor, groups: [[Int]], norm: Float) {
        let h = w1.shape[1]
        weight.zero()
        var largest: Float = 0
        for (x, units) in groups.enumerated() {
            let row = weight.data + x * h
            for u in units { Kernels.add(h, w1.data + u * h, row) }
            for r in 0..<h { row[r] /= Float(units.count) }
            largest = max(largest, Kernels.dot(h, row, row).squareRoot())
        }
        guard largest > 0 else { return }
        for i in 0..<weight.count { weight.data[i] *= norm / largest }
    }

    /// The result of `moefy`: each MoE block's partition (group e = expert e's dense units).
    public struct Report: Sendable {
        public var groups: [Int: [[Int]]] = [:]
        /// The k-means objective of each block's partition on its normalised `w1` rows.
        public var objective: [Int: Float] = [:]
    }

    /// Initialises `moe` from the dense model's parameters (name → values), as described above:
    /// shared parameters (embedding, norms, head, FFNs of blocks that stay dense) are copied; the
    /// FFN of each MoE block i is partitioned by `method` (seed derived from `seed` and i) into the
    /// experts of `blocks/i/moe/experts/*`, with `w2` scaled by the layer's k; the router weight is
    /// the groups' mean `w1` rows. A `noisy_topk` noise projection keeps its zero initialisation.
    /// Works on any model kind (`mlp`, `transformer`): the MoE blocks are the model's MoE layers.
    @discardableResult
    public static func moefy(from dense: [String: Tensor], into moe: any TrainableModel, method: Method,
                             seed: UInt64, routerNorm: Float = defaultRouterNorm) throws -> Report {
        let layers = moe.moeLayers
        guard let config = layers.first?.config else { throw Upcycling.Mismatch(tensor: "moe", reason: "the target model has no MoE blocks") }
        let e = config.experts, h = layers[0].hidden
        func source(_ name: String) throws -> Tensor {
            guard let t = dense[name] else { throw Upcycling.Mismatch(tensor: name, reason: "missing from the dense checkpoint") }
            return t
        }
        var report = Report()
        for layer in layers {
            let block = layer.router.index
            func ffn(_ t: String) throws -> Tensor { try source(ParameterPath.ffn(block: block, tensor: t).name) }
            func experts(_ t: String) -> String { ParameterPath.experts(block: block, tensor: t).name }
            let w1 = try ffn("w1"), b1 = try ffn("b1"), w2 = try ffn("w2"), b2 = try ffn("b2")
            let f = w1.shape[0]
            let width = layer.ffn  // config.expertFFN, or the model's ffn
            guard w1.shape == [f, h], f == e * width else {
                throw Upcycling.Mismatch(tensor: ParameterPath.ffn(block: block, tensor: "w1").name,
                                         reason: "shape \(w1.shape) cannot be split into \(e) experts of width \(width) × hidden \(h)")
            }
            let groups = partition(units: f, groups: e, method: method, w1: w1,
                                   seed: RNG.mix(seed &+ UInt64(block)))
            report.groups[block] = groups
            report.objective[block] = objective(normalizedRows(w1), points: f, groups: groups)
            let scale = Float(config.k)
            let p = moe.parameters.reduce(into: [String: Parameter]()) { $0[$1.name] = $1 }
            guard let ew1 = p[experts("w1")], let eb1 = p[experts("b1")], let ew2 = p[experts("w2")], let eb2 = p[experts("b2")] else {
                throw Upcycling.Mismatch(tensor: "blocks/\(block)/moe/experts", reason: "missing from the MoE model")
            }
            for (x, units) in groups.enumerated() {
                for (j, u) in units.enumerated() {
                    (ew1.value.data + (x * width + j) * h).update(from: w1.data + u * h, count: h)
                    eb1.value.data[x * width + j] = b1.data[u]
                    for r in 0..<h { ew2.value.data[(x * h + r) * width + j] = scale * w2.data[r * f + u] }
                }
                (eb2.value.data + x * h).update(from: b2.data, count: h)
            }
            if let router = p[ParameterPath.router(block: block, tensor: "weight").name] { fitRouter(router.value, w1: w1, groups: groups, norm: routerNorm) }
        }
        let moeBlocks = Set(layers.map(\.router.index))
        for p in moe.parameters {
            let path = ParameterPath(p.name)
            if path.isMoE, let i = path.block, moeBlocks.contains(i) { continue }
            let t = try source(p.name)
            guard t.shape == p.shape else {
                throw Upcycling.Mismatch(tensor: p.name, reason: "the dense checkpoint has shape \(t.shape), the MoE model \(p.shape)")
            }
            p.value.copy(from: t)
        }
        return report
    }
}
