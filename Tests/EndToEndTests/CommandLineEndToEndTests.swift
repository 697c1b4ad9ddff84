import Foundation
import XCTest

/// Issue 11 item 10: did-you-mean for subcommands, `validate` and `plan` of a sweep, output
/// line-buffered on a pipe.
final class CommandLineEndToEndTests: XCTestCase {
    func testMistypedSubcommandGetsADidYouMean() throws {
        let dir = try CLI.workspace(tinySpec())
        let r = try CLI.run(["vaildate", "d.yaml"], in: dir)
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr, "moe-run: error: unknown command 'vaildate'; did you mean 'validate'?\n")
        XCTAssertEqual(r.stdout, "")
        let sweep = try CLI.run(["swep", "spec.yaml"], in: dir)
        XCTAssertEqual(sweep.stderr, "moe-run: error: unknown command 'swep'; did you mean 'sweep'?\n")
        // A spec path is still a spec path, even when it does not exist or is named like a command.
        let missing = try CLI.run(["nothere.yaml"], in: dir)
        XCTAssertEqual(missing.status, 2)
        XCTAssertEqual(missing.stderr, "moe-run: error: nothere.yaml: no such file\n")
        try tinySpec(name: "plann").write(toFile: dir + "/plann", atomically: true, encoding: .utf8)
        let file = try CLI.run(["plann", "--quiet", "--out", "out"], in: dir)
        XCTAssertEqual(file.status, 0, file.stderr)
    }

    /// `validate` lists every trial of a sweep spec; an invalid swept value is an error at its
    /// position in the sweep section.
    func testValidateAndPlanListTheTrialsOfASweep() throws {
        let spec = CLI.repositoryRoot.appendingPathComponent("experiments/sweep-router.yaml").path
        let r = try CLI.run(["validate", spec], in: NSTemporaryDirectory())
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "\(spec): valid (sweep-router): a sweep of 24 trials (grid over experts, router.k, seed)")
        XCTAssertEqual(lines.count, 25, r.stdout)
        XCTAssertEqual(lines[1], "  trial 1/24  experts=2 router.k=1 seed=0  valid")
        XCTAssertEqual(lines[24], "  trial 24/24  experts=16 router.k=2 seed=2  valid")
        let plan = try CLI.run(["plan", spec], in: NSTemporaryDirectory())
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertEqual(plan.stdout.components(separatedBy: "plan for sweep-router: ").count - 1, 24, plan.stdout)
        XCTAssertTrue(plan.stdout.hasPrefix("trial 1/24  experts=2 router.k=1 seed=0\nplan for sweep-router: "), plan.stdout)

        let yaml = tinySpec(extra: """
            experts: 2
            split: {strategy: replicate}
            sweep:
              parameters:
                router.k: [1, 3]
            """)
        let dir = try CLI.workspace(yaml)
        let bad = try CLI.run(["validate", "spec.yaml"], in: dir)
        XCTAssertEqual(bad.status, 2)
        let line = try XCTUnwrap(yaml.components(separatedBy: "\n").firstIndex { $0.contains("router.k: [1, 3]") }) + 1
        XCTAssertEqual(bad.stderr, """
            moe-run: error: spec.yaml:\(line):19: router.k: must be between 1 and experts (2), got 3
            hint: trial 2/2 (router.k=3); 1 of 2 trials invalid (trial 2)

            """)
        XCTAssertTrue(bad.stdout.contains("  trial 2/2  router.k=3  INVALID: spec.yaml:\(line):19: router.k: must be between"), bad.stdout)
        // A run still refuses the section (it is many runs: `moe-run sweep`).
        XCTAssertEqual(try CLI.run(["spec.yaml"], in: dir).status, 2)
    }

    /// stdout on a pipe is line-buffered: the sweep's first lines arrive while it runs (it is
    /// then interrupted, which only a running sweep can be: exit 130).
    func testOutputIsLineBufferedOnAPipe() throws {
        let dir = try CLI.workspace(tinySpec(epochs: 400))
        let out = Pipe()
        let p = try CLI.start(["sweep", "spec.yaml", "--grid", "train.lr=0.001,0.002"], in: dir, stdout: out)
        var text = ""
        while !text.contains("started\n") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        XCTAssertTrue(p.isRunning, "the lines arrived only when the sweep ended: \(text)")
        XCTAssertTrue(text.hasPrefix("sweep tiny: 2 trials, 1 at a time → "), text)
        XCTAssertTrue(text.contains("trial 1/2 (train.lr=0.001): started\n"), text)
        kill(p.processIdentifier, SIGINT)
        _ = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130)
        CLI.assertNoProcesses(in: dir)
    }
}
