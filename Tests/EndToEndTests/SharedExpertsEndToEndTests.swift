import Foundation
import MoEHDF5
import XCTest

/// Shared experts (`model.shared_experts`, DeepSeekMoE) through the built binary, for both model
/// kinds: the checkpoint layout `blocks/<i>/moe/shared/*`, the numpy recomputation from the HDF5
/// alone (check_run.py), the active-parameter count in the log and in `moe-run show`, and exact
/// resume after SIGKILL.
final class SharedExpertsEndToEndTests: XCTestCase {
    private func mlpSpec(name: String, epochs: Int = 3) -> String {
        tinyMoESpec(name: name, epochs: epochs, router: "{type: topk, k: 2, capacity_factor: 1.0, min_capacity: 2}")
            .replacingOccurrences(of: "moe_blocks: [1]", with: "moe_blocks: [1]\n  shared_experts: 2\n  shared_ffn: 8")
    }

    /// The mlp: shared tensors `[S, shared_ffn, hidden]` / `[S, hidden, shared_ffn]` in the final
    /// checkpoint, `shared_experts` in its config, numpy reproduces the test loss, and the log
    /// counts the shared experts as active (hidden 16, ffn 16, 4 experts, k 2: 2 routed experts
    /// of 2·16·16 + 16 + 16 = 544 parameters each are inactive per sample).
    func testMLPWithSharedExpertsIsRecomputedByNumpyAndCountsThemActive() throws {
        let dir = try CLI.workspace(mlpSpec(name: "interop"))
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let runDir = dir + "/" + r.lastLine
        let model = try H5File.open(runDir + "/run.h5").openGroup("models/final")
        XCTAssertEqual(try model.read("blocks/1/moe/shared/w1", as: Float.self).shape, [2, 8, 16])
        XCTAssertEqual(try model.read("blocks/1/moe/shared/b1", as: Float.self).shape, [2, 8])
        XCTAssertEqual(try model.read("blocks/1/moe/shared/w2", as: Float.self).shape, [2, 16, 8])
        XCTAssertEqual(try model.read("blocks/1/moe/shared/b2", as: Float.self).shape, [2, 16])
        XCTAssertTrue(try model.stringAttribute("config").contains("\"shared_experts\":2"))
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        let line = try XCTUnwrap(log.split(separator: "\n").first { $0.contains("active per sample") }, log)
        let counts = line.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: CharacterSet(charactersIn: "(,"))) }
        XCTAssertEqual(counts.count >= 2 ? counts[0] - counts[1] : -1, 2 * 544, String(line))
        try CLI.assertNumpyReproduces(runDir, models: ["final"])
        // `moe-run show` counts them active too (ModelCost reads the stored shapes).
        let show = try CLI.run(["show", r.lastLine], in: dir)
        XCTAssertEqual(show.status, 0, show.stderr)
        let total = counts.first ?? -1, active = total - 2 * 544
        XCTAssertTrue(show.stdout.contains("parameters \(Self.grouped(total)) total, \(Self.grouped(active)) active per sample"), show.stdout)
    }

    /// 12345 → "12,345", as `moe-run show` writes counts.
    private static func grouped(_ n: Int) -> String {
        let digits = Array(String(n))
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return out
    }

    /// SIGKILL after the first checkpoint, then `--resume`: the shared experts (and everything
    /// else) end bit for bit as in an uninterrupted run.
    func testKilledMLPRunWithSharedExpertsResumesToTheSameBits() throws {
        let yaml = mlpSpec(name: "sharedresume", epochs: 40)
            .replacingOccurrences(of: "log_every: 5", with: "log_every: 5\n  checkpoint_every: 42")
            .replacingOccurrences(of: "samples: 600", with: "samples: 3000")
        let reference = try CLI.completeRun(yaml)
        try killAndResume(in: try CLI.workspace(yaml), reference: reference, shared: "blocks/1/moe/shared/w2")
    }

    /// SIGKILL of the run in `dir` after its first checkpoint, `--resume`, and the final model
    /// bit for bit as `reference`'s (which has the tensor `shared`).
    private func killAndResume(in dir: String, reference: String, shared: String, file: StaticString = #filePath, line: UInt = #line) throws {
        try CLI.startAndKillAfterFirstCheckpoint(in: dir)
        let resumed = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr, file: file, line: line)
        XCTAssertTrue(resumed.stdout.contains("resuming from the checkpoint at step"), resumed.stdout, file: file, line: line)
        let expected = try CLI.finalModelBits(reference), got = try CLI.finalModelBits(dir + "/" + resumed.lastLine)
        XCTAssertEqual(Set(got.keys), Set(expected.keys), file: file, line: line)
        XCTAssertTrue(expected.keys.contains(shared), "\(expected.keys.sorted())", file: file, line: line)
        for (name, bits) in expected where got[name] != bits { XCTFail("\(name) differs after resume", file: file, line: line) }
    }

    /// The transformer LM with one shared expert in its MoE block: numpy (transformer_forward.py)
    /// reproduces its val and test figures, and a run killed after its first checkpoint resumes
    /// to the same final bits.
    func testLMWithSharedExpertsIsRecomputedByNumpyAndResumesExactly() throws {
        func workspace() throws -> String {
            let dir = try CLI.lmWorkspace(steps: 200, moe: true, dropout: 0.1, logEvery: 10, evalEvery: 100, checkpointEvery: 45)
            let spec = try String(contentsOfFile: dir + "/spec.yaml", encoding: .utf8)
            XCTAssertTrue(spec.contains("moe_blocks: [1]"))
            try spec.replacingOccurrences(of: "moe_blocks: [1]", with: "moe_blocks: [1], shared_experts: 1, shared_ffn: 16")
                .write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
            return dir
        }
        let ref = try workspace()
        let r = try CLI.run(["spec.yaml"], in: ref)
        XCTAssertEqual(r.status, 0, r.stderr)
        let reference = ref + "/" + r.lastLine
        XCTAssertEqual(try H5File.open(reference + "/run.h5").openGroup("models/final").read("blocks/1/moe/shared/w1", as: Float.self).shape,
                       [1, 16, 32])
        XCTAssertTrue(try String(contentsOfFile: reference + "/log.txt", encoding: .utf8).contains("active per token"))
        try CLI.assertNumpyReproduces(reference, models: ["final"])

        try killAndResume(in: try workspace(), reference: reference, shared: "blocks/1/moe/shared/w1")
    }
}
