import XCTest
import MoECore
@testable import MoENN

/// `MoERouter.lastStepStatistics()`: the counts behind the router metrics, checked against
/// values computed independently from the routing and the probabilities.
final class RouterStatisticsTests: XCTestCase {
    private func routed(_ router: RouterKind, k: Int, capacityFactor: Double?, n: Int = 40) -> MoERouter {
        let config = MoEConfig(experts: 4, blocks: [0], router: router, k: k, capacityFactor: capacityFactor, minCapacity: 1,
                               hashSeed: 5)
        let r = MoERouter("blocks/0/moe", index: 0, hidden: 6, config: config, moeLayers: 1)
        r.initialize(seed: 2)
        r.weight.value.scale(by: 4)
        let x = Tensor(shape: [n, 6])
        var rng = RNG(seed: 3, purpose: "x")
        rng.fillNormal(x)
        let domains = (0..<n).map { $0 % 3 }
        let keys: [UInt64] = (0..<n).map { RNG.mix(UInt64($0)) }
        domains.withUnsafeBufferPointer { d in
            keys.withUnsafeBufferPointer { kp in
                var context = ForwardContext(training: false, step: 0, seed: 0, domains: d.baseAddress!)
                context.sampleKeys = kp.baseAddress!
                r.forward(x.data, rows: n, context: context)
            }
        }
        return r
    }

    func testDroplessTopKRoutesEverySelection() {
        let r = routed(.topk, k: 2, capacityFactor: nil)
        let s = r.lastStepStatistics()
        XCTAssertEqual(s.tokens, 40)
        XCTAssertEqual(s.load.reduce(0, +), 80)
        XCTAssertEqual(s.routed, 80)
        XCTAssertEqual(s.dropped, 0)
        var h = 0.0
        for t in 0..<40 {
            for e in 0..<4 { let p = Double(r.probs.data[t * 4 + e]); h -= p * log(p) }
        }
        XCTAssertEqual(s.entropySum, h, accuracy: 1e-9)
        XCTAssertEqual(s.auxLoss, Double(r.auxLoss))
        XCTAssertEqual(s.zLoss, Double(r.zLoss))
        XCTAssertGreaterThan(s.zLoss, 0)
    }

    func testCapacityDropsAreCounted() {
        // Capacity max(1, ⌈1·40/4 · 0.5⌉) = 5 per expert: at most 20 of the 40 selections survive.
        let s = routed(.switch, k: 1, capacityFactor: 0.5).lastStepStatistics()
        XCTAssertEqual(s.routed, 40)
        XCTAssertTrue(s.load.allSatisfy { $0 <= 5 }, "\(s.load)")
        XCTAssertEqual(s.dropped, 40 - s.load.reduce(0, +))
        XCTAssertGreaterThanOrEqual(s.dropped, 20)
    }

    func testExpertChoiceCountsUnservedTokens() {
        let r = routed(.expertChoice, k: 1, capacityFactor: 0.5)
        let s = r.lastStepStatistics()
        XCTAssertEqual(s.load, [5, 5, 5, 5], "each expert takes its capacity")
        XCTAssertEqual(s.routed, 40)
        XCTAssertEqual(s.dropped, 40 - Set(r.routing.token).count)
        XCTAssertGreaterThanOrEqual(s.dropped, 20)
        XCTAssertEqual(s.auxLoss, 0, "no load-balancing loss for expert choice")
    }

    func testFixedRoutersUseTheirGatesForEntropy() {
        let hash = routed(.hash, k: 2, capacityFactor: nil).lastStepStatistics()
        XCTAssertEqual(hash.entropySum, 40 * log(2.0), accuracy: 1e-9)
        XCTAssertEqual([hash.auxLoss, hash.zLoss], [0, 0])
        let domain = routed(.domain, k: 1, capacityFactor: nil).lastStepStatistics()
        XCTAssertEqual(domain.entropySum, 0)
        XCTAssertEqual(domain.load, [14, 13, 13, 0], "domains 0, 1, 2 of 40 rows go to experts 0, 1, 2")
    }
}
