import Foundation
import XCTest
import MoEHDF5
import MoENN
@testable import MoEStore

/// `Checkpoint.loadModel(from:at:for:)`: the uses only a residual MLP has (upcycling,
/// moefication, expert merging, ensembles, evaluation on feature data) refuse a checkpoint of
/// another registered kind in one line naming the kind and the use; an mlp loads as before.
final class MLPOnlyLoadTests: XCTestCase {
    private var paths: [String] = []

    private func tempPath(_ name: String) -> String {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("moe-mlp-only-\(UUID().uuidString)-\(name)").path
        paths.append(p)
        return p
    }

    override func tearDown() { for p in paths { unlink(p) } }

    func testATransformerIsRefusedNamingTheUse() throws {
        let path = tempPath("lm.h5")
        let config = TransformerConfig(vocab: 11, context: 4, hidden: 8, heads: 2, blocks: 1, ffn: 12, activation: .gelu,
                                       dropout: 0, tieEmbeddings: true, moe: nil)
        try H5File.createAtomically(path) {
            try Checkpoint.writeModel(TransformerLM(config: config, seed: 1), normalization: nil, to: $0, at: "model")
        }
        let file = try H5File.open(path)
        XCTAssertThrowsError(try Checkpoint.loadModel(from: file, at: "model", for: "upcycling")) { error in
            XCTAssertEqual("\(error)", "\(path):/model: a \"transformer\" model; upcycling needs a residual MLP (kind \"mlp\")")
        }
        // The kind-agnostic loader reads it.
        XCTAssertEqual(try Checkpoint.loadAnyModel(from: file, at: "model").0.checkpointKind, "transformer")
    }

    func testAnMLPLoadsAsBefore() throws {
        let path = tempPath("mlp.h5")
        let model = ResidualMLP(config: ModelConfig(features: 3, classes: 2, hidden: 4, ffn: 6, blocks: 1), seed: 2)
        try H5File.createAtomically(path) { try Checkpoint.writeModel(model, normalization: nil, to: $0, at: "model") }
        let (loaded, _) = try Checkpoint.loadModel(from: try H5File.open(path), at: "model", for: "upcycling")
        XCTAssertEqual(loaded.parameters.map { $0.value.array.map(\.bitPattern) }, model.parameters.map { $0.value.array.map(\.bitPattern) })
    }
}
