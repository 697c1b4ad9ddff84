/// The outcome of `Fusion.greedySoup`.
public struct GreedySoupResult: Equatable, Sendable {
    /// Indices of the models in the soup, in the order they were added (the best model first).
    public var chosen: [Int]
    /// The uniform average of the chosen models.
    public var soup: NamedTensors
    /// The soup's validation score.
    public var score: Double
    /// Each model's own validation score (as given or as computed).
    public var individualScores: [Double]
    /// The order in which the models were considered (descending score, ties by index).
    public var order: [Int]
}

extension Fusion {
    /// Greedy soup (Wortsman et al. 2022, "Model soups", Algorithm 1 / recipe "greedy"):
    /// 1. order the models by their own validation score, descending, ties by lower index
    ///    (NaN scores count as −∞ and go last);
    /// 2. the soup starts as the best model alone;
    /// 3. for each further model in that order, form the uniform average of the soup's models and
    ///    the candidate; keep the candidate only if that average scores *strictly* higher than the
    ///    current soup (issue 6; the paper's Algorithm 1 accepts on ≥, which grows the soup on ties).
    ///
    /// `validationScore` scores a model (higher is better, e.g. validation accuracy or −loss); it
    /// is called once per model whose score is not in `individualScores`, then once per candidate.
    public static func greedySoup(_ models: [NamedTensors], individualScores: [Double]? = nil,
                                  validationScore: (NamedTensors) throws -> Double) throws -> GreedySoupResult {
        try validate(models)
        if let s = individualScores, s.count != models.count {
            throw FusionError.invalidParameter("greedy_soup: \(s.count) scores for \(models.count) models")
        }
        let scores = try individualScores ?? models.map { try validationScore($0) }
        let key = scores.map { $0.isNaN ? -Double.infinity : $0 }
        let order = models.indices.sorted { key[$0] != key[$1] ? key[$0] > key[$1] : $0 < $1 }
        var chosen = [order[0]]
        var soup = models[order[0]]
        var best = key[order[0]]
        for candidate in order.dropFirst() {
            let trial = combine((chosen + [candidate]).map { models[$0] },
                                coefficients: Array(repeating: 1 / Double(chosen.count + 1), count: chosen.count + 1))
            let score = try validationScore(trial)
            if !score.isNaN && score > best {
                chosen.append(candidate)
                soup = trial
                best = score
            }
        }
        return GreedySoupResult(chosen: chosen, soup: soup, score: best, individualScores: scores, order: order)
    }

    /// Expert merging for a replicate MoE (collapsing the experts of one MoE layer into a dense
    /// FFN): `values` is a tensor of shape `[E, d₁, …]` (e.g. `[E, out, in]` weights or `[E, out]`
    /// biases) and the result, of shape `[d₁, …]`, is `Σ_e w_e · values[e]` with `w_e = load_e /
    /// Σ load` (each expert's routing load, e.g. its token count), or `1/E` when `load` is nil.
    /// Loads must be finite, non-negative and not all zero.
    public static func mergeExperts(_ values: [Float], shape: [Int], load: [Double]? = nil) throws -> (values: [Float], shape: [Int]) {
        guard let experts = shape.first, experts > 0, shape.allSatisfy({ $0 >= 0 }), values.count == shape.reduce(1, *) else {
            throw FusionError.invalidParameter("mergeExperts: shape \(shape) does not describe \(values.count) values with a leading expert axis")
        }
        let w = try FusionWeights.explicit(load ?? Array(repeating: 1, count: experts), modelCount: experts)
        let size = values.count / experts
        var out = [Float](repeating: 0, count: size)
        out.withUnsafeMutableBufferPointer { o in
            values.withUnsafeBufferPointer { v in
                for e in 0..<experts where w[e] != 0 {
                    let we = Float(w[e])
                    let base = e * size
                    for j in 0..<size { o[j] += we * v[base + j] }
                }
            }
        }
        return (out, Array(shape.dropFirst()))
    }
}
