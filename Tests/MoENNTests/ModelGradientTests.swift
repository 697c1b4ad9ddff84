import XCTest
import MoECore
@testable import MoENN

/// Finite-difference checks of composite layers and of the whole model's loss with respect to
/// every parameter tensor.
final class ModelGradientTests: XCTestCase {
    let check = GradientCheck()

    func testDenseFFNBackward() {
        let (n, h, f) = (3, 5, 7)
        let ffn = DenseFFN("ffn", hidden: h, ffn: f, activation: .gelu)
        ffn.initialize(seed: 1)
        let x = randomTensor([n, h], seed: 2, purpose: "x")
        let w = randomTensor([n, h], seed: 3, purpose: "w")
        let y = Tensor(shape: [n, h])
        let ctx = ForwardContext(training: true, step: 0, seed: 1)
        let loss = { () -> Double in ffn.forward(x.data, rows: n, into: y.data, context: ctx); return weightedSum(y.data, w) }
        _ = loss()
        ffn.parameters.zeroGrad()
        let dx = Tensor(shape: [n, h])
        ffn.backward(w.data, rows: n, dx: dx.data)
        check.assertMatches("FFN dx", analytic: dx, numeric: check.numerical(x, loss: loss))
        for p in ffn.parameters {
            check.assertMatches("FFN \(p.name)", analytic: p.grad, numeric: check.numerical(p.value, loss: loss))
        }
    }

    func testResidualBlockBackwardWithDropout() {
        let (n, h, f) = (4, 6, 8)
        let ffn = DenseFFN("blocks/0/ffn", hidden: h, ffn: f, activation: .silu)
        ffn.initialize(seed: 5)
        let block = ResidualBlock(index: 0, hidden: h, feedForward: ffn, dropout: 0.3, normEps: 1e-5)
        let x = randomTensor([n, h], seed: 6, purpose: "x")
        let w = randomTensor([n, h], seed: 7, purpose: "w")
        let y = Tensor(shape: [n, h])
        let ctx = ForwardContext(training: true, step: 17, seed: 3)
        let loss = { () -> Double in block.forward(x.data, rows: n, into: y.data, context: ctx); return weightedSum(y.data, w) }
        _ = loss()
        block.parameters.zeroGrad()
        let dx = Tensor(shape: [n, h])
        block.backward(w.data, rows: n, dx: dx.data)
        check.assertMatches("block dx", analytic: dx, numeric: check.numerical(x, loss: loss))
        for p in block.parameters {
            check.assertMatches("block \(p.name)", analytic: p.grad, numeric: check.numerical(p.value, loss: loss))
        }
    }

    /// The full model: cross-entropy loss with respect to every element of every parameter.
    func testWholeModelGradientEveryParameter() {
        for act in Activation.allCases {
            let config = ModelConfig(features: 5, classes: 4, hidden: 6, ffn: 10, blocks: 2,
                                     activation: act, dropout: act == .gelu ? 0.2 : 0)
            let model = ResidualMLP(config: config, seed: 42)
            let n = 6
            let x = randomTensor([n, 5], seed: 8, purpose: "x", scale: 1.5)
            let labels = [0, 1, 2, 3, 1, 2]
            let ctx = ForwardContext(training: true, step: 3, seed: 9)
            let loss = { () -> Double in
                labels.withUnsafeBufferPointer { model.forward(x.data, labels: $0.baseAddress!, rows: n, context: ctx).loss }
            }
            labels.withUnsafeBufferPointer { lb in
                model.parameters.zeroGrad()
                model.forward(x.data, labels: lb.baseAddress!, rows: n, context: ctx)
                model.backward()
            }
            // ReLU: finite differences are only valid away from kinks; with these seeds no
            // pre-activation lies within h of 0 (checked: the test would show mismatches).
            var checkFor = check
            if act == .relu { checkFor.h = 1e-3; checkFor.atol = 2e-3 }
            for p in model.parameters {
                checkFor.assertMatches("\(act) \(p.name)", analytic: p.grad, numeric: checkFor.numerical(p.value, loss: loss))
            }
        }
    }

    func testParameterNamesFollowCheckpointLayout() {
        let model = ResidualMLP(config: ModelConfig(features: 3, classes: 2, hidden: 4, ffn: 8, blocks: 2), seed: 0)
        XCTAssertEqual(model.parameters.map(\.name), [
            "embed/weight", "embed/bias",
            "blocks/0/norm/weight", "blocks/0/norm/bias",
            "blocks/0/ffn/w1", "blocks/0/ffn/b1", "blocks/0/ffn/w2", "blocks/0/ffn/b2",
            "blocks/1/norm/weight", "blocks/1/norm/bias",
            "blocks/1/ffn/w1", "blocks/1/ffn/b1", "blocks/1/ffn/w2", "blocks/1/ffn/b2",
            "norm/weight", "norm/bias", "head/weight", "head/bias",
        ])
        XCTAssertEqual(model.parameters["blocks/0/ffn/w1"]?.shape, [8, 4])
        XCTAssertEqual(model.parameters["blocks/0/ffn/w2"]?.shape, [4, 8])
        XCTAssertEqual(model.parameters["embed/weight"]?.shape, [4, 3])
        XCTAssertEqual(model.parameters["head/weight"]?.shape, [2, 4])
    }

    func testSameSeedSameInitialisationDifferentSeedDiffers() {
        let c = ModelConfig(features: 3, classes: 2, hidden: 4, ffn: 8, blocks: 1)
        let a = ResidualMLP(config: c, seed: 7), b = ResidualMLP(config: c, seed: 7), d = ResidualMLP(config: c, seed: 8)
        for (p, q) in zip(a.parameters, b.parameters) { XCTAssertTrue(p.value.bitwiseEqual(q.value), p.name) }
        XCTAssertFalse(a.parameters[0].value.bitwiseEqual(d.parameters[0].value))
        // PyTorch's default bound 1/√fan_in.
        XCTAssertLessThanOrEqual(a.parameters["blocks/0/ffn/w2"]!.value.array.map(abs).max()!, 1 / Float(8).squareRoot())
    }

    func testConfigDecodesWithDefaults() throws {
        let json = #"{"features": 64, "classes": 10, "blocks": 3}"#
        let c = try JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8))
        XCTAssertEqual(c, ModelConfig(features: 64, classes: 10, blocks: 3))
        let round = try JSONDecoder().decode(ModelConfig.self, from: JSONEncoder().encode(c))
        XCTAssertEqual(round, c)
    }
}
