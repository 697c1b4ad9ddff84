import Foundation
import MoEHDF5
import XCTest

/// Issue 13's spec keys through the built binary: what validates, what `plan` shows, and the
/// one-line refusals (exit 2, nothing written) of what is invalid or not runnable yet.
final class LMSpecEndToEndTests: XCTestCase {
    /// A spec with `train.steps` validates, plans and runs that many steps: as many as two
    /// epochs give the two-epoch run's bits (the evaluations of `eval_every: 0`, at the end of
    /// training, read the weights and change nothing); seven more cycle into a third epoch cut short.
    func testStepsValidatePlanAndRunThatManySteps() throws {
        let epochsRun = try CLI.completeRun(tinySpec(epochs: 2))
        let steps = Int(try H5File.open(epochsRun + "/tasks/train.h5").attribute("steps", as: Int64.self))
        let dir = try CLI.workspace(tinySpec().replacingOccurrences(of: "epochs: 3", with: "steps: \(steps)"))
        let valid = try CLI.run(["validate", "spec.yaml"], in: dir)
        XCTAssertEqual(valid.status, 0, valid.stderr)
        XCTAssertEqual(valid.stdout, "spec.yaml: valid (tiny)\n")
        let plan = try CLI.run(["plan", "spec.yaml"], in: dir)
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertTrue(plan.stdout.contains("for \(steps) steps, adamw"), plan.stdout)
        let run = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(try CLI.finalModelBits(dir + "/" + run.lastLine), try CLI.finalModelBits(epochsRun),
                       "train.steps = 2 epochs of steps trains what train.epochs: 2 trains")

        let cut = try CLI.completeRun(tinySpec().replacingOccurrences(of: "epochs: 3", with: "steps: \(steps + 7)"))
        let file = try H5File.open(cut + "/tasks/train.h5")
        XCTAssertEqual(try file.attribute("steps", as: Int64.self), Int64(steps + 7))
        XCTAssertEqual(try file.read("metrics/step", as: Int64.self).values.last, Int64(steps + 7))
        XCTAssertEqual(try CLI.trainSeries(cut, "epoch").last, 2, "the third epoch of the batch order, cut short")
        XCTAssertEqual(try file.read("metrics/eval/step", as: Int64.self).values, [Int64(steps + 7)],
                       "with train.steps, eval_every: 0 is the end of training")
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
