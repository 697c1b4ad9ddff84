import XCTest
import MoECore
@testable import MoENN

/// Shared experts (DeepSeekMoE): finite-difference checks of their backward inside the MoE layer
/// and in both model kinds, the forward against a direct computation, and sparse upcycling.
final class SharedExpertsTests: XCTestCase {
    /// `y = routed + Σ_s FFN^shared_s(x)`: the layer's output minus the same layer's output
    /// without shared experts (same routed weights) is the direct sum of the shared FFNs.
    func testForwardAddsEverySharedExpertWithGateOne() {
        let (n, h, f, e, s, sf) = (7, 6, 8, 4, 2, 5)
        let config = MoEConfig(experts: e, blocks: [0], router: .topk, k: 2, sharedExperts: s, sharedFFN: sf)
        let layer = MoELayer("blocks/0/moe", index: 0, hidden: h, ffn: f, activation: .relu, config: config, moeLayers: 1)
        layer.initialize(seed: 3)
        var plain = config
        plain.sharedExperts = 0
        let routed = MoELayer("blocks/0/moe", index: 0, hidden: h, ffn: f, activation: .relu, config: plain, moeLayers: 1)
        routed.initialize(seed: 3)
        XCTAssertEqual(layer.shared?.w1.shape, [s, sf, h])
        XCTAssertEqual(layer.shared?.w2.shape, [s, h, sf])
        XCTAssertEqual(layer.parameters.map(\.name).suffix(4),
                       ["blocks/0/moe/shared/w1", "blocks/0/moe/shared/b1", "blocks/0/moe/shared/w2", "blocks/0/moe/shared/b2"])
        XCTAssertEqual(Array(layer.parameters.prefix(routed.parameters.count)).map(\.name), routed.parameters.map(\.name))
        for (p, q) in zip(layer.parameters, routed.parameters) { XCTAssertTrue(p.value.bitwiseEqual(q.value), p.name) }
        let x = randomTensor([n, h], seed: 4, purpose: "x")
        let y = Tensor(shape: [n, h]), y0 = Tensor(shape: [n, h])
        let ctx = ForwardContext(training: false, step: 0, seed: 1)
        layer.forward(x.data, rows: n, into: y.data, context: ctx)
        routed.forward(x.data, rows: n, into: y0.data, context: ctx)
        let sh = layer.shared!
        for t in 0..<n {
            for j in 0..<h {
                var expected = Double(y0.data[t * h + j])
                for k in 0..<s {
                    var out = Double(sh.b2.value.data[k * h + j])
                    for u in 0..<sf {
                        var pre = Double(sh.b1.value.data[k * sf + u])
                        for i in 0..<h { pre += Double(sh.w1.value.data[(k * sf + u) * h + i]) * Double(x.data[t * h + i]) }
                        out += Double(sh.w2.value.data[(k * h + j) * sf + u]) * max(pre, 0)
                    }
                    expected += out
                }
                XCTAssertEqual(Double(y.data[t * h + j]), expected, accuracy: 1e-5)
            }
        }
    }

    /// ∂(Σ w ⊙ y + aux)/∂θ for every element of the layer's input and parameters, shared experts
    /// included, for a token-choice router with capacity (dropped tokens still pass through the
    /// shared experts) and for expert choice.
    func testLayerBackwardMatchesFiniteDifferences() {
        for (router, k, capacity) in [(RouterKind.topk, 2, 0.75), (.switch, 1, nil), (.expertChoice, 2, 1.0)] as [(RouterKind, Int, Double?)] {
            let (n, h, f) = (12, 6, 8)
            let config = MoEConfig(experts: 4, blocks: [0], router: router, k: k, capacityFactor: capacity, minCapacity: 1,
                                   auxLoss: 0.5, zLoss: 0.2, sharedExperts: 2, sharedFFN: 5)
            let layer = MoELayer("blocks/0/moe", index: 0, hidden: h, ffn: f, activation: .gelu, config: config, moeLayers: 1)
            layer.initialize(seed: 1)
            layer.router.weight.value.scale(by: 6)  // wide top-k margins
            let x = randomTensor([n, h], seed: 2, purpose: "x")
            let w = randomTensor([n, h], seed: 3, purpose: "w")
            let y = Tensor(shape: [n, h])
            let ctx = ForwardContext(training: true, step: 5, seed: 9)
            func routing() -> [Int] { layer.router.routing.token + layer.router.routing.offsets }
            let loss = { () -> Double in
                layer.forward(x.data, rows: n, into: y.data, context: ctx)
                return weightedSum(y.data, w) + Double(layer.auxiliaryLoss)
            }
            _ = loss()
            let base = routing()
            layer.parameters.zeroGrad()
            let dx = Tensor(shape: [n, h])
            layer.backward(w.data, rows: n, dx: dx.data)
            let gc = GradientCheck(h: 1e-3, atol: 2e-3, rtol: 2e-2)
            var stable = true
            let guarded = { () -> Double in let v = loss(); if routing() != base { stable = false }; return v }
            gc.assertMatches("\(router) dx", analytic: dx, numeric: gc.numerical(x, loss: guarded))
            for p in layer.parameters {
                gc.assertMatches("\(router) \(p.name)", analytic: p.grad, numeric: gc.numerical(p.value, loss: guarded))
            }
            XCTAssertTrue(stable, "\(router): a perturbation changed the routing")
        }
    }

    /// The residual MLP with shared experts in both MoE blocks, capacity 1.0: every parameter
    /// (the transformer's check is `TransformerGradientTests.testMoEModelWithSharedExpertsEveryParameter`).
    func testMLPWithSharedExpertsEveryParameter() {
        MoEModelGradientTests.assertEveryParameterGradient(
            MoEConfig(experts: 3, blocks: [0, 2], router: .topk, k: 2, capacityFactor: 1.0, minCapacity: 1,
                      auxLoss: 0.3, zLoss: 0.1, sharedExperts: 1, sharedFFN: 4), "shared experts")
    }

    /// Active parameters count the shared experts (always used) and k of E routed experts.
    func testActiveParametersCountTheSharedExperts() {
        let moe = MoEConfig(experts: 4, blocks: [1], router: .topk, k: 2, sharedExperts: 2, sharedFFN: 5)
        let model = ResidualMLP(config: ModelConfig(features: 4, classes: 3, hidden: 6, ffn: 8, blocks: 2, moe: moe), seed: 1)
        let expert = 2 * 6 * 8 + 8 + 6, shared = 2 * (2 * 6 * 5 + 5 + 6)
        XCTAssertEqual(model.parameters.filter { $0.name.contains("/shared/") }.scalarCount, shared)
        XCTAssertEqual(model.activeParameterCount, model.parameters.scalarCount - 2 * expert)
    }

    /// Sparse upcycling with S shared experts: every expert, routed and shared, is the dense FFN
    /// with its output layer scaled by 1/(S+1), so the upcycled model computes the dense function.
    func testUpcyclingCopiesTheDenseFFNIntoSharedExpertsAndKeepsTheDenseFunction() throws {
        let dense = ModelConfig(features: 6, classes: 3, hidden: 8, ffn: 16, blocks: 3)
        var config = dense
        config.moe = MoEConfig(experts: 4, blocks: [0, 2], router: .topk, k: 2, sharedExperts: 2)
        let (d, m) = try UpcyclingTests.upcycled(dense: dense, into: config)
        let w1 = m.parameters["blocks/2/moe/shared/w1"]!.value, dw1 = d.parameters["blocks/2/ffn/w1"]!.value
        for s in 0..<2 { for j in 0..<dw1.count { XCTAssertEqual(w1[s * dw1.count + j], dw1[j]) } }
        let b2 = m.parameters["blocks/0/moe/experts/b2"]!.value, db2 = d.parameters["blocks/0/ffn/b2"]!.value
        for j in 0..<db2.count { XCTAssertEqual(b2[j], db2[j] / 3, accuracy: 1e-7) }

        var narrow = config
        narrow.moe?.sharedFFN = 4
        XCTAssertThrowsError(try Upcycling.upcycle(from: Upcycling.parameters(of: d), into: ResidualMLP(config: narrow, seed: 2))) { error in
            XCTAssertEqual("\(error)", "blocks/0/ffn/w1: shape [16, 8] does not match one expert of blocks/0/moe/shared/w1 [4, 8]")
        }
    }

    /// The same for a transformer LM: the upcycled LM starts at the dense LM's loss.
    func testUpcycledTransformerWithSharedExpertsStartsAtTheDenseLoss() throws {
        let dense = TinyTransformer.config()
        let d = TransformerLM(config: dense, seed: 1)
        TinyTransformer.randomize(d.parameters, seed: 2)
        let m = TransformerLM(config: TinyTransformer.config(moe: MoEConfig(experts: 4, blocks: [0, 1], router: .topk, k: 2, sharedExperts: 1)),
                              seed: 3)
        try Upcycling.upcycle(from: Upcycling.parameters(of: d), into: m)
        let tokens = TinyTransformer.tokens(batch: 3, length: 7, vocab: 11, seed: 4)
        let (a, b) = tokens.withUnsafeBufferPointer { t in
            (d.evaluationSums(TokenWindows(tokens: t.baseAddress!, batch: 3, length: 7), batchSize: 3),
             m.evaluationSums(TokenWindows(tokens: t.baseAddress!, batch: 3, length: 7), batchSize: 3))
        }
        XCTAssertEqual(a.lossSum, b.lossSum, accuracy: 1e-5 * a.lossSum)
        XCTAssertEqual(a.correct, b.correct)
    }

    /// The checkpoint config carries the shared experts only when there are some (so dense and
    /// shared-free MoE configs keep their JSON), and decodes back to the same config.
    func testConfigRoundTripsThroughJSON() throws {
        let plain = MoEConfig(experts: 4, blocks: [1], router: .topk, k: 2)
        let json = String(decoding: try JSONEncoder().encode(plain), as: UTF8.self)
        XCTAssertFalse(json.contains("shared"))
        let shared = MoEConfig(experts: 4, blocks: [1], router: .topk, k: 2, sharedExperts: 2, sharedFFN: 5)
        let sharedJSON = String(decoding: try JSONEncoder().encode(shared), as: UTF8.self)
        XCTAssertTrue(sharedJSON.contains("\"shared_experts\":2") && sharedJSON.contains("\"shared_ffn\":5"))
        XCTAssertEqual(try JSONDecoder().decode(MoEConfig.self, from: Data(sharedJSON.utf8)), shared)
    }
}
