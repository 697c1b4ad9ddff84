import XCTest
import MoECore
@testable import MoENN

/// Finite-difference checks of the MoE layer: every router, with and without capacity, with the
/// load-balancing and z losses on. The loss is `Σ w ⊙ y + auxiliaryLoss`. Inputs are chosen away
/// from routing ties: the test asserts that no perturbation changes the assignment, so a
/// mismatch can only come from a wrong derivative.
final class MoEGradientTests: XCTestCase {
    struct Case {
        var router: RouterKind
        var k: Int
        var capacityFactor: Double?
        var normalize = true
        var jitter: Float = 0
        var score: RouterScore = .softmax
        var balance: RouterBalance = .auxLoss
    }

    private func check(_ c: Case, seed: UInt64 = 1, file: StaticString = #filePath, line: UInt = #line) {
        let (n, h, f, e) = (12, 6, 8, 4)
        let config = MoEConfig(experts: e, blocks: [0], router: c.router, k: c.k, capacityFactor: c.capacityFactor,
                               minCapacity: 1, dropPolicy: .probs, auxLoss: 0.5, zLoss: 0.2, jitter: c.jitter,
                               normalizeTopk: c.normalize, hashSeed: 3, score: c.score, balance: c.balance)
        let layer = MoELayer("blocks/0/moe", index: 0, hidden: h, ffn: f, activation: .gelu, config: config, moeLayers: 1)
        layer.initialize(seed: seed)
        // A sharper router so the top-k margins are wide.
        layer.router.weight.value.scale(by: 6)
        if let b = layer.router.expertBias {
            // A bias that changes some selections (it is a constant of the loss: no gradient).
            for i in 0..<e { b.value.data[i] = [0.3, -0.2, 0.1, -0.25][i] }
        }
        let x = randomTensor([n, h], seed: seed + 1, purpose: "x")
        let w = randomTensor([n, h], seed: seed + 2, purpose: "w")
        let domains = (0..<n).map { $0 % 3 }
        // The model hashes each sample's raw input into a key; fixed keys stand in for that here.
        let keys: [UInt64] = (0..<n).map { RNG.mix(UInt64($0)) }
        let y = Tensor(shape: [n, h])
        let ctx = ForwardContext(training: true, step: 5, seed: 9)
        func routingKey() -> [Int] { layer.router.routing.token + layer.router.routing.offsets }
        let loss = { () -> Double in
            domains.withUnsafeBufferPointer { d in
                keys.withUnsafeBufferPointer { k in
                    var cx = ctx
                    cx.domains = d.baseAddress!
                    cx.sampleKeys = k.baseAddress!
                    layer.forward(x.data, rows: n, into: y.data, context: cx)
                }
            }
            return weightedSum(y.data, w) + Double(layer.auxiliaryLoss)
        }
        _ = loss()
        let base = routingKey()
        layer.parameters.zeroGrad()
        let dx = Tensor(shape: [n, h])
        layer.backward(w.data, rows: n, dx: dx.data)
        let gc = GradientCheck(h: 1e-3, atol: 2e-3, rtol: 2e-2)
        var stable = true
        let guarded = { () -> Double in
            let v = loss()
            if routingKey() != base { stable = false }
            return v
        }
        gc.assertMatches("\(c) dx", analytic: dx, numeric: gc.numerical(x, loss: guarded), file: file, line: line)
        for p in layer.parameters {
            gc.assertMatches("\(c) \(p.name)", analytic: p.grad, numeric: gc.numerical(p.value, loss: guarded), file: file, line: line)
        }
        XCTAssertTrue(stable, "\(c): a perturbation changed the routing; pick inputs further from ties", file: file, line: line)
        if c.capacityFactor != nil && c.router.isTokenChoice {
            XCTAssertLessThan(layer.router.routing.total, n * c.k, "\(c): capacity must drop something for the test to mean anything",
                              file: file, line: line)
        }
    }

    func testTopKDropless() { check(Case(router: .topk, k: 2, capacityFactor: nil)) }
    func testTopKWithoutRenormalisation() { check(Case(router: .topk, k: 2, capacityFactor: nil, normalize: false)) }
    func testTopKWithCapacity() { check(Case(router: .topk, k: 2, capacityFactor: 0.75)) }
    func testSwitchDropless() { check(Case(router: .switch, k: 1, capacityFactor: nil)) }
    func testSwitchWithCapacity() { check(Case(router: .switch, k: 1, capacityFactor: 0.75)) }
    func testTopKWithJitter() { check(Case(router: .topk, k: 2, capacityFactor: nil, jitter: 0.1)) }
    func testNoisyTopK() { check(Case(router: .noisyTopk, k: 2, capacityFactor: nil)) }
    func testExpertChoice() { check(Case(router: .expertChoice, k: 2, capacityFactor: 1.0)) }
    func testHash() { check(Case(router: .hash, k: 2, capacityFactor: nil)) }
    func testDomain() { check(Case(router: .domain, k: 1, capacityFactor: nil)) }
    // Sigmoid scores (DeepSeek-V3): gates, normalised gates, aux loss on s / Σ s, z-loss on the logits.
    func testSigmoidTopKDropless() { check(Case(router: .topk, k: 2, capacityFactor: nil, score: .sigmoid)) }
    func testSigmoidTopKWithoutRenormalisation() { check(Case(router: .topk, k: 2, capacityFactor: nil, normalize: false, score: .sigmoid)) }
    func testSigmoidTopKWithCapacity() { check(Case(router: .topk, k: 2, capacityFactor: 0.75, score: .sigmoid)) }
    func testSigmoidSwitchWithCapacity() { check(Case(router: .switch, k: 1, capacityFactor: 0.75, score: .sigmoid)) }
    // The expert bias in selection (loss-free balancing): the gates stay bias-free.
    func testSigmoidTopKWithExpertBias() { check(Case(router: .topk, k: 2, capacityFactor: nil, score: .sigmoid, balance: .bias)) }
    func testSoftmaxTopKWithExpertBiasAndCapacity() { check(Case(router: .topk, k: 2, capacityFactor: 0.75, balance: .bias)) }
    func testSigmoidSwitchWithoutBalancing() { check(Case(router: .switch, k: 1, capacityFactor: nil, score: .sigmoid, balance: .none)) }
}

/// The whole model with MoE blocks: cross-entropy plus the weighted aux and z losses, with respect
/// to every element of every parameter (embed, norms, dense and MoE blocks, routers, head).
final class MoEModelGradientTests: XCTestCase {
    func testWholeModelWithMoEBlocksEveryParameter() {
        for (router, capacity) in [(RouterKind.topk, nil), (.topk, 1.0), (.switch, 1.5), (.noisyTopk, nil), (.expertChoice, 1.0)] as [(RouterKind, Double?)] {
            let moe = MoEConfig(experts: 3, blocks: [0, 2], router: router, k: router == .switch ? 1 : 2, capacityFactor: capacity,
                                minCapacity: 1, auxLoss: 0.3, zLoss: 0.1)
            let config = ModelConfig(features: 4, classes: 3, hidden: 6, ffn: 8, blocks: 3, activation: .gelu, dropout: 0.1, moe: moe)
            let model = ResidualMLP(config: config, seed: 21)
            for layer in model.moeLayers { layer.router.weight.value.scale(by: 8) }  // wide routing margins
            let n = 10
            let x = randomTensor([n, 4], seed: 22, purpose: "x")
            let labels = (0..<n).map { $0 % 3 }
            let ctx = ForwardContext(training: true, step: 4, seed: 5)
            func routing() -> [[Int]] { model.moeLayers.map { $0.router.routing.token + $0.router.routing.offsets } }
            let loss = { () -> Double in
                labels.withUnsafeBufferPointer { model.forward(x.data, labels: $0.baseAddress!, rows: n, context: ctx).loss } + model.auxiliaryLoss
            }
            _ = loss()
            let base = routing()
            model.parameters.zeroGrad()
            labels.withUnsafeBufferPointer { lb in
                model.forward(x.data, labels: lb.baseAddress!, rows: n, context: ctx)
                model.backward()
            }
            let check = GradientCheck(h: 1e-3, atol: 2e-3, rtol: 2e-2)
            var stable = true
            let guarded = { () -> Double in let v = loss(); if routing() != base { stable = false }; return v }
            for p in model.parameters {
                check.assertMatches("\(router) cap \(String(describing: capacity)) \(p.name)", analytic: p.grad,
                                    numeric: check.numerical(p.value, loss: guarded))
            }
            XCTAssertTrue(stable, "\(router): a perturbation changed the routing; pick inputs further from ties")
        }
    }
}
