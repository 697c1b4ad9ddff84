import XCTest
import MoECore
import MoEData
@testable import MoENN

/// Unit-level training: the residual MLP learns the shipped digits, and training is bit-for-bit
/// reproducible from the seed. (The synthetic domain task has its own test in MoEDataTests.)
final class TrainingTests: XCTestCase {
    /// experiments/data/digits.h5, found from this file's location.
    static var digitsPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("experiments/data/digits.h5").path
    }

    private func fit(_ model: ResidualMLP, on data: Dataset, epochs: Int, batchSize: Int = 64,
                       optimizer: OptimizerConfig, seed: UInt64) throws {
        let batches = try MiniBatches(data, batchSize: batchSize, seed: seed)
        let trainer = Trainer(model: model, config: optimizer, totalSteps: epochs * batches.batchesPerEpoch, seed: seed)
        for epoch in 0..<epochs {
            batches.start(epoch: epoch)
            while batches.next() {
                let r = trainer.trainStep(batches.x.data, labels: batches.labelPointer, rows: batches.rows)
                XCTAssertTrue(r.loss.isFinite, "loss diverged at step \(trainer.step)")
            }
        }
    }

    func testDigitsTestAccuracyAbove90Percent() throws {
        let data = try Dataset.load(hdf5: Self.digitsPath)
        XCTAssertEqual(data.count, 1797)
        let splits = try data.split(train: 0.7, val: 0.15, seed: 3)
        let norm = Standardization.fit(splits.train)
        let train = norm.apply(splits.train), test = norm.apply(splits.test)
        let model = ResidualMLP(config: ModelConfig(features: 64, classes: 10, hidden: 64, ffn: 256, blocks: 2), seed: 3)
        let before = model.evaluate(x: test.x, labels: test.y)
        try fit(model, on: train, epochs: 15, optimizer: OptimizerConfig(lr: 3e-3), seed: 3)
        let after = model.evaluate(x: test.x, labels: test.y)
        print("digits: test accuracy \(before.accuracy) before, \(after.accuracy) after training; test loss \(after.loss)")
        XCTAssertLessThan(before.accuracy, 0.3, "an untrained model is near chance")
        XCTAssertGreaterThan(after.accuracy, 0.90)
    }

    func testSGDAlsoLearnsDigits() throws {
        let data = try Dataset.load(hdf5: Self.digitsPath)
        let splits = try data.split(train: 0.7, val: 0.15, seed: 4)
        let norm = Standardization.fit(splits.train)
        let model = ResidualMLP(config: ModelConfig(features: 64, classes: 10, hidden: 64, ffn: 128, blocks: 1), seed: 4)
        try fit(model, on: norm.apply(splits.train), epochs: 15,
                  optimizer: OptimizerConfig(kind: .sgd, lr: 0.05, weightDecay: 1e-4, momentum: 0.9, schedule: .constant),
                  seed: 4)
        XCTAssertGreaterThan(model.evaluate(x: norm.apply(splits.val).x, labels: splits.val.y).accuracy, 0.90)
    }

    /// Same seed → the same bits in every weight, with dropout on (its masks are seeded too).
    func testTwoRunsWithTheSameSeedGiveBitIdenticalWeights() throws {
        let data = try SyntheticDomains(samples: 1000, seed: 5).generate()
        func run(seed: UInt64) throws -> [Tensor] {
            let model = ResidualMLP(config: ModelConfig(features: 16, classes: 4, hidden: 32, ffn: 64, blocks: 2, dropout: 0.1),
                                    seed: seed)
            try fit(model, on: data, epochs: 3, optimizer: OptimizerConfig(lr: 3e-3, warmupSteps: 5), seed: seed)
            return model.parameters.map(\.value)
        }
        let a = try run(seed: 9), b = try run(seed: 9), c = try run(seed: 10)
        for (i, (x, y)) in zip(a, b).enumerated() { XCTAssertTrue(x.bitwiseEqual(y), "parameter \(i) differs between identical runs") }
        XCTAssertFalse(zip(a, c).allSatisfy { $0.bitwiseEqual($1) }, "a different seed must give different weights")
    }
}
