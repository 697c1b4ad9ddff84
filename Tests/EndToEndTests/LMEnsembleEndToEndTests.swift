import Foundation
import MoECore
import MoEData
import MoEHDF5
import MoENN
import MoEStore
import XCTest

/// A BTM ensemble of transformer LMs through the built binary: the checkpoint is written here by
/// hand from ARCHITECTURE §5.3's ensemble layout (kind "ensemble", `experts/<i>`, `posterior/prior`),
/// then `moe-run sample` prints text and `moe-run eval` scores it on a tasks/data.h5 corpus; an
/// ensemble of one expert repeated scores as that expert.
final class LMEnsembleEndToEndTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-lm-ensemble-e2e-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    private func lm(seed: UInt64) -> TransformerLM {
        let model = TransformerLM(config: TransformerConfig(vocab: 256, context: 16, hidden: 16, heads: 2, blocks: 2, ffn: 32), seed: seed)
        for p in model.parameters where !p.name.hasSuffix("norm/weight") {
            var rng = RNG(seed: seed, purpose: "e2e/" + p.name)
            rng.fillNormal(p.value, std: 0.3)
        }
        return model
    }

    private func writeEnsemble(_ experts: [TransformerLM], prior: [Double], _ name: String) throws {
        try H5File.createAtomically(dir + "/" + name) { file in
            let g = try file.createGroup("model")
            try g.setAttribute("format", "moe-run/1")
            try g.setAttribute("kind", "ensemble")
            try g.setAttribute("config", experts[0].configJSON)
            try g.setAttribute("experts", Int64(experts.count))
            try g.setAttribute("posterior", "prefix")
            try g.setAttribute("prior", "uniform")
            for (i, m) in experts.enumerated() { try Checkpoint.writeModel(m, normalization: nil, to: g, at: "experts/\(i)") }
            try g.createDataset("posterior/prior", prior)
        }
    }

    func testSampleAndEvalAcceptAnEnsembleCheckpoint() throws {
        try writeEnsemble([lm(seed: 1), lm(seed: 2), lm(seed: 3)], prior: [0.2, 0.3, 0.5], "btm.h5")
        try writeEnsemble([lm(seed: 1), lm(seed: 1)], prior: [0.5, 0.5], "twins.h5")
        try H5File.createAtomically(dir + "/one.h5") { try Checkpoint.writeModel(self.lm(seed: 1), normalization: nil, to: $0, at: "model") }
        let raw = TextDomains(names: ["a", "b"], texts: [Array(String(repeating: "one two three ", count: 20).utf8),
                                                          Array(String(repeating: "x = y + 1;\n", count: 20).utf8)])
        try TextCorpus.split(raw, train: 0.5, val: 0.3, source: "e2e").write(hdf5: dir + "/data.h5")

        let out = Pipe(), err = Pipe()
        let p = try CLI.start(["sample", "btm.h5", "--prompt", "one", "--tokens", "40", "--seed", "3"], in: dir, stdout: out, stderr: err)
        let text = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, stderr)
        XCTAssertEqual(text.count, 40)
        XCTAssertTrue(stderr.hasPrefix("sample: 40 tokens in ") && stderr.contains("prompt 3 tokens"), stderr)

        let eval = try CLI.run(["eval", "btm.h5", "data.h5", "--batch-size", "4"], in: dir)
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let lines = eval.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 3, eval.stdout)
        XCTAssertTrue(lines[1].hasPrefix("data.h5: val: ") && lines[1].contains(" tokens, loss ") && lines[1].contains("bits per byte"), eval.stdout)

        // Two identical experts: the same figures as the expert alone (printed to 4-6 decimals).
        let twins = try CLI.run(["eval", "twins.h5", "data.h5"], in: dir), one = try CLI.run(["eval", "one.h5", "data.h5"], in: dir)
        XCTAssertEqual(twins.status, 0, twins.stderr)
        func figures(_ stdout: String) -> [[Double]] {
            stdout.split(separator: "\n").map { line in
                line.split(whereSeparator: { " ,:".contains($0) }).compactMap { Double($0) }
            }
        }
        let (a, b) = (figures(twins.stdout), figures(one.stdout))
        XCTAssertEqual(a.count, 3)
        XCTAssertEqual(a.map(\.count), b.map(\.count))
        for (x, y) in zip(a.joined(), b.joined()) { XCTAssertEqual(x, y, accuracy: 2e-6, "\(twins.stdout) vs \(one.stdout)") }
    }
}
