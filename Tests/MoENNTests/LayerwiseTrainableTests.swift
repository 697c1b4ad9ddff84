import Foundation
import XCTest
import MoECore
@testable import MoENN

/// `LayerwiseModel` through the `TrainableModel` protocol: the objective is the last stage's, the
/// per-stage sums are exposed, and the bits are those of the direct calls.
final class LayerwiseTrainableTests: XCTestCase {
    let config = ModelConfig(features: 5, classes: 3, hidden: 6, ffn: 10, blocks: 4, activation: .relu, dropout: 0.1)
    let labels = [0, 1, 2, 1, 0, 2, 2, 1, 0, 1]
    var rows: Int { labels.count }

    private func gradients<M: TrainableModel>(_ model: M, _ batch: M.Batch, lossScale: Float) -> (ObjectiveSums, [[Float]]) {
        model.parameters.zeroGrad()
        let sums = model.forward(batch, context: ForwardContext(training: true, step: 2, seed: 6))
        model.backward(lossScale: lossScale)
        return (sums, model.parameters.map(\.grad.array))
    }

    func testProtocolStepIsTheLastStagesObjectiveWithEveryStagesGradient() {
        let a = LayerwiseModel(config: config, stages: 3, seed: 4), b = LayerwiseModel(config: config, stages: 3, seed: 4)
        let x = randomTensor([rows, 5], seed: 1, purpose: "x")
        labels.withUnsafeBufferPointer { lb in
            let batch = LabelledRows(x: x.data, labels: lb.baseAddress!, rows: rows)
            let (sums, grads) = gradients(a, batch, lossScale: 1)
            b.parameters.zeroGrad()
            let direct = b.forward(x.data, labels: lb.baseAddress!, rows: rows, context: ForwardContext(training: true, step: 2, seed: 6))
            b.backward()
            XCTAssertEqual(direct.count, 3)
            XCTAssertEqual(a.stageSums.count, 3)
            for (s, r) in direct.enumerated() {
                XCTAssertEqual(a.stageSums[s], ObjectiveSums(lossSum: r.loss * Double(rows), correct: r.correct, scored: rows))
            }
            XCTAssertEqual(sums, a.stageSums[2])
            XCTAssertNotEqual(a.stageSums[0].lossSum, a.stageSums[2].lossSum)
            for (p, g) in zip(b.parameters, grads) {
                XCTAssertEqual(g.map(\.bitPattern), p.grad.array.map(\.bitPattern), p.name)
                XCTAssertTrue(g.contains { $0 != 0 }, "\(p.name) is trained by its stage's loss")
            }
            // lossScale scales every stage's gradient; by 1/2, exactly.
            let (_, half) = gradients(a, batch, lossScale: 0.5)
            for (g, h) in zip(grads, half) { XCTAssertEqual(g.map { ($0 * 0.5).bitPattern }, h.map(\.bitPattern)) }
        }
    }

    /// `evaluate` walks `stageEvaluationSums`; it keeps the bits of the per-batch loop it replaced,
    /// and `evaluationSums` is its last stage.
    func testEvaluationSumsKeepTheBitsOfThePerBatchLoop() {
        let net = LayerwiseModel(config: config, stages: 2, seed: 8)
        let x = randomTensor([rows, 5], seed: 3, purpose: "x")
        let r = net.evaluate(x: x, labels: labels, batchSize: 4)
        var loss = [0.0, 0.0], correct = [0, 0]
        labels.withUnsafeBufferPointer { lb in
            var start = 0
            while start < rows {
                let n = min(4, rows - start)
                let o = net.forward(x.row(start), labels: lb.baseAddress! + start, rows: n, context: ForwardContext(training: false, step: 0, seed: 0))
                for s in 0..<2 { loss[s] += o[s].loss * Double(n); correct[s] += o[s].correct }
                start += n
            }
            for s in 0..<2 {
                XCTAssertEqual(r[s].loss.bitPattern, (loss[s] / Double(rows)).bitPattern)
                XCTAssertEqual(r[s].accuracy, Double(correct[s]) / Double(rows))
            }
            let sums = net.evaluationSums(LabelledRows(x: x.data, labels: lb.baseAddress!, rows: rows), batchSize: 4)
            XCTAssertEqual(sums, ObjectiveSums(lossSum: loss[1], correct: correct[1], scored: rows))
        }
        XCTAssertGreaterThan(loss[0], 0)
    }

    func testKindConfigParametersAndDecay() throws {
        let net = LayerwiseModel(config: config, stages: 2, seed: 1)
        let any: any TrainableModel = net
        XCTAssertEqual(any.checkpointKind, "mlp")
        XCTAssertEqual(any.configJSON, net.model.configJSON)
        XCTAssertEqual(try JSONDecoder().decode(ModelConfig.self, from: Data(any.configJSON.utf8)), config)
        XCTAssertEqual(any.inputFeatures, 5)
        XCTAssertTrue(any.moeLayers.isEmpty)
        XCTAssertEqual(any.auxiliaryLoss, 0)
        XCTAssertEqual(any.parameters.map(\.name), net.model.parameters.map(\.name) + net.auxParameters.map(\.name))
        XCTAssertEqual(net.auxParameters.filter(\.decays).map(\.name), ["aux/0/head/weight"])
        XCTAssertEqual(net.walks.map(\.parameters).map { $0.map(\.name) }, net.stageParameters.map { $0.map(\.name) })
        XCTAssertTrue(net.walks[1].head!.norm === net.model.norm, "the last stage's head is the model's")
        XCTAssertEqual(net.walks[0].head!.linear.weight.name, "aux/0/head/weight")
        XCTAssertTrue(net.walks[0].head!.linear.weight === net.auxParameters.first { $0.name == "aux/0/head/weight" })
    }
}
