import Foundation
import XCTest
import MoECore
import MoEHDF5
import MoENN
@testable import MoEStore

/// A `LayerwiseModel` written through `TrainableModel` is an `mlp` checkpoint: it loads as the
/// stacked `ResidualMLP` (the auxiliary heads are extra tensors the loader does not read), and
/// the whole stack, auxiliary heads included, reads back by name for a resume.
final class LayerwiseCheckpointTests: XCTestCase {
    private let config = ModelConfig(features: 4, classes: 3, hidden: 6, ffn: 8, blocks: 3)

    func testStackCheckpointLoadsAsTheStackedModelAndResumesTheStack() throws {
        let net = LayerwiseModel(config: config, stages: 3, seed: 2)
        let trainer = LayerwiseTrainer(network: net, config: OptimizerConfig(lr: 1e-2), totalSteps: 3, seed: 2)
        var rng = RNG(seed: 1, purpose: "x")
        let x = Tensor(shape: [5, 4]); rng.fillNormal(x)
        let labels = [0, 1, 2, 2, 1]
        labels.withUnsafeBufferPointer { lb in
            for _ in 0..<3 { trainer.trainStep(x.data, labels: lb.baseAddress!, rows: 5) }
        }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("moe-layerwise-\(UUID().uuidString).h5").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try H5File.createAtomically(path) { try Checkpoint.writeModel(net, normalization: nil, to: $0, at: "model") }
        let file = try H5File.open(path)
        XCTAssertEqual(try Checkpoint.readKindAndConfig(from: file, at: "model").kind, "mlp")
        XCTAssertTrue(try file.openGroup("model").exists("aux/1/head/weight"))

        let (stacked, norm) = try Checkpoint.loadModel(from: file, at: "model")
        XCTAssertNil(norm)
        XCTAssertEqual(stacked.config, config)
        XCTAssertEqual(stacked.parameters.map(\.name), net.model.parameters.map(\.name))
        for (p, q) in zip(stacked.parameters, net.model.parameters) {
            XCTAssertEqual(p.value.array.map(\.bitPattern), q.value.array.map(\.bitPattern), p.name)
        }
        let ctx = ForwardContext(training: false, step: 0, seed: 0)
        labels.withUnsafeBufferPointer { lb in
            let last = net.forward(x.data, labels: lb.baseAddress!, rows: 5, context: ctx)[2]
            XCTAssertEqual(stacked.forward(x.data, labels: lb.baseAddress!, rows: 5, context: ctx).loss.bitPattern, last.loss.bitPattern)
        }

        let resumed = LayerwiseModel(config: config, stages: 3, seed: 9)
        try Checkpoint.loadParameters(into: resumed.parameters, from: file, at: "model")
        for (p, q) in zip(resumed.parameters, net.parameters) {
            XCTAssertEqual(p.value.array.map(\.bitPattern), q.value.array.map(\.bitPattern), p.name)
        }
    }
}
