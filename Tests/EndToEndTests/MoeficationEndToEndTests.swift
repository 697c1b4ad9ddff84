import Foundation
import MoEHDF5
import XCTest

/// MoEfication through the CLI (`split.strategy: neurons`): a dense pre-training task, its FFN
/// split into narrow experts at the start of `train`, then fine-tuned.
final class MoeficationEndToEndTests: XCTestCase {
    private func neuronsSpec(method: String, k: Int) -> String {
        tinySpec(name: "moefy").replacingOccurrences(
            of: "  dropout: 0.1",
            with: "  dropout: 0.1\nexperts: 4\nrouter:\n  k: \(k)\nsplit:\n  strategy: neurons\n  pretrain_epochs: 4\n  method: \(method)")
    }

    func testDenseModelIsMoefiedIntoNarrowExpertsAndFineTuningStartsNearTheDenseLoss() throws {
        let dir = try CLI.workspace(neuronsSpec(method: "cluster", k: 2))
        let plan = try CLI.run(["plan", "spec.yaml"], in: dir)
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertTrue(plan.stdout.contains("2. pretrain"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("to moefy"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("reads  tasks/pretrain.h5:/model"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("MoE (4 experts of width 8, topk k=2"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("moefied from the dense model (cluster split of its FFN units)"), plan.stdout)
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("train: moefied the dense model in "), r.stdout)
        XCTAssertTrue(r.stdout.contains("split into 4 experts of 8 (cluster"), r.stdout)
        let run = try H5File.open(dir + "/" + r.lastLine + "/run.h5")
        XCTAssertTrue(try run.openGroup("models/dense").stringAttribute("config").contains("\"moe\":null"))
        XCTAssertEqual(try run.openDataset("models/dense/blocks/0/ffn/w1").shape, [32, 16])
        XCTAssertEqual(try run.openDataset("models/final/blocks/0/moe/experts/w1").shape, [4, 8, 16])
        XCTAssertEqual(try run.openDataset("models/final/blocks/1/moe/experts/w2").shape, [4, 16, 8])
        XCTAssertTrue(try run.openGroup("models/final").stringAttribute("config").contains("\"expert_ffn\":8"))
        // The partition is stored: every dense unit of the 32 in exactly one expert's row.
        let (units, shape) = try run.read("tasks/train/moefication/0/units", as: Int64.self)
        XCTAssertEqual(shape, [4, 8])
        XCTAssertEqual(units.sorted(), (0..<32).map(Int64.init))
        // Fine-tuning starts near the dense model's loss, far below a fresh start's.
        let dense = try run.read("tasks/pretrain/metrics/train_loss", as: Double.self).values
        let moefied = try run.read("tasks/train/metrics/train_loss", as: Double.self).values
        XCTAssertLessThan(moefied[0], dense[0] * 0.8, "pretrain \(dense), train \(moefied)")
        XCTAssertLessThan(moefied[0], dense.last! * 1.25, "pretrain \(dense), train \(moefied)")
        // numpy rebuilds the narrow experts from the checkpoint (expert_ffn) and matches the test loss.
        let python = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"] ?? (NSHomeDirectory() + "/.cache/moe-run/venv/bin/python")
        if FileManager.default.isExecutableFile(atPath: python) {
            let script = CLI.repositoryRoot.appendingPathComponent("Tests/python/check_run.py").path
            let py = try CLI.tool(python, [script, dir + "/" + r.lastLine])
            XCTAssertEqual(py.status, 0, py.stdout + py.stderr)
            XCTAssertTrue(py.stdout.contains("4 experts in blocks [0, 1]"), py.stdout)
        }
    }

    /// With every expert selected (k = E) the moefied model starts at the dense function up to
    /// the fitted gates: the first fine-tuning loss is within a few percent of the dense one.
    func testAllExpertsSelectedStartsAtTheDenseLoss() throws {
        let dir = try CLI.workspace(neuronsSpec(method: "contiguous", k: 4))
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let run = try H5File.open(dir + "/" + r.lastLine + "/run.h5")
        let dense = try run.read("tasks/pretrain/metrics/train_loss", as: Double.self).values
        let moefied = try run.read("tasks/train/metrics/train_loss", as: Double.self).values
        XCTAssertLessThan(moefied[0], dense.last! * 1.15 + 0.02, "pretrain \(dense), train \(moefied)")
    }

    func testExpertsMustDivideTheFFNWidth() throws {
        let dir = try CLI.workspace(neuronsSpec(method: "random", k: 2).replacingOccurrences(of: "experts: 4", with: "experts: 3"))
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("experts: must divide model.ffn (32) with split.strategy: neurons"), r.stderr)
    }
}
