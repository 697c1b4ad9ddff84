import Foundation
import MoECore
import MoEHDF5
import MoENN
@testable import MoERuntime
import MoEStore
import XCTest

/// `Sampling` (`moe-run sample`) on checkpoints written by MoEStore: the stored model gives the
/// same text as the model in memory, through every way of naming it; bad options and prompts
/// are one-line usage errors before any byte is emitted.
final class SamplingTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sampling-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    private func transformer(vocab: Int = 256, moe: MoEConfig? = nil) -> TransformerLM {
        let model = TransformerLM(config: TransformerConfig(vocab: vocab, context: 12, hidden: 16, heads: 2, blocks: 2, ffn: 24, moe: moe),
                                  seed: 4)
        for p in model.parameters where !p.name.hasSuffix("norm/weight") {
            var rng = RNG(seed: 4, purpose: "test/" + p.name)
            rng.fillNormal(p.value, std: 0.3)
        }
        return model
    }

    /// Writes `model` as a checkpoint group `group` of a new file `name` with the store API.
    @discardableResult
    private func write(_ model: any TrainableModel, _ name: String, group: String = "model") throws -> String {
        let path = directory + "/" + name
        try H5File.createAtomically(path) { try Checkpoint.writeModel(model, normalization: nil, to: $0, at: group) }
        return path
    }

    private func request(_ checkpoint: String, prompt: String = "ab", tokens: Int = 30, temperature: Float = 0.9,
                         topK: Int? = nil, seed: UInt64 = 5, domain: Int? = nil) -> Sampling.Request {
        Sampling.Request(checkpoint: checkpoint, prompt: Array(prompt.utf8), tokens: tokens, temperature: temperature,
                         topK: topK, seed: seed, domain: domain)
    }

    private func run(_ request: Sampling.Request) throws -> ([UInt8], Sampling.Report) {
        var bytes: [UInt8] = []
        let report = try Sampling.run(request) { bytes.append($0) }
        return (bytes, report)
    }

    func testStoredModelSamplesLikeTheModelInMemory() throws {
        for moe in [nil, MoEConfig(experts: 4, blocks: [1], k: 2)] {
            let model = transformer(moe: moe)
            let file = try write(model, "lm-\(moe == nil ? "dense" : "moe").h5", group: "checkpoints/7/model")
            let expected = TransformerDecoder(model: model).generate(prompt: [97, 98], count: 30,
                                                                     sampler: TokenSampler(temperature: 0.9, seed: 5)).tokens
            for reference in [file + ":/checkpoints/7/model", file + ":/checkpoints/7"] {
                let (bytes, report) = try run(request(reference))
                XCTAssertEqual(bytes.map { Int32($0) }, expected, reference)
                XCTAssertEqual(report.generated, 30)
                XCTAssertEqual(report.promptTokens, 2)
                XCTAssertEqual(report.slides, 3)  // context 12 keeps 6: slides at 13, 20 and 27 tokens
                XCTAssertTrue(report.line.hasPrefix("sample: 30 tokens in "), report.line)
                XCTAssertTrue(report.line.contains(" tokens/s; prompt 2 tokens, 3 window slides)"), report.line)
            }
        }
        // Greedy through a plain file reference (its `/model`).
        let model = transformer()
        let plain = try write(model, "plain.h5")
        XCTAssertEqual(try run(request(plain, temperature: 0)).0,
                       TransformerDecoder(model: model).generate(prompt: [97, 98], count: 30,
                                                                 sampler: TokenSampler(temperature: 0, seed: 0)).tokens.map { UInt8($0) })
    }

    private func assertUsage(_ request: Sampling.Request, _ message: String, line: UInt = #line) {
        var emitted = 0
        XCTAssertThrowsError(try Sampling.run(request) { _ in emitted += 1 }, line: line) { error in
            guard let error = error as? RuntimeError else { return XCTFail("\(error)", line: line) }
            XCTAssertEqual(error.exitCode, 2, line: line)
            XCTAssertEqual(error.description, message, line: line)
        }
        XCTAssertEqual(emitted, 0, line: line)
    }

    func testBadInputIsOneUsageLineBeforeAnyByte() throws {
        let lm = try write(transformer(), "lm.h5")
        let small = try write(transformer(vocab: 100), "small.h5")
        let domainRouted = try write(transformer(moe: MoEConfig(experts: 2, blocks: [0], router: .domain, k: 1)), "domain.h5")
        let mlp = try write(ResidualMLP(config: ModelConfig(features: 3, classes: 2, hidden: 4, ffn: 6, blocks: 1), seed: 2), "mlp.h5")
        assertUsage(request(lm, prompt: ""), "--prompt: empty; give at least one byte (without --prompt the prompt is a newline)")
        assertUsage(request(lm, prompt: String(repeating: "x", count: 13)), "--prompt: 13 bytes, longer than the model's context of 12 tokens")
        assertUsage(request(small, prompt: "abé"), "--prompt: byte 0xC3 at offset 2 is outside the model's vocabulary of 100 tokens (0...99)")
        assertUsage(request(lm, tokens: 0), "--tokens: expected an integer >= 1, got 0")
        assertUsage(request(lm, temperature: -0.5), "--temperature: expected a number >= 0, got -0.5")
        assertUsage(request(lm, topK: 0), "--top-k: expected an integer >= 1, got 0")
        assertUsage(request(mlp), "\(mlp):/model is an mlp checkpoint; sample needs a transformer")
        assertUsage(request(directory + "/missing.h5"), "\(directory)/missing.h5: no such file")
        assertUsage(request(domainRouted), "--domain: the model routes its tokens by domain; give the domain id with --domain N")
        assertUsage(request(lm, domain: 1), "--domain 1: the model does not route by domain (no `router.type: domain` layer)")
        XCTAssertEqual(try run(request(domainRouted, domain: 1)).0.count, 30)
    }
}
