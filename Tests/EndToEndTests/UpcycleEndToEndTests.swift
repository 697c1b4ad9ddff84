import Foundation
import MoEHDF5
import XCTest

/// Sparse upcycling through the CLI: a pre-training task in the plan, or a given checkpoint.
final class UpcycleEndToEndTests: XCTestCase {
    private func moeSpec(_ extraSplit: String, ffn: Int = 32) -> String {
        tinySpec(name: "up").replacingOccurrences(of: "ffn: 32", with: "ffn: \(ffn)")
            .replacingOccurrences(of: "  dropout: 0.1", with: "  dropout: 0.1\nexperts: 4\nsplit:\n  strategy: replicate\n\(extraSplit)")
    }

    func testPretrainTaskIsUpcycledAndTrainingContinuesFromIt() throws {
        let dir = try CLI.workspace(moeSpec("  pretrain_epochs: 3"))
        let plan = try CLI.run(["plan", "spec.yaml"], in: dir)
        XCTAssertTrue(plan.stdout.contains("2. pretrain"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("reads  tasks/pretrain.h5:/model"), plan.stdout)
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("train: upcycled from the dense model"), r.stdout)
        let run = try H5File.open(dir + "/" + r.lastLine + "/run.h5")
        XCTAssertEqual(try run.openGroup("models/dense").stringAttribute("kind"), "model")
        XCTAssertTrue(try run.openGroup("models/dense").stringAttribute("config").contains("\"moe\":null"))
        XCTAssertEqual(try run.openDataset("models/final/blocks/0/moe/experts/w1").shape, [4, 32, 16])
        // Training continued from the dense model: its first logged loss is far below a fresh start's.
        let fresh = try run.read("tasks/pretrain/metrics/train_loss", as: Double.self).values
        let upcycled = try run.read("tasks/train/metrics/train_loss", as: Double.self).values
        XCTAssertLessThan(upcycled[0], fresh[0] * 0.8, "pretrain \(fresh), train \(upcycled)")
    }

    func testUpcycleFromAnotherRunAndShapeMismatchNamesTheTensor() throws {
        let denseDir = try CLI.workspace(tinySpec(name: "dense"))
        let dense = try CLI.run(["spec.yaml", "--quiet"], in: denseDir)
        XCTAssertEqual(dense.status, 0, dense.stderr)
        let source = denseDir + "/" + dense.lastLine + "/run.h5"

        let dir = try CLI.workspace(moeSpec("  upcycle_from: \(source)"))
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("train: upcycled from the dense model in \(source)"), r.stdout)

        let wrong = try CLI.workspace(moeSpec("  upcycle_from: \(source)", ffn: 48))
        let w = try CLI.run(["spec.yaml"], in: wrong)
        // A pre-flight error (a dry run of the copy): exit 2, at the key, nothing written.
        XCTAssertEqual(w.status, 2, w.stdout + w.stderr)
        XCTAssertEqual(w.stderr, "moe-run: error: spec.yaml:17:17: split.upcycle_from: \(source): cannot upcycle into this spec's model: "
                       + "blocks/0/ffn/w1: shape [32, 16] does not match one expert of blocks/0/moe/experts/w1 [48, 16]\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: wrong + "/out"), "nothing written")
    }
}
