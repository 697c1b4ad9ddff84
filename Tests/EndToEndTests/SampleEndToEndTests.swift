import Foundation
import MoECore
import MoEHDF5
import MoENN
import MoEStore
import XCTest

/// `moe-run sample` through the built binary on checkpoints written with the store API: raw
/// bytes on stdout, one speed line on stderr, the same text for the same seed, and every bad
/// input one `moe-run: error:` line with exit 2 and nothing on stdout.
final class SampleEndToEndTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-sample-e2e-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try write(lm(vocab: 256), "lm.h5", group: "checkpoints/3/model")
        try write(lm(vocab: 256, moe: MoEConfig(experts: 4, blocks: [1], k: 2)), "moe.h5", group: "model")
        try write(lm(vocab: 120), "small.h5", group: "model")
        try write(ResidualMLP(config: ModelConfig(features: 3, classes: 2, hidden: 4, ffn: 6, blocks: 1), seed: 1), "mlp.h5", group: "model")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    private func lm(vocab: Int, moe: MoEConfig? = nil) -> TransformerLM {
        let model = TransformerLM(config: TransformerConfig(vocab: vocab, context: 16, hidden: 16, heads: 2, blocks: 2, ffn: 32, moe: moe),
                                  seed: 6)
        for p in model.parameters where !p.name.hasSuffix("norm/weight") {
            var rng = RNG(seed: 6, purpose: "e2e/" + p.name)
            rng.fillNormal(p.value, std: 0.3)
        }
        return model
    }

    private func write(_ model: any TrainableModel, _ name: String, group: String) throws {
        try H5File.createAtomically(dir + "/" + name) { try Checkpoint.writeModel(model, normalization: nil, to: $0, at: group) }
    }

    /// Runs the binary; stdout as raw bytes (generated text need not be UTF-8).
    private func run(_ args: [String]) throws -> (status: Int32, stdout: Data, stderr: String) {
        let out = Pipe(), err = Pipe()
        let p = try CLI.start(["sample"] + args, in: dir, stdout: out, stderr: err)
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, o, String(decoding: e, as: UTF8.self))
    }

    func testSamplePrintsRawBytesDeterministicallyAndTokensPerSecond() throws {
        for reference in ["lm.h5:/checkpoints/3/model", "lm.h5:/checkpoints/3", "moe.h5"] {
            let a = try run([reference, "--prompt", "Hello", "--tokens", "40", "--seed", "7", "--top-k", "50"])
            XCTAssertEqual(a.status, 0, a.stderr)
            XCTAssertEqual(a.stdout.count, 40, reference)  // raw bytes, no newline added for a pipe
            let lines = a.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, a.stderr)
            XCTAssertTrue(a.stderr.hasPrefix("sample: 40 tokens in ") && a.stderr.contains(" tokens/s; prompt 5 tokens, 4 window slides)"),
                          a.stderr)
            let b = try run([reference, "--prompt", "Hello", "--tokens", "40", "--seed", "7", "--top-k", "50"])
            XCTAssertEqual(a.stdout, b.stdout, "same seed, same bytes")
            let c = try run([reference, "--prompt", "Hello", "--tokens", "40", "--seed", "8", "--top-k", "50"])
            XCTAssertNotEqual(a.stdout, c.stdout, "another seed, other bytes")
        }
        // Greedy ignores the seed; the default prompt is a newline.
        let g1 = try run(["moe.h5", "--temperature", "0", "--seed", "1"]), g2 = try run(["moe.h5", "--temperature", "0", "--seed", "2"])
        XCTAssertEqual(g1.status, 0, g1.stderr)
        XCTAssertEqual(g1.stdout, g2.stdout)
        XCTAssertEqual(g1.stdout.count, 256)
        XCTAssertTrue(g1.stderr.contains("prompt 1 tokens"), g1.stderr)
    }

    func testBadInputIsOneLineExitTwoAndNoOutput() throws {
        let cases: [([String], String)] = [
            (["lm.h5:/checkpoints/3", "--prompt", ""], "--prompt: empty; give at least one byte (without --prompt the prompt is a newline)"),
            (["lm.h5:/checkpoints/3", "--prompt", String(repeating: "y", count: 17)],
             "--prompt: 17 bytes, longer than the model's context of 16 tokens"),
            (["small.h5", "--prompt", "a!é"], "--prompt: byte 0xC3 at offset 2 is outside the model's vocabulary of 120 tokens (0...119)"),
            (["moe.h5", "--tokens", "0"], "--tokens: expected an integer >= 1, got 0"),
            (["moe.h5", "--temperature=-1"], "--temperature: expected a number >= 0, got -1.0"),
            (["moe.h5", "--top-k", "0"], "--top-k: expected an integer >= 1, got 0"),
            (["mlp.h5"], "mlp.h5:/model is an mlp checkpoint; sample needs a transformer"),
            (["nothing.h5"], "nothing.h5: no such file"),
            (["lm.h5:/checkpoints/9"], "lm.h5: /checkpoints/9 is not a model checkpoint group; its checkpoints: /checkpoints/3/model"),
            (["moe.h5", "--domain", "0"], "--domain 0: the model does not route by domain (no `router.type: domain` layer)"),
        ]
        for (args, message) in cases {
            let r = try run(args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stdout.count, 0, "\(args)")
            XCTAssertEqual(r.stderr, "moe-run: error: \(message)\n", "\(args)")
        }
    }
}
