import Foundation
import XCTest
import MoECore
import MoEHDF5
import MoENN
@testable import MoEStore

/// Checkpoints of kind `transformer` (ARCHITECTURE §5.3): written with `config.kind`, loaded
/// through the registry bit for bit, and enough on their own for numpy to rebuild the forward
/// pass (`Tests/python/transformer_forward.py`).
final class TransformerCheckpointTests: XCTestCase {
    private func tempPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("moe-transformer-\(UUID().uuidString)-\(name)").path
    }

    private func config(tie: Bool, moe: MoEConfig? = MoEConfig(experts: 3, blocks: [1], k: 2)) -> TransformerConfig {
        TransformerConfig(vocab: 17, context: 8, hidden: 12, heads: 3, blocks: 2, ffn: 20, activation: .gelu,
                          dropout: 0.1, tieEmbeddings: tie, moe: moe)
    }

    private func windows(batch: Int, length: Int, vocab: Int, seed: UInt64) -> [Int32] {
        var rng = RNG(seed: seed, purpose: "test/windows")
        return (0..<(batch * length)).map { _ in Int32(rng.int(below: vocab)) }
    }

    private func evaluate(_ model: TransformerLM, _ tokens: [Int32], batch: Int, length: Int) -> ObjectiveSums {
        tokens.withUnsafeBufferPointer {
            model.evaluationSums(TokenWindows(tokens: $0.baseAddress!, batch: batch, length: length), batchSize: 3)
        }
    }

    func testRoundTripThroughTheRegistryIsBitIdentical() throws {
        for tie in [false, true] {
            let model = TransformerLM(config: config(tie: tie), seed: 7)
            let path = tempPath("model.h5")
            try H5File.createAtomically(path) { try Checkpoint.writeModel(model, normalization: nil, to: $0, at: "model") }
            let file = try H5File.open(path)
            let group = try file.openGroup("model")
            XCTAssertEqual(try group.stringAttribute("format"), "moe-run/1")
            XCTAssertEqual(try group.stringAttribute("kind"), "model")
            let json = try group.stringAttribute("config")
            let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
            XCTAssertEqual(object["kind"] as? String, "transformer")
            XCTAssertEqual(Set(object.keys), ["kind", "vocab", "context", "hidden", "heads", "blocks", "ffn", "activation",
                                              "dropout", "tie_embeddings", "norm_eps", "moe"])
            XCTAssertEqual(object["tie_embeddings"] as? Bool, tie)
            XCTAssertEqual(group.exists("head/weight"), !tie)
            XCTAssertEqual(try group.openDataset("embed/weight").shape, [17, 12])
            XCTAssertEqual(try group.openDataset("pos/weight").shape, [8, 12])
            XCTAssertEqual(try group.openDataset("blocks/0/attn/qkv/weight").shape, [36, 12])
            XCTAssertEqual(try group.openDataset("blocks/1/moe/experts/w2").shape, [3, 12, 20])
            XCTAssertEqual(try Checkpoint.readKindAndConfig(from: file, at: "model").kind, "transformer")

            let (any, norm) = try Checkpoint.loadAnyModel(from: file, at: "model")
            XCTAssertNil(norm)
            XCTAssertEqual(any.checkpointKind, "transformer")
            let loaded = try XCTUnwrap(any as? TransformerLM)
            XCTAssertEqual(loaded.config, model.config)
            XCTAssertEqual(loaded.parameters.map(\.name), model.parameters.map(\.name))
            for (a, b) in zip(model.parameters, loaded.parameters) { XCTAssertTrue(a.value.bitwiseEqual(b.value), a.name) }
            let tokens = windows(batch: 5, length: 9, vocab: 17, seed: 3)
            XCTAssertEqual(evaluate(model, tokens, batch: 5, length: 9), evaluate(loaded, tokens, batch: 5, length: 9))
        }
    }

    /// The `mlp`-only loader names the kind it found; a config that describes no model is one line.
    func testWrongKindAndBadConfigAreClearErrors() throws {
        let path = tempPath("model.h5")
        try H5File.createAtomically(path) {
            try Checkpoint.writeModel(TransformerLM(config: config(tie: true), seed: 1), normalization: nil, to: $0, at: "model")
        }
        let file = try H5File.open(path)
        XCTAssertThrowsError(try Checkpoint.loadModel(from: file, at: "model")) { error in
            XCTAssertEqual("\(error)", "\(path):/model: unknown model kind \"transformer\" in config (this moe-run reads: mlp)")
        }
        let bad = tempPath("bad.h5")
        try H5File.createAtomically(bad) { file in
            let group = try file.createGroup("model")
            try group.setAttribute("format", "moe-run/1")
            try group.setAttribute("kind", "model")
            try group.setAttribute("config", #"{"context":8,"heads":3,"hidden":16,"kind":"transformer"}"#)
        }
        XCTAssertThrowsError(try Checkpoint.loadAnyModel(from: try H5File.open(bad), at: "model")) { error in
            XCTAssertEqual("\(error)", "\(bad):/model: not a moe-run model checkpoint: config is not valid: heads (3) must divide hidden (16)")
        }
    }

    /// numpy rebuilds the forward pass from the checkpoint file alone and gets moe-run's loss.
    func testNumpyRecomputesTheLossFromTheCheckpointAlone() throws {
        let env = ProcessInfo.processInfo.environment
        let python = env["MOE_RUN_PYTHON"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache/moe-run/venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("no Python with numpy and h5py: set MOE_RUN_PYTHON (make test does)")
        }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("python/transformer_forward.py").path
        let cases: [(String, TransformerConfig)] = [
            ("dense untied", config(tie: false, moe: nil)),
            ("moe top-2 tied", config(tie: true)),
            ("switch untied", config(tie: false, moe: MoEConfig(experts: 4, blocks: [0, 1], router: .switch))),
        ]
        for (name, c) in cases {
            let model = TransformerLM(config: c, seed: 11)
            // Larger values than GPT-2's start, so the loss is far from ln(vocab) and every tensor matters.
            for p in model.parameters {
                var rng = RNG(seed: 5, purpose: "test/values/" + p.name)
                rng.fillNormal(p.value, std: 0.3)
                if p.name.hasSuffix("norm/weight") { for i in 0..<p.value.count { p.value.data[i] += 1 } }
            }
            let (batch, length) = (4, 9)
            let tokens = windows(batch: batch, length: length, vocab: 17, seed: 9)
            let checkpoint = tempPath("model.h5"), batchFile = tempPath("windows.h5")
            try H5File.createAtomically(checkpoint) { try Checkpoint.writeModel(model, normalization: nil, to: $0, at: "run/model") }
            try H5File.createAtomically(batchFile) { try $0.createDataset("tokens", tokens, shape: [batch, length]) }
            let sums = evaluate(model, tokens, batch: batch, length: length)

            let process = Process()
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments = [script, checkpoint, "run/model", batchFile]
            let pipe = Pipe(), errors = Pipe()
            process.standardOutput = pipe
            process.standardError = errors
            try process.run()
            let output = pipe.fileHandleForReading.readDataToEndOfFile()
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0, "\(name): \(stderr)")
            let result = try XCTUnwrap(try JSONSerialization.jsonObject(with: output) as? [String: Any], name)
            let loss = try XCTUnwrap(result["loss"] as? Double)
            XCTAssertEqual(sums.meanLoss, loss, accuracy: 1e-5 * loss, name)
            XCTAssertEqual(sums.correct, result["correct"] as? Int, name)
            XCTAssertEqual(sums.scored, result["scored"] as? Int, name)
            XCTAssertGreaterThan(abs(loss - log(17)), 0.1, "\(name): a loss near ln(vocab) would prove little")
        }
    }
}
