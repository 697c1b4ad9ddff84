import XCTest
import MoECore
@testable import MoENN

/// What the routing decides: capacity, drop priority, grouping, pass-through of dropped tokens.
final class MoERoutingTests: XCTestCase {
    private func layer(_ router: RouterKind, k: Int, capacity: Double?, policy: DropPolicy = .probs, experts: Int = 4) -> MoELayer {
        let config = MoEConfig(experts: experts, blocks: [0], router: router, k: k, capacityFactor: capacity, minCapacity: 1,
                               dropPolicy: policy)
        let l = MoELayer("blocks/0/moe", index: 0, hidden: 8, ffn: 16, activation: .gelu, config: config, moeLayers: 1)
        l.initialize(seed: 3)
        return l
    }

    private func run(_ l: MoELayer, tokens n: Int) -> (y: Tensor, x: Tensor) {
        let x = randomTensor([n, 8], seed: 4, purpose: "x"), y = Tensor(shape: [n, 8])
        l.forward(x.data, rows: n, into: y.data, context: ForwardContext(training: false, step: 0, seed: 1))
        return (y, x)
    }

    func testCapacityBoundsEveryExpertAndDroppedTokensGetZero() {
        let l = layer(.topk, k: 2, capacity: 0.5)
        let n = 32
        let (y, _) = run(l, tokens: n)
        let r = l.router.routing
        let cap = l.config.capacity(tokens: n)!
        XCTAssertEqual(cap, 8, "⌈k·T/E · cf⌉ = ⌈2·32/4 · 0.5⌉")
        for e in 0..<4 { XCTAssertLessThanOrEqual(r.count(e), cap) }
        XCTAssertLessThan(r.total, n * 2, "something was dropped")
        XCTAssertEqual(r.chosen.reduce(0, +), n * 2, "f counts every selection before capacity")
        let served = Set(r.token)
        for t in 0..<n where !served.contains(t) {
            for j in 0..<8 { XCTAssertEqual(y[t, j], 0, "a fully dropped token adds nothing; the residual passes it") }
        }
        // Grouped by expert, tokens ascending within each.
        for e in 0..<4 {
            let tokens = Array(r.token[r.offsets[e]..<r.offsets[e + 1]])
            XCTAssertEqual(tokens, tokens.sorted())
        }
    }

    func testPositionPolicyKeepsFirstChoicesBeforeSecondChoices() {
        let l = layer(.topk, k: 2, capacity: 0.5, policy: .position)
        _ = run(l, tokens: 32)
        let r = l.router.routing
        // A second choice (slot j = 1) is only kept if its expert still had room after all first choices.
        var firstChoiceLoad = [Int](repeating: 0, count: 4)
        for a in 0..<r.total where r.slot[a] % 2 == 0 {
            for e in 0..<4 where (r.offsets[e]..<r.offsets[e + 1]).contains(a) { firstChoiceLoad[e] += 1 }
        }
        for e in 0..<4 {
            let secondKept = (r.offsets[e]..<r.offsets[e + 1]).filter { r.slot[$0] % 2 == 1 }.count
            if secondKept > 0 { XCTAssertLessThan(firstChoiceLoad[e], 8, "expert \(e) kept a second choice while first choices overflowed") }
        }
    }

    func testProbsPolicyKeepsTheMostProbableAssignments() {
        let l = layer(.switch, k: 1, capacity: 0.5)
        _ = run(l, tokens: 32)
        let r = l.router.routing
        let p = l.router.probs.data
        for e in 0..<4 {
            let kept = Set(r.token[r.offsets[e]..<r.offsets[e + 1]])
            // Every token that chose e but was dropped has a lower probability than every kept one.
            let minKept = kept.map { p[$0 * 4 + e] }.min() ?? 1
            for t in 0..<32 where !kept.contains(t) {
                var best = 0
                for i in 1..<4 where p[t * 4 + i] > p[t * 4 + best] { best = i }
                if best == e { XCTAssertLessThanOrEqual(p[t * 4 + e], minKept) }
            }
        }
    }

    func testExpertChoiceGivesEachExpertExactlyCapacityTokens() {
        let l = layer(.expertChoice, k: 2, capacity: 1.0)
        _ = run(l, tokens: 32)
        for e in 0..<4 { XCTAssertEqual(l.router.routing.count(e), 16, "C = ⌈2·32/4⌉") }
        XCTAssertEqual(l.router.auxLoss, 0, "expert choice is balanced by construction: no aux loss")
    }

    func testDroplessServesEverySelectionAndSwitchGateIsTheProbability() {
        let l = layer(.switch, k: 1, capacity: nil)
        _ = run(l, tokens: 20)
        let r = l.router.routing
        XCTAssertEqual(r.total, 20)
        for a in 0..<r.total {
            let t = r.token[a]
            let row = (0..<4).map { l.router.probs.data[t * 4 + $0] }
            XCTAssertEqual(r.gate[a], row.max()!)
        }
    }

    func testHashRoutingIsFixedPerSample() {
        let config = ModelConfig(features: 5, classes: 3, hidden: 8, ffn: 16, blocks: 1,
                                 moe: MoEConfig(experts: 4, blocks: [0], router: .hash, k: 1, hashSeed: 7))
        let model = ResidualMLP(config: config, seed: 1)
        let x = randomTensor([6, 5], seed: 2, purpose: "x")
        model.forwardLogits(x.data, rows: 6, context: ForwardContext(training: true, step: 0, seed: 1))
        let first = model.moeLayers[0].router.routing.token
        // Changing the weights changes the hidden states but not the hash assignment.
        model.parameters["embed/weight"]!.value.scale(by: 1.5)
        model.forwardLogits(x.data, rows: 6, context: ForwardContext(training: true, step: 1, seed: 1))
        XCTAssertEqual(model.moeLayers[0].router.routing.token, first)
    }
}
