import Foundation

/// What one forward pass of a router did, for the router metrics (ARCHITECTURE §2): counts and
/// sums, so that several steps can be added up before ratios are taken.
public struct RouterStepStatistics: Equatable, Sendable {
    /// Tokens in the batch, T.
    public var tokens: Int
    /// Assignments each expert served after capacity (`Routing.count(e)`).
    public var load: [Int]
    /// Assignments each expert was chosen for before capacity (`Routing.chosen`; expert choice:
    /// its tokens): the load c that balancing evens out, and that of the maximal violation.
    public var selected: [Int]
    /// Σ of the gates of each expert's served assignments (the mass it adds to the outputs).
    public var gateMass: [Double]
    /// What could be dropped: the T·k selections of a token-choice router (`hash`, `domain`
    /// included), or the T tokens of `expert_choice`.
    public var routed: Int
    /// What was dropped: selections refused by a full expert (token choice), or tokens that no
    /// expert picked (expert choice); either passes through the residual unchanged.
    public var dropped: Int
    /// `Σ_t H(p_t)`, `H(p) = −Σ_e p_e log p_e` over the routing probabilities (noisy ones while
    /// `noisy_topk` trains; sigmoid scores normalised, `s_te / Σ_j s_tj`). Routers without probabilities use their fixed gates: 1/k on k
    /// experts for `hash` (H = log k), one gate of 1 for `domain` (H = 0).
    public var entropySum: Double
    /// Raw (unweighted) load-balancing loss `E · Σ_i f_i P_i` of this layer (0 without one).
    public var auxLoss: Double
    /// Raw z-loss `mean_t lse_t²` of this layer (0 for `hash` and `domain`).
    public var zLoss: Double

    public init(experts: Int) {
        tokens = 0; load = [Int](repeating: 0, count: experts); routed = 0; dropped = 0
        selected = [Int](repeating: 0, count: experts); gateMass = [Double](repeating: 0, count: experts)
        entropySum = 0; auxLoss = 0; zLoss = 0
    }
}

extension MoERouter {
    /// Statistics of the last forward pass: O(T·E) over `routing` and the probabilities, no
    /// allocation beyond the result.
    public func lastStepStatistics() -> RouterStepStatistics {
        let r = routing, e = config.experts, n = r.tokens
        var s = RouterStepStatistics(experts: e)
        s.tokens = n
        for i in 0..<e {
            s.load[i] = r.count(i)
            var mass: Double = 0
            for a in r.offsets[i]..<r.offsets[i + 1] { mass += Double(r.gate[a]) }
            s.gateMass[i] = mass
        }
        if config.router == .expertChoice {
            var served = [Bool](repeating: false, count: n)
            for t in r.token { served[t] = true }
            s.routed = n
            s.dropped = served.reduce(0) { $0 + ($1 ? 0 : 1) }
            s.selected = s.load
        } else {
            for i in 0..<e { s.selected[i] = r.chosen[i] }
            s.routed = r.chosen.reduce(0, +)
            s.dropped = s.routed - r.total
        }
        if config.router.isLearned {
            let p = probs.data
            var h: Double = 0
            if config.score == .sigmoid {
                for t in 0..<n {
                    for i in 0..<e where p[t * e + i] > 0 {
                        let q = Double(p[t * e + i]) / Double(scoreSum[t])
                        h -= q * log(q)
                    }
                }
            } else {
                for i in 0..<(n * e) where p[i] > 0 { h -= Double(p[i]) * log(Double(p[i])) }
            }
            s.entropySum = h
        } else if config.router == .hash {
            s.entropySum = Double(n) * log(Double(config.k))
        }
        s.auxLoss = Double(auxLoss)
        s.zLoss = Double(zLoss)
        return s
    }
}
