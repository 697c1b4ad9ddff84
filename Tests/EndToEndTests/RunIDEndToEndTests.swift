import Foundation
import MoECore
import MoEHDF5
import XCTest

/// Run ids with the real binary (docs/results.md): keys that cannot change results share a run
/// directory (and really give the same bits), and a run made under the old id scheme is found.
final class RunIDEndToEndTests: XCTestCase {
    /// `tinySpec` with every result-neutral key changed: description, log and checkpoint
    /// intervals, output compression, kept checkpoints, retries and (mode none) workers.
    private let neutralVariant = tinySpec(name: "neutral", extra: "description: the same run, logged differently\nparallelism:\n  workers: 2\n  retries: 3")
        .replacingOccurrences(of: "log_every: 5", with: "log_every: 7\n  checkpoint_every: 13")
        .replacingOccurrences(of: "  dir: out", with: "  dir: out\n  compression: 1\n  keep_checkpoints: 3")

    func testResultNeutralKeysShareARunAndItsBits() throws {
        let dir = try CLI.workspace(tinySpec(name: "neutral"))
        let first = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(first.status, 0, first.stderr)
        try neutralVariant.write(toFile: dir + "/variant.yaml", atomically: true, encoding: .utf8)

        let refused = try CLI.run(["variant.yaml"], in: dir)
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssertEqual(refused.stderr, "moe-run: error: \(first.lastLine): a complete run of this spec exists; "
                       + "use --resume to reuse it or --force to run again\n")

        // Run elsewhere to compare: the same id, the same final bits, though the logs differ.
        let second = try CLI.run(["variant.yaml", "--out", "other", "--quiet"], in: dir)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual((second.lastLine as NSString).lastPathComponent, (first.lastLine as NSString).lastPathComponent)
        XCTAssertEqual(try CLI.finalModelBits(dir + "/" + second.lastLine), try CLI.finalModelBits(dir + "/" + first.lastLine))
        func logSteps(_ run: String) throws -> [Int64] {
            try H5File.open(dir + "/" + run + "/tasks/train.h5").read("metrics/step", as: Int64.self).values
        }
        let steps = try logSteps(first.lastLine), otherSteps = try logSteps(second.lastLine)
        XCTAssertEqual(steps.prefix(2), [5, 10])
        XCTAssertEqual(otherSteps.prefix(2), [7, 14], "log_every took effect")
        CLI.assertNoProcesses(in: dir)
    }

    /// A run directory named by the old scheme (the SHA-256 of the whole resolved spec with
    /// `output.dir` emptied and without the keys added since, computed here from the spec stored
    /// in run.h5) is found: `--resume`
    /// continues it where it is, to the bits of an undisturbed run, and says where it came from.
    func testAnUnfinishedRunOfTheOldIdSchemeIsResumed() throws {
        let spec = longSpec(name: "legacy")
        let reference = try CLI.completeRun(spec)
        let yaml = try H5File.open(reference + "/run.h5").readString("spec")
        XCTAssertTrue(yaml.contains("\n  dir: out\n"))
        // As the old moe-run wrote it: without the keys added since (issues 13, 14, 15 and 16), at their defaults.
        let old = yaml.replacingOccurrences(of: "\n  steps: null\n", with: "\n").replacingOccurrences(of: "\n  kind: mlp\n", with: "\n")
            .replacingOccurrences(of: "\n  backend: auto\n", with: "\n").replacingOccurrences(of: "\n  prior: validation\n", with: "\n")
            .replacingOccurrences(of: "\n  pretrain_steps: 0\n", with: "\n")
            .replacingOccurrences(of: "\n  shared_experts: 0\n", with: "\n").replacingOccurrences(of: "\n  shared_ffn: null\n", with: "\n")
            .replacingOccurrences(of: "\n  score: softmax\n  balance: aux_loss\n  bias_rate: 0.001\n", with: "\n")
        // ... and issue 17's (data.seed, eval.metric, train.early_stopping, split.source, fusion.source, train.init_from).
            .replacingOccurrences(of: "\n  seed: null\n", with: "\n").replacingOccurrences(of: "\n  metric: val_loss\n", with: "\n")
            .replacingOccurrences(of: "\n  early_stopping: null\n", with: "\n").replacingOccurrences(of: "\n  source: final\n", with: "\n")
            .replacingOccurrences(of: "\n  init_from: null\n", with: "\n")
        XCTAssertNotEqual(old, yaml)
        let legacyID = String(SHA256.hex(old.replacingOccurrences(of: "\n  dir: out\n", with: "\n  dir: \"\"\n")).prefix(12))
        XCTAssertNotEqual(legacyID, (reference as NSString).lastPathComponent)

        let dir = try CLI.workspace(spec)
        try CLI.startAndKillAfterFirstCheckpoint(in: dir)
        let current = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/legacy").first)
        try FileManager.default.moveItem(atPath: dir + "/out/legacy/" + current, toPath: dir + "/out/legacy/" + legacyID)

        let refused = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(refused.status, 2)
        XCTAssertTrue(refused.stderr.hasPrefix("moe-run: error: out/legacy/\(legacyID): an unfinished run of this spec exists"), refused.stderr)

        let resumed = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("out/legacy/\(legacyID): a run of this spec made by an older moe-run (run id scheme 1); using it"),
                      resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("resuming from the checkpoint at step"), resumed.stdout)
        XCTAssertEqual(resumed.lastLine, "out/legacy/" + legacyID)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/legacy"), [legacyID], "no second run directory")
        XCTAssertEqual(try CLI.finalModelBits(dir + "/" + resumed.lastLine), try CLI.finalModelBits(reference))
        CLI.assertNoProcesses(in: dir)
    }
}
