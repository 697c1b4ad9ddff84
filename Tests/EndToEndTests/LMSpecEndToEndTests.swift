import Foundation
import XCTest

/// Issue 13's spec keys through the built binary: what validates, what `plan` shows, and the
/// one-line refusals (exit 2, nothing written) of what is invalid or not runnable yet.
final class LMSpecEndToEndTests: XCTestCase {
    /// A spec with `train.steps` validates and plans; a run refuses it with one line (the loop
    /// counts epochs until it is wired), never training epochs in its place.
    func testStepsValidateAndPlanButDoNotRunAsEpochs() throws {
        let dir = try CLI.workspace(tinySpec().replacingOccurrences(of: "epochs: 3", with: "steps: 30"))
        let valid = try CLI.run(["validate", "spec.yaml"], in: dir)
        XCTAssertEqual(valid.status, 0, valid.stderr)
        XCTAssertEqual(valid.stdout, "spec.yaml: valid (tiny)\n")
        let plan = try CLI.run(["plan", "spec.yaml"], in: dir)
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertTrue(plan.stdout.contains("for 30 steps, adamw"), plan.stdout)
        let run = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(run.status, 2, run.stderr)
        XCTAssertEqual(run.stdout, "")
        XCTAssertTrue(run.stderr.hasPrefix("moe-run: error: spec.yaml:15:10: train.steps: training for a number of steps is not wired into the training loop yet; this version trains for train.epochs\n"), run.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing written")
    }

    func testStepsAndEpochsTogetherAreOneLineExitTwo() throws {
        let dir = try CLI.workspace(tinySpec())
        for args in [["validate", "spec.yaml"], ["plan", "spec.yaml"], ["spec.yaml"]] {
            let r = try CLI.run(args + ["--set", "train.steps=5"], in: dir)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stdout, "")
            XCTAssertTrue(r.stderr.hasPrefix("moe-run: error: --set:1:13: train.steps: and train.epochs exclude each other: train for a number of steps or of epochs, not both\n"), r.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing written")
    }
}
