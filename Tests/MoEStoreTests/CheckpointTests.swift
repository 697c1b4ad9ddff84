import Foundation
import XCTest
import MoECore
import MoEData
import MoEHDF5
import MoENN
@testable import MoEStore

final class CheckpointTests: XCTestCase {
    private func tempPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("moe-store-\(UUID().uuidString)-\(name)").path
    }

    func testModelAndOptimizerRoundTripBitForBit() throws {
        let config = ModelConfig(features: 5, classes: 3, hidden: 8, ffn: 16, blocks: 2, activation: .silu)
        let model = ResidualMLP(config: config, seed: 11)
        let trainer = Trainer(model: model, config: OptimizerConfig(), totalSteps: 10, seed: 1)
        var rng = RNG(seed: 1, purpose: "x")
        let x = Tensor(shape: [4, 5]); rng.fillNormal(x)
        _ = [0, 1, 2, 1].withUnsafeBufferPointer { trainer.trainStep(x.data, labels: $0.baseAddress!, rows: 4) }
        let norm = Standardization(mean: [1, 2, 3, 4, 5], std: [1, 1, 2, 2, 3])
        let path = tempPath("ckpt.h5")
        try H5File.createAtomically(path) { file in
            try Checkpoint.writeModel(model, normalization: norm, to: file, at: "model")
            try Checkpoint.writeOptimizer(trainer.optimizer, kind: .adamw, to: file, at: "optimizer")
        }
        let file = try H5File.open(path)
        XCTAssertEqual(try file.openGroup("model").stringAttribute("format"), "moe-run/1")
        XCTAssertEqual(try Checkpoint.readConfig(from: file, at: "model"), config)
        let (loaded, loadedNorm) = try Checkpoint.loadModel(from: file, at: "model")
        XCTAssertEqual(loadedNorm, norm)
        for (a, b) in zip(model.parameters, loaded.parameters) {
            XCTAssertEqual(a.name, b.name)
            XCTAssertTrue(a.value.bitwiseEqual(b.value), a.name)
        }
        let other = AdamW(parameters: loaded.parameters)
        try Checkpoint.loadOptimizer(into: other, from: file, at: "optimizer")
        XCTAssertEqual(other.stepCount, 1)
        for (a, b) in zip(trainer.optimizer.state, other.state) { XCTAssertTrue(a.tensor.bitwiseEqual(b.tensor), a.name) }
        // PyTorch layout: Linear weights are [out, in].
        XCTAssertEqual(try file.openDataset("model/blocks/1/ffn/w1").shape, [16, 8])
        XCTAssertEqual(try file.openDataset("model/head/weight").shape, [3, 8])
    }

    func testMismatchedShapeNamesTheTensor() throws {
        let small = ResidualMLP(config: ModelConfig(features: 5, classes: 3, hidden: 8, ffn: 16, blocks: 1), seed: 1)
        let path = tempPath("small.h5")
        try H5File.createAtomically(path) { try Checkpoint.writeModel(small, normalization: nil, to: $0, at: "model") }
        let wider = ResidualMLP(config: ModelConfig(features: 5, classes: 3, hidden: 8, ffn: 32, blocks: 1), seed: 1)
        let file = try H5File.open(path)
        XCTAssertThrowsError(try Checkpoint.loadParameters(into: wider.parameters, from: file, at: "model")) { error in
            XCTAssertEqual("\(error)", "\(path):/model/blocks/0/ffn/w1: shape [16, 8] does not match the model's [32, 8]")
        }
        let deeper = ResidualMLP(config: ModelConfig(features: 5, classes: 3, hidden: 8, ffn: 16, blocks: 2), seed: 1)
        XCTAssertThrowsError(try Checkpoint.loadParameters(into: deeper.parameters, from: file, at: "model")) { error in
            XCTAssertEqual("\(error)", "\(path):/model/blocks/1/norm/weight: missing")
        }
    }

    func testAGroupWithoutFormatIsNotACheckpoint() throws {
        let path = tempPath("plain.h5")
        try H5File.createAtomically(path) { try $0.createDataset("g/x", [Float(1)]) }
        let file = try H5File.open(path)
        XCTAssertThrowsError(try Checkpoint.readConfig(from: file, at: "g")) { error in
            XCTAssertTrue("\(error)".contains("not a moe-run model checkpoint"), "\(error)")
        }
    }
}
