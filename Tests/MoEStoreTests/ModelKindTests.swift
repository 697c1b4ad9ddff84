import Foundation
import XCTest
import MoECore
import MoEData
import MoEHDF5
import MoENN
@testable import MoEStore

/// Checkpoints through the model-kind registry: `config.kind` is written, a config without it is
/// an `mlp` (every file written before kinds existed), and an unknown kind is one clear error.
final class ModelKindTests: XCTestCase {
    private func tempPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("moe-kind-\(UUID().uuidString)-\(name)").path
    }

    private let config = ModelConfig(features: 4, classes: 3, hidden: 8, ffn: 16, blocks: 2,
                                     moe: MoEConfig(experts: 4, blocks: [1]))

    func testWrittenConfigCarriesKindMLP() throws {
        let model = ResidualMLP(config: config, seed: 3)
        let path = tempPath("kind.h5")
        try H5File.createAtomically(path) { try Checkpoint.writeModel(model, normalization: nil, to: $0, at: "model") }
        let file = try H5File.open(path)
        let json = try file.openGroup("model").stringAttribute("config")
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        XCTAssertEqual(object["kind"] as? String, "mlp")
        XCTAssertEqual(try Checkpoint.readKindAndConfig(from: file, at: "model").kind, "mlp")
    }

    /// A checkpoint group laid out exactly as moe-run wrote it before `kind` existed: the
    /// config JSON has no `kind` key.
    private func writeLegacyCheckpoint(_ model: ResidualMLP, norm: Standardization?, path: String) throws {
        // Today's config JSON has sorted keys, so removing the one `kind` member gives the
        // bytes the writer produced before kinds existed.
        let current = Checkpoint.configJSON(model.config)
        XCTAssertTrue(current.contains(#""kind":"mlp","#), current)
        let json = current.replacingOccurrences(of: #""kind":"mlp","#, with: "")
        XCTAssertFalse(json.contains("kind"))
        try H5File.createAtomically(path) { file in
            let group = try file.createGroup("model")
            try group.setAttribute("format", "moe-run/1")
            try group.setAttribute("kind", "model")
            try group.setAttribute("config", json)
            for p in model.parameters {
                try group.createDataset(p.name, from: UnsafeBufferPointer(p.value.buffer), shape: p.shape)
            }
            try norm?.write(to: group, path: "input")
        }
    }

    func testCheckpointWithoutKindLoadsAsMLPBitForBit() throws {
        let model = ResidualMLP(config: config, seed: 5)
        let norm = Standardization(mean: [1, 2, 3, 4], std: [1, 2, 2, 1])
        let path = tempPath("legacy.h5")
        try writeLegacyCheckpoint(model, norm: norm, path: path)
        let file = try H5File.open(path)
        XCTAssertEqual(try Checkpoint.readKindAndConfig(from: file, at: "model").kind, "mlp")
        XCTAssertEqual(try Checkpoint.readConfig(from: file, at: "model").moe?.experts, 4)

        let (any, anyNorm) = try Checkpoint.loadAnyModel(from: file, at: "model")
        XCTAssertEqual(any.checkpointKind, "mlp")
        XCTAssertEqual(anyNorm, norm)
        XCTAssertEqual(any.moeLayers.count, 1)
        let loaded = try XCTUnwrap(any as? ResidualMLP)
        XCTAssertEqual(loaded.config.moe?.experts, 4)
        XCTAssertEqual(loaded.parameters.map(\.name), model.parameters.map(\.name))
        for (a, b) in zip(model.parameters, loaded.parameters) { XCTAssertTrue(a.value.bitwiseEqual(b.value), a.name) }

        let (typed, typedNorm) = try Checkpoint.loadModel(from: file, at: "model")
        XCTAssertEqual(typedNorm, norm)
        for (a, b) in zip(model.parameters, typed.parameters) { XCTAssertTrue(a.value.bitwiseEqual(b.value), a.name) }
    }

    func testRewrittenLegacyCheckpointKeepsEveryTensorAndAddsKind() throws {
        let model = ResidualMLP(config: config, seed: 6)
        let legacy = tempPath("legacy.h5"), rewritten = tempPath("rewritten.h5")
        try writeLegacyCheckpoint(model, norm: nil, path: legacy)
        let (loaded, _) = try Checkpoint.loadAnyModel(from: try H5File.open(legacy), at: "model")
        try H5File.createAtomically(rewritten) { try Checkpoint.writeModel(loaded, normalization: nil, to: $0, at: "model") }
        let file = try H5File.open(rewritten)
        XCTAssertEqual(try Checkpoint.readKindAndConfig(from: file, at: "model").kind, "mlp")
        XCTAssertEqual(try Checkpoint.readConfig(from: file, at: "model"), config)
        let (again, _) = try Checkpoint.loadModel(from: file, at: "model")
        for (a, b) in zip(model.parameters, again.parameters) { XCTAssertTrue(a.value.bitwiseEqual(b.value), a.name) }
    }

    func testUnknownKindIsOneLineNamingFileAndKind() throws {
        let path = tempPath("lm.h5")
        try H5File.createAtomically(path) { file in
            let group = try file.createGroup("model")
            try group.setAttribute("format", "moe-run/1")
            try group.setAttribute("kind", "model")
            try group.setAttribute("config", #"{"kind":"rnn","vocab":256,"hidden":8}"#)
        }
        let file = try H5File.open(path)
        let any = "\(path):/model: unknown model kind \"rnn\" in config (this moe-run reads: mlp, transformer)"
        let mlpOnly = "\(path):/model: unknown model kind \"rnn\" in config (this moe-run reads: mlp)"
        XCTAssertThrowsError(try Checkpoint.loadAnyModel(from: file, at: "model")) { XCTAssertEqual("\($0)", any) }
        XCTAssertThrowsError(try Checkpoint.loadModel(from: file, at: "model")) { XCTAssertEqual("\($0)", mlpOnly) }
        XCTAssertThrowsError(try Checkpoint.readConfig(from: file, at: "model")) { XCTAssertEqual("\($0)", mlpOnly) }
        XCTAssertFalse(any.contains("\n"))
    }

    func testRegistryListsMLPAndTransformer() {
        XCTAssertEqual(ModelKinds.known, ["mlp", "transformer"])
        XCTAssertNotNil(ModelKinds.registry[ResidualMLP.checkpointKind])
        XCTAssertNotNil(ModelKinds.registry[TransformerLM.checkpointKind])
    }
}
