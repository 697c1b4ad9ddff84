import MoEComm
import MoECore
import XCTest
@testable import MoENN
@testable import MoEParallel

/// Every step strategy reports through one `StepReport`: the same figures as the step types it
/// wraps, the whole batch's on every rank, and one `stop` agreed by the group.
final class StepStrategyTests: XCTestCase {
    private let n = 12
    private let config = ModelConfig(features: 5, classes: 3, hidden: 8, ffn: 12, blocks: 2, dropout: 0)
    private lazy var x: [Float] = {
        var rng = RNG(seed: 11, purpose: "step-strategy-test")
        let t = Tensor(shape: [n, 5])
        rng.fillNormal(t)
        return t.array
    }()
    private lazy var labels = (0..<n).map { ($0 * 5) % 3 }

    private func withBatch<T>(_ body: (LabelledRows) throws -> T) rethrows -> T {
        try x.withUnsafeBufferPointer { xs in
            try labels.withUnsafeBufferPointer { ys in try body(LabelledRows(x: xs.baseAddress!, labels: ys.baseAddress!, rows: n)) }
        }
    }

    /// The local strategy on any `TrainableModel`: its sums are the model's forward sums, and
    /// the legacy `StepResult` carries the same figures.
    func testLocalReportIsTheModelsObjective() {
        let a = Trainer(model: ResidualMLP(config: config, seed: 3), config: OptimizerConfig(lr: 0.01), totalSteps: 4, seed: 1)
        let probe = ResidualMLP(config: config, seed: 3)
        let expected = withBatch { probe.forward($0, context: ForwardContext(training: true, step: 0, seed: 1)) }
        let r = withBatch { a.trainStep(on: $0, stop: true) }
        XCTAssertEqual(r.sums, expected)
        XCTAssertEqual(r.loss, expected.meanLoss)
        XCTAssertTrue(r.stop, "one process: the report's stop is the process's wish")
        XCTAssertTrue(r.stages.isEmpty)
        XCTAssertEqual(r.costs, GroupCosts())
        XCTAssertEqual(a.step, 1)
        XCTAssertEqual(r.result.correct, expected.correct)
    }

    /// A non-finite input leaves the parameters untouched and reports a non-finite loss.
    func testLocalDivergenceLeavesParametersUntouched() {
        let a = Trainer(model: ResidualMLP(config: config, seed: 3), config: OptimizerConfig(lr: 0.01), totalSteps: 4, seed: 1)
        let before = a.model.parameters.map(\.value.array)
        x[0] = .nan
        let r = withBatch { a.trainStep(on: $0, stop: false) }
        XCTAssertFalse(r.loss.isFinite)
        XCTAssertFalse(r.gradNorm.isFinite)
        XCTAssertEqual(a.model.parameters.map(\.value.array).map { $0.map(\.bitPattern) }, before.map { $0.map(\.bitPattern) })
        XCTAssertEqual(a.step, 0)
    }

    /// Layer-local: one `ObjectiveSums` per stage, the last being the report's own.
    func testLayerLocalReportHasEveryStage() {
        let dense = ModelConfig(features: 5, classes: 3, hidden: 8, ffn: 12, blocks: 3, dropout: 0)
        let a = LayerwiseTrainer(network: LayerwiseModel(config: dense, stages: 3, seed: 2), config: OptimizerConfig(lr: 0.01), totalSteps: 2, seed: 1)
        let b = LayerwiseTrainer(network: LayerwiseModel(config: dense, stages: 3, seed: 2), config: OptimizerConfig(lr: 0.01), totalSteps: 2, seed: 1)
        let r = withBatch { a.trainStep(on: $0, stop: false) }
        let old = withBatch { b.trainStep($0.x, labels: $0.labels, rows: $0.rows) }
        XCTAssertEqual(r.stages.map(\.lossSum), old.stageLoss.map { $0 * Double(n) })
        XCTAssertEqual(r.stages.map(\.correct), old.stageCorrect)
        XCTAssertEqual(r.stages.last, r.sums)
        XCTAssertEqual(r.gradNorm, old.gradNorm)
        XCTAssertEqual(a.network.parameters.map { $0.value.array.map(\.bitPattern) }, b.network.parameters.map { $0.value.array.map(\.bitPattern) })
    }

    /// Data parallel on three threads: every rank reports the whole batch (the same bits), and
    /// the stop that one rank wished is every rank's.
    func testDataParallelReportsTheGroupsDecision() throws {
        let (x, labels, n, config) = (self.x, self.labels, self.n, self.config)
        let reports = try ThreadGroup.run(world: 3) { comm -> [StepReport] in
            let trainer = Trainer(model: ResidualMLP(config: config, seed: 3), config: OptimizerConfig(lr: 0.01), totalSteps: 4, seed: 1)
            let group = try DataParallelGroup(communicator: comm, parameters: trainer.model.parameters)
            group.attach(to: trainer.model)
            let step = DataParallelStep(trainer: trainer, group: group)
            return try x.withUnsafeBufferPointer { xs in
                try labels.withUnsafeBufferPointer { ys in
                    let batch = LabelledRows(x: xs.baseAddress!, labels: ys.baseAddress!, rows: n)
                    return [try step.trainStep(on: batch, stop: false), try step.trainStep(on: batch, stop: comm.rank == 1)]
                }
            }
        }
        for r in reports {
            XCTAssertEqual(r.map(\.stop), [false, true])
            XCTAssertEqual(r.map(\.sums), reports[0].map(\.sums))
            XCTAssertEqual(r.map(\.loss.bitPattern), reports[0].map(\.loss.bitPattern))
            XCTAssertEqual(r[0].sums.scored, n)
            XCTAssertGreaterThan(r[0].costs.bytesSent, 0, "the gradients were all-reduced")
        }
    }
}
