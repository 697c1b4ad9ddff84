import XCTest
import MoECore
@testable import MoENN

/// Decoupled greedy learning (`LayerwiseModel`): every stage's parameters receive exactly the
/// gradient of that stage's own auxiliary loss, `∂L_s/∂θ_s`, and nothing from later stages,
/// although perturbing them does change the later stages' losses.
final class LayerwiseGradientTests: XCTestCase {
    let check = GradientCheck()
    let config = ModelConfig(features: 5, classes: 3, hidden: 6, ffn: 10, blocks: 3, activation: .gelu, dropout: 0)

    func testPartitionGivesTheExtraBlocksToTheFirstStages() {
        XCTAssertEqual(LayerwiseModel.partition(blocks: 4, stages: 2), [0..<2, 2..<4])
        XCTAssertEqual(LayerwiseModel.partition(blocks: 5, stages: 3), [0..<2, 2..<4, 4..<5])
        XCTAssertEqual(LayerwiseModel.partition(blocks: 3, stages: 3), [0..<1, 1..<2, 2..<3])
        XCTAssertEqual(LayerwiseModel.partition(blocks: 3, stages: 1), [0..<3])
    }

    func testStageParametersArePartitionedAndNamed() {
        let net = LayerwiseModel(config: config, stages: 2, seed: 1)
        XCTAssertEqual(net.stages, [0..<2, 2..<3])
        let names = net.stageParameters.map { $0.map(\.name) }
        XCTAssertEqual(names[0].first, "embed/weight")
        XCTAssertTrue(names[0].contains("blocks/1/ffn/w2"))
        XCTAssertEqual(Array(names[0].suffix(4)), ["aux/0/norm/weight", "aux/0/norm/bias", "aux/0/head/weight", "aux/0/head/bias"])
        XCTAssertEqual(Array(names[1].suffix(4)), ["norm/weight", "norm/bias", "head/weight", "head/bias"])
        XCTAssertEqual(Set(names.joined()).count, net.parameters.count, "stages share no parameter")
        XCTAssertEqual(net.parameters.count, names.joined().count)
    }

    /// Finite differences of each stage's loss against the analytic gradient of every parameter.
    func testEachStageGetsOnlyItsOwnLossGradient() {
        let net = LayerwiseModel(config: config, stages: 2, seed: 3)
        let n = 6
        let x = randomTensor([n, 5], seed: 8, purpose: "x", scale: 1.5)
        let labels = [0, 1, 2, 1, 0, 2]
        let ctx = ForwardContext(training: true, step: 0, seed: 9)
        func stageLoss(_ s: Int) -> () -> Double {
            { labels.withUnsafeBufferPointer { net.forward(x.data, labels: $0.baseAddress!, rows: n, context: ctx)[s].loss } }
        }
        labels.withUnsafeBufferPointer { lb in
            net.parameters.zeroGrad()
            net.forward(x.data, labels: lb.baseAddress!, rows: n, context: ctx)
            net.backward()
        }
        for (s, params) in net.stageParameters.enumerated() {
            for p in params {
                check.assertMatches("stage \(s) \(p.name)", analytic: p.grad, numeric: check.numerical(p.value, loss: stageLoss(s)))
            }
        }
        // A stage-0 parameter moves the stage-1 loss too, but that derivative is not in its gradient.
        let w = net.model.parameters["blocks/0/ffn/w2"]!
        let later = check.numerical(w.value, loss: stageLoss(1))
        let own = check.numerical(w.value, loss: stageLoss(0))
        XCTAssertGreaterThan(later.map(abs).max()!, 1e-2, "the later stage depends on the earlier one")
        let total = zip(own, later).map { $0 + $1 }
        XCTAssertFalse(check.mismatches(analytic: w.grad.array.map(Double.init), numeric: total).isEmpty,
                       "the gradient must not include the later stage's loss")
        // The auxiliary head of stage 0 does not affect stage 1 at all.
        let aux = net.walks[0].head!.linear.weight
        XCTAssertEqual(check.numerical(aux.value, loss: stageLoss(1)).map(abs).max()!, 0)
    }

    /// The stacked model (`model`) computes exactly the last stage's loss, before and after training.
    func testStackedModelIsTheLastStage() {
        let net = LayerwiseModel(config: config, stages: 3, seed: 4)
        let trainer = LayerwiseTrainer(network: net, config: OptimizerConfig(lr: 1e-2), totalSteps: 5, seed: 4)
        let n = 8
        let x = randomTensor([n, 5], seed: 2, purpose: "x")
        let labels = [0, 1, 2, 0, 1, 2, 0, 1]
        let ctx = ForwardContext(training: false, step: 0, seed: 0)
        labels.withUnsafeBufferPointer { lb in
            for _ in 0..<5 {
                let r = trainer.trainStep(x.data, labels: lb.baseAddress!, rows: n)
                XCTAssertEqual(r.stageLoss.count, 3)
                XCTAssertTrue(r.gradNorm.isFinite)
            }
            let stages = net.forward(x.data, labels: lb.baseAddress!, rows: n, context: ctx)
            let stacked = ResidualMLP(config: config, seed: 99)
            for (p, q) in zip(stacked.parameters, net.model.parameters) { p.value.copy(from: q.value) }
            let plain = stacked.forward(x.data, labels: lb.baseAddress!, rows: n, context: ctx)
            XCTAssertEqual(plain.loss, stages[2].loss)
            XCTAssertEqual(plain.correct, stages[2].correct)
        }
        XCTAssertEqual(trainer.step, 5)
    }

    /// Clipping is per stage: a stage with a huge gradient does not shrink another stage's step.
    func testClippingIsPerStage() {
        let net = LayerwiseModel(config: config, stages: 2, seed: 5)
        let trainer = LayerwiseTrainer(network: net, config: OptimizerConfig(kind: .sgd, lr: 0, gradClip: 1e-3), totalSteps: 1, seed: 5)
        let x = randomTensor([4, 5], seed: 6, purpose: "x")
        let labels = [0, 1, 2, 0]
        let r = labels.withUnsafeBufferPointer { trainer.trainStep(x.data, labels: $0.baseAddress!, rows: 4) }
        XCTAssertGreaterThan(r.gradNorm, 1e-2)
        for ps in net.stageParameters { XCTAssertEqual(ps.gradientNorm(), 1e-3, accuracy: 1e-5) }
    }
}
