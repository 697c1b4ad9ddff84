import MoECore

/// The outcome of `Fusion.optimizedWeights`.
public struct OptimizedWeightsResult: Equatable, Sendable {
    /// The best coefficients seen (on the simplex: non-negative, summing to 1).
    public var weights: [Double]
    /// The loss at `weights`.
    public var loss: Double
    /// The loss at the uniform starting point (`loss ≤ uniformLoss` always).
    public var uniformLoss: Double
    /// How many times the loss closure was called (≤ the budget).
    public var evaluations: Int
    /// The final step size (below `tolerance` when the search converged within the budget).
    public var finalStep: Double
}

extension Fusion {
    /// Averaging coefficients on the probability simplex that minimise `loss(weights)` (for
    /// `fusion.weights: optimized`, the validation loss of the model averaged with those weights).
    ///
    /// Optimiser: derivative-free *pairwise compass search* on the simplex (a generating-set
    /// search, Kolda, Lewis & Torczon 2003, SIAM Review 45(3)), chosen because each loss
    /// evaluation is a whole validation pass and finite differences would cost M + 1 per step:
    /// - start at uniform `w = 1/M` with step `initialStep`;
    /// - a poll tries the directions "move mass from model j to model i" (`w_i += δ`,
    ///   `w_j −= δ`, `δ = min(step, w_j)`) for every ordered pair with `w_j > 0`, in an order
    ///   shuffled by `RNG(seed: seed, purpose: "fusion/optimized-weights", stream: poll index)`;
    ///   these directions generate the tangent cone of the simplex at every point, so faces
    ///   (a weight of exactly 0) are reachable and iterates never leave the simplex;
    /// - the first direction that lowers the loss strictly is taken, then repeated with the step
    ///   doubling while it keeps lowering the loss (a line search), and a new poll starts;
    /// - a poll without improvement halves the step; stop when `step < tolerance` or after
    ///   `maxEvaluations` loss calls.
    /// Only strict improvements are accepted, so the result is the best point seen and never worse
    /// than uniform. A NaN loss counts as +∞. Deterministic for a seed and a deterministic loss.
    public static func optimizedWeights(count: Int, seed: UInt64 = 0, maxEvaluations: Int = 100,
                                        initialStep: Double = 0.25, tolerance: Double = 1e-4,
                                        loss: ([Double]) throws -> Double) throws -> OptimizedWeightsResult {
        guard count > 0 else { throw FusionError.invalidParameter("optimized weights need at least one model") }
        guard maxEvaluations >= 1 else { throw FusionError.invalidParameter("optimized weights: maxEvaluations must be ≥ 1") }
        guard initialStep > 0, initialStep <= 1, tolerance > 0 else {
            throw FusionError.invalidParameter("optimized weights: need 0 < initialStep ≤ 1 and tolerance > 0")
        }
        var evaluations = 0
        func evaluate(_ w: [Double]) throws -> Double {
            evaluations += 1
            let f = try loss(w)
            return f.isNaN ? .infinity : f
        }
        var w = try FusionWeights.uniform(count: count)
        var f = try evaluate(w)
        let uniformLoss = f
        var step = initialStep
        let pairs = (0..<count).flatMap { i in (0..<count).filter { $0 != i }.map { (i, $0) } }
        var poll: UInt64 = 0
        func moved(_ w: [Double], _ i: Int, _ j: Int, _ step: Double) -> [Double]? {
            let delta = min(step, w[j])
            guard delta > 0 else { return nil }
            var c = w
            c[i] += delta
            c[j] = delta == w[j] ? 0 : w[j] - delta
            return c
        }
        search: while step >= tolerance && evaluations < maxEvaluations && count > 1 {
            var rng = RNG(seed: seed, purpose: "fusion/optimized-weights", stream: poll)
            poll += 1
            var order = pairs
            rng.shuffle(&order)
            for (i, j) in order {
                guard evaluations < maxEvaluations else { break search }
                guard let c = moved(w, i, j, step) else { continue }
                let fc = try evaluate(c)
                guard fc < f else { continue }
                (w, f) = (c, fc)
                var lineStep = step * 2
                while evaluations < maxEvaluations, let next = moved(w, i, j, lineStep) {
                    let fn = try evaluate(next)
                    guard fn < f else { break }
                    (w, f) = (next, fn)
                    lineStep *= 2
                }
                continue search
            }
            step /= 2
        }
        return OptimizedWeightsResult(weights: w, loss: f, uniformLoss: uniformLoss, evaluations: evaluations, finalStep: step)
    }
}
