import Foundation
import XCTest
import MoECore
@testable import MoENN

/// `ResidualMLP` through the `TrainableModel` protocol: the same forward walk, the same bits.
final class TrainableModelTests: XCTestCase {
    private let config = ModelConfig(features: 5, classes: 3, hidden: 8, ffn: 16, blocks: 2,
                                     moe: MoEConfig(experts: 3, blocks: [0], router: .domain))

    private func data(rows n: Int) -> (Tensor, [Int], [Int]) {
        var rng = RNG(seed: 9, purpose: "trainable")
        let x = Tensor(shape: [n, 5]); rng.fillNormal(x)
        return (x, (0..<n).map { $0 % 3 }, (0..<n).map { ($0 * 7) % 3 })
    }

    /// Drives any model through the protocol only, as a training loop will.
    private func gradients<M: TrainableModel>(_ model: M, _ batch: M.Batch, step: Int) -> (ObjectiveSums, [[Float]]) {
        model.parameters.zeroGrad()
        let sums = model.forward(batch, context: ForwardContext(training: true, step: step, seed: 4))
        model.backward(lossScale: 1)
        return (sums, model.parameters.map(\.grad.array))
    }

    func testProtocolStepMatchesTheDirectForwardAndBackwardBitForBit() throws {
        let (x, y, d) = data(rows: 7)
        let a = ResidualMLP(config: config, seed: 2), b = ResidualMLP(config: config, seed: 2)
        let (sums, grads) = y.withUnsafeBufferPointer { yb in
            d.withUnsafeBufferPointer { db in
                gradients(a, LabelledRows(x: x.data, labels: yb.baseAddress!, rows: 7, domains: db.baseAddress!), step: 3)
            }
        }
        b.parameters.zeroGrad()
        let direct = y.withUnsafeBufferPointer { yb in
            d.withUnsafeBufferPointer { db in
                let r = b.forward(x.data, labels: yb.baseAddress!, rows: 7,
                                  context: ForwardContext(training: true, step: 3, seed: 4, domains: db.baseAddress!))
                b.backward()
                return r
            }
        }
        XCTAssertEqual(sums.scored, 7)
        XCTAssertEqual(sums.correct, direct.correct)
        XCTAssertEqual(sums.lossSum.bitPattern, (direct.loss * 7).bitPattern)
        XCTAssertGreaterThan(sums.lossSum, 0)
        for (p, (g, q)) in zip(b.parameters, zip(grads, b.parameters)) {
            XCTAssertEqual(g.map(\.bitPattern), q.grad.array.map(\.bitPattern), p.name)
        }
        XCTAssertTrue(grads.contains { $0.contains { $0 != 0 } })
    }

    /// `evaluate` now walks `evaluationSums`; it must give the bits of the loop it replaced.
    func testEvaluateKeepsTheBitsOfThePerBatchLoop() throws {
        let (x, y, d) = data(rows: 10)
        let model = ResidualMLP(config: config, seed: 8)
        let r = model.evaluate(x: x, labels: y, domains: d, batchSize: 3)
        var total: Double = 0
        var correct = 0
        y.withUnsafeBufferPointer { yb in
            d.withUnsafeBufferPointer { db in
                var start = 0
                while start < 10 {
                    let rows = min(3, 10 - start)
                    let o = model.forward(x.row(start), labels: yb.baseAddress! + start, rows: rows,
                                          context: ForwardContext(training: false, step: 0, seed: 0, domains: db.baseAddress! + start))
                    total += o.loss * Double(rows)
                    correct += o.correct
                    start += rows
                }
            }
        }
        XCTAssertEqual(r.loss.bitPattern, (total / 10).bitPattern)
        XCTAssertEqual(r.accuracy, Double(correct) / 10)
        let sums = y.withUnsafeBufferPointer { yb in
            d.withUnsafeBufferPointer { db in
                model.evaluationSums(LabelledRows(x: x.data, labels: yb.baseAddress!, rows: 10, domains: db.baseAddress!), batchSize: 3)
            }
        }
        XCTAssertEqual(sums.scored, 10)
        XCTAssertEqual(sums.correct, correct)
        XCTAssertEqual(sums.lossSum.bitPattern, total.bitPattern)
    }

    func testKindConfigAndMoELayers() throws {
        let model = ResidualMLP(config: config, seed: 1)
        let any: any TrainableModel = model
        XCTAssertEqual(any.checkpointKind, "mlp")
        XCTAssertEqual(any.inputFeatures, 5)
        XCTAssertEqual(any.moeLayers.count, 1)
        XCTAssertTrue(any.moeLayers[0] === model.blocks[0].feedForward as? MoELayer)
        XCTAssertEqual(any.parameters.filter(\.decays).map(\.name).first, "embed/weight")
        XCTAssertFalse(any.parameters["embed/bias"]!.decays)
        let object = try JSONSerialization.jsonObject(with: Data(any.configJSON.utf8)) as! [String: Any]
        XCTAssertEqual(object["kind"] as? String, "mlp")
        XCTAssertEqual(try JSONDecoder().decode(ModelConfig.self, from: Data(any.configJSON.utf8)), config)
    }

    func testObjectiveSumsAddAndAverage() {
        var s = ObjectiveSums()
        XCTAssertEqual(s.meanLoss, 0)
        XCTAssertEqual(s.accuracy, 0)
        s += ObjectiveSums(lossSum: 3, correct: 1, scored: 2)
        s += ObjectiveSums(lossSum: 1.5, correct: 2, scored: 4)
        XCTAssertEqual(s, ObjectiveSums(lossSum: 4.5, correct: 3, scored: 6))
        XCTAssertEqual(s.meanLoss, 0.75)
        XCTAssertEqual(s.accuracy, 0.5)
    }
}
