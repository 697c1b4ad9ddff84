import Foundation
import XCTest

/// Bad specs and bad overrides end as one precise line on stderr, exit 2, nothing written.
final class SpecErrorEndToEndTests: XCTestCase {
    func testBadSpecExitsTwoWithOneLineAndWritesNothing() throws {
        let dir = try CLI.workspace(tinySpec().replacingOccurrences(of: "blocks: 2", with: "blocks: 2\n  hiden: 3"))
        for args in [["validate", "spec.yaml"], ["spec.yaml"], ["plan", "spec.yaml"]] {
            let r = try CLI.run(args, in: dir)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("moe-run: error: spec.yaml:13:3: model.hiden: unknown key; did you mean hidden?"), r.stderr)
            XCTAssertEqual(r.stdout, "")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing written")
    }

    func testUnknownOverrideKeyIsRefusedWithSuggestion() throws {
        let quickstart = CLI.repositoryRoot.appendingPathComponent("experiments/quickstart.yaml").path
        let dir = try CLI.workspace(tinySpec())
        let r = try CLI.run([quickstart, "--set", "train.lrr=1", "--out", dir + "/out"], in: dir)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("moe-run: error: --set"), r.stderr)
        XCTAssertTrue(r.stderr.contains("train.lrr: unknown key; did you mean lr?"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"))
    }

    func testValidateAcceptsShippedExperiments() throws {
        for name in ["quickstart", "digits-dense"] {
            let path = CLI.repositoryRoot.appendingPathComponent("experiments/\(name).yaml").path
            let r = try CLI.run(["validate", path], in: NSTemporaryDirectory())
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
        }
    }

    func testMissingSpecFileAndBadUsage() throws {
        let dir = try CLI.workspace(tinySpec())
        let missing = try CLI.run(["nope.yaml"], in: dir)
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.hasPrefix("moe-run: error: nope.yaml"), missing.stderr)
        let usage = try CLI.run(["spec.yaml", "--bogus"], in: dir)
        XCTAssertEqual(usage.status, 2, usage.stderr)
        XCTAssertTrue(usage.stderr.contains("--bogus"), usage.stderr)
    }

    func testHelpAndVersionExitZero() throws {
        let help = try CLI.run(["--help"], in: NSTemporaryDirectory())
        XCTAssertEqual(help.status, 0, help.stderr)
        for command in ["validate", "plan", "show", "eval"] { XCTAssertTrue(help.stdout.contains(command), help.stdout) }
        XCTAssertFalse(help.stdout.contains("worker"), "the worker mode is internal")
        let sub = try CLI.run(["plan", "--help"], in: NSTemporaryDirectory())
        XCTAssertEqual(sub.status, 0, sub.stderr)
        XCTAssertTrue(sub.stdout.contains("USAGE: moe-run plan"), sub.stdout)
        let version = try CLI.run(["--version"], in: NSTemporaryDirectory())
        XCTAssertEqual(version.status, 0)
        XCTAssertEqual(version.stdout, "0.1.0\n")
    }

    /// The scheduler's exact `worker --run-dir D --task T` skips the argument parser; it fails
    /// as the parsed form does: the same line on stderr, the same exit status.
    func testTheWorkersFastPathFailsAsTheParsedCommandDoes() throws {
        let dir = NSTemporaryDirectory()
        let missing = dir + "/no-such-run-\(UUID().uuidString)"
        let fast = try CLI.run(["worker", "--run-dir", missing, "--task", "train"], in: dir)
        let parsed = try CLI.run(["worker", "--task", "train", "--run-dir", missing], in: dir)
        XCTAssertEqual(fast.status, 1, fast.stderr)
        XCTAssertEqual(parsed.status, fast.status)
        XCTAssertEqual(parsed.stderr, fast.stderr)
        XCTAssertTrue(fast.stderr.hasPrefix("moe-run: error: "), fast.stderr)
        XCTAssertTrue(fast.stderr.contains(missing), fast.stderr)
        XCTAssertEqual(fast.stderr.split(separator: "\n").count, 1, fast.stderr)
    }
}
