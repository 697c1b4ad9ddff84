import XCTest
import MoECore
@testable import MoENN

/// Loss-free balancing (Wang et al. 2024) and sigmoid scores (DeepSeek-V3) in the router: the
/// bias chooses and never gates, it moves by `rate · sign(mean load − load_i)` after a step, and
/// it is a buffer (checkpointed, never trained).
final class ExpertBiasTests: XCTestCase {
    private func layer(score: RouterScore = .sigmoid, balance: RouterBalance = .bias, k: Int = 2, rate: Float = 0.25) -> MoELayer {
        let config = MoEConfig(experts: 4, blocks: [0], router: k == 1 ? .switch : .topk, k: k, capacityFactor: nil,
                               score: score, balance: balance, biasRate: rate)
        let l = MoELayer("blocks/0/moe", index: 0, hidden: 8, ffn: 16, activation: .gelu, config: config, moeLayers: 1)
        l.initialize(seed: 3)
        return l
    }

    private func forward(_ l: MoELayer, tokens n: Int = 32, training: Bool = true) {
        let x = randomTensor([n, 8], seed: 4, purpose: "x"), y = Tensor(shape: [n, 8])
        l.forward(x.data, rows: n, into: y.data, context: ForwardContext(training: training, step: 0, seed: 1))
    }

    func testSigmoidGatesAreTheChosenScoresRenormalised() {
        let l = layer(balance: .auxLoss)
        forward(l)
        let r = l.router.routing, p = l.router.probs.data, z = l.router.logits.data
        for i in 0..<(32 * 4) { XCTAssertEqual(p[i], 1 / (1 + expf(-z[i])), accuracy: 1e-6, "s = σ(z)") }
        var sums = [Float](repeating: 0, count: 32)
        for e in 0..<4 {
            for a in r.offsets[e]..<r.offsets[e + 1] {
                let t = r.token[a]
                sums[t] += r.gate[a]
                // Chosen: the two largest s of the token.
                let row = (0..<4).map { p[t * 4 + $0] }
                XCTAssertGreaterThanOrEqual(row[e], row.sorted()[2], "token \(t) chose expert \(e) among its top 2")
            }
        }
        for t in 0..<32 { XCTAssertEqual(sums[t], 1, accuracy: 1e-6, "token \(t)'s gates sum to 1") }
    }

    func testBiasChoosesButNeverGates() {
        let l = layer()
        // A large bias on expert 3 makes every token choose it; its gate is still s_t3 / Σ chosen s.
        l.router.expertBias!.value.data[3] = 10
        forward(l)
        let r = l.router.routing, p = l.router.probs.data
        XCTAssertEqual(r.count(3), 32, "every token chose the biased expert")
        for a in r.offsets[3]..<r.offsets[4] {
            let t = r.token[a]
            let other = (r.offsets[0]..<r.offsets[3]).first { r.token[$0] == t }!
            var otherExpert = 0
            while r.offsets[otherExpert + 1] <= other { otherExpert += 1 }
            let s3 = p[t * 4 + 3], so = p[t * 4 + otherExpert]
            XCTAssertEqual(r.gate[a], s3 / (s3 + so), accuracy: 1e-6, "the bias is not in the gate")
        }
    }

    func testUpdateMovesEachBiasBySignOfMeanMinusLoad() {
        let l = layer(rate: 0.25)
        forward(l)
        forward(l)  // two forwards in one step (micro-batches) add up
        let load = l.router.stepLoad
        XCTAssertEqual(load.reduce(0, +), 2 * 32 * 2, "2 forwards × 32 tokens × k = 2 selections")
        l.router.updateExpertBias()
        let mean = load.reduce(0, +) / 4
        for i in 0..<4 {
            let expected: Float = load[i] < mean ? 0.25 : load[i] > mean ? -0.25 : 0
            XCTAssertEqual(l.router.expertBias!.value.data[i], expected, "expert \(i), load \(load[i]), mean \(mean)")
        }
        XCTAssertEqual(l.router.stepLoad, [0, 0, 0, 0], "the update consumes the step's load")
        forward(l, training: false)
        XCTAssertEqual(l.router.stepLoad, [0, 0, 0, 0], "evaluation forwards count no load")
    }

    func testSkippedStepMovesNoBias() {
        let config = ModelConfig(features: 5, classes: 3, hidden: 8, ffn: 16, blocks: 1,
                                 moe: MoEConfig(experts: 4, blocks: [0], router: .topk, k: 2, score: .sigmoid, balance: .bias))
        let model = ResidualMLP(config: config, seed: 2)
        XCTAssertEqual(model.buffers.map(\.name), ["blocks/0/moe/router/expert_bias"])
        XCTAssertFalse(model.parameters.contains { $0.name.hasSuffix("expert_bias") }, "a buffer, not a parameter")
        let x = randomTensor([16, 5], seed: 1, purpose: "x")
        let labels = (0..<16).map { $0 % 3 }
        labels.withUnsafeBufferPointer { y in
            _ = model.forward(x.data, labels: y.baseAddress!, rows: 16, context: ForwardContext(training: true, step: 0, seed: 1))
        }
        model.finishStep(updated: false)
        XCTAssertEqual(model.buffers[0].value.array, [0, 0, 0, 0])
        XCTAssertEqual(model.moeLayers[0].router.stepLoad, [0, 0, 0, 0])
    }

    func testTrainingBalancesTheLoadWithoutAnAuxiliaryLoss() {
        // Start from a bias that sends every token to expert 0; the updates alone even it out.
        let l = layer(rate: 0.05)
        l.router.expertBias!.value.data[0] = 1
        forward(l)
        let before = (0..<4).map { l.router.routing.count($0) }
        l.router.discardStepLoad()
        for _ in 0..<60 { forward(l); l.router.updateExpertBias() }
        forward(l)
        let after = (0..<4).map { l.router.routing.count($0) }
        XCTAssertEqual(l.auxiliaryLoss, l.router.zScale * l.router.zLoss, "balance: bias trains no aux loss")
        XCTAssertGreaterThan(before.max()!, after.max()!, "the most loaded expert lost load: \(before) → \(after)")
        XCTAssertLessThanOrEqual(Double(after.max()!) / 16 - 1, 0.5, "max violation below 0.5 after balancing: \(after)")
    }

    func testConfigJSONOmitsDefaultsAndRoundTrips() throws {
        let d = MoEConfig(experts: 4, blocks: [0])
        let text = String(decoding: try JSONEncoder().encode(d), as: UTF8.self)
        XCTAssertFalse(text.contains("score") || text.contains("balance") || text.contains("bias_rate"), text)
        let b = MoEConfig(experts: 4, blocks: [0], score: .sigmoid, balance: .bias, biasRate: 0.01)
        XCTAssertEqual(try JSONDecoder().decode(MoEConfig.self, from: try JSONEncoder().encode(b)), b)
    }
}
