import Foundation
import MoEHDF5
import XCTest

/// `split.strategy: layerwise` with `train.local: true` through the CLI: the plan, per-stage
/// metrics and auxiliary heads, a plain stacked `/models/final`, and resume.
final class LayerwiseEndToEndTests: XCTestCase {
    private func layerwiseSpec(name: String = "stages", epochs: Int = 3) -> String {
        tinySpec(name: name, epochs: epochs)
            .replacingOccurrences(of: "blocks: 2", with: "blocks: 3")
            .replacingOccurrences(of: "  dropout: 0.1", with: "  dropout: 0.1\nexperts: 2\nsplit:\n  strategy: layerwise\nfusion:\n  method: stack")
            .replacingOccurrences(of: "  log_every: 5", with: "  log_every: 5\n  local: true")
    }

    func testLayerwiseRunStoresStagesAndAPlainStackedModel() throws {
        let dir = try CLI.workspace(layerwiseSpec())
        let plan = try CLI.run(["plan", "spec.yaml"], in: dir)
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertTrue(plan.stdout.contains("plan for stages: 3 tasks"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("[train, 1 worker]  layer-wise local training of 2 stages (blocks 0-1, 2)"), plan.stdout)

        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("train: layer-wise local training of 2 stages (blocks 0-1, 2)"), r.stdout)
        let runDir = dir + "/" + r.lastLine
        let show = try CLI.run(["show", runDir], in: dir)
        XCTAssertTrue(show.stdout.contains("layer-wise stages"), show.stdout)
        XCTAssertEqual(show.stdout.split(separator: "\n").filter { $0.hasPrefix("        ") && $0.contains("0.") }.count >= 2, true, show.stdout)
        let run = try H5File.open(runDir + "/run.h5")
        let steps = try run.read("tasks/train/metrics/step", as: Int64.self).values
        for s in 0..<2 {
            let loss = try run.read("tasks/train/metrics/stage_\(s)_loss", as: Double.self).values
            XCTAssertEqual(loss.count, steps.count)
            XCTAssertLessThan(loss.last!, loss.first!, "stage \(s) learns")
            let val = try run.read("tasks/train/metrics/eval/stage_\(s)_val_accuracy", as: Double.self).values
            XCTAssertEqual(val.count, 3, "one evaluation per epoch")
            XCTAssertGreaterThan(val.last!, 0.4)
        }
        // The stacked model's series are the last stage's.
        XCTAssertEqual(try run.read("tasks/train/metrics/train_loss", as: Double.self).values,
                       try run.read("tasks/train/metrics/stage_1_loss", as: Double.self).values)
        XCTAssertEqual(try run.read("tasks/train/stages/0/head/weight", as: Float.self).shape, [3, 16])
        XCTAssertEqual(try run.openGroup("tasks/train/stages/1").attribute("first_block", as: Int64.self), 2)
        XCTAssertFalse(run.exists("tasks/train/stages/1/head"), "the last stage's head is the model's")
        let last = try run.openGroup("tasks/train/checkpoints").children().compactMap(Int.init).max()!
        XCTAssertTrue(run.exists("tasks/train/checkpoints/\(last)/aux/0/head/weight"))
        XCTAssertTrue(run.exists("tasks/train/checkpoints/\(last)/optimizer/exp_avg/aux/0/head/weight"))

        // /models/final is an ordinary dense checkpoint: no auxiliary heads, usable by `eval`.
        let final = try run.openGroup("models/final")
        XCTAssertTrue(try final.stringAttribute("config").contains("\"moe\":null"))
        XCTAssertEqual(try final.children().sorted(), ["blocks", "embed", "head", "input", "norm"])
        let (x, shape) = try run.read("data/test/x", as: Float.self)
        try H5File.createAtomically(dir + "/test.h5") { f in
            try f.createDataset("x", x, shape: shape)
            try f.createDataset("y", try run.read("data/test/y", as: Int64.self).values)
        }
        let e = try CLI.run(["eval", runDir + "/run.h5", dir + "/test.h5"], in: dir)
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertTrue(e.stdout.contains("\(shape[0]) samples, loss"), e.stdout)
        let summaryAccuracy = try run.readScalar("summary/final/test_accuracy", as: Double.self)
        XCTAssertTrue(e.stdout.hasSuffix(String(format: "accuracy %.4f\n", summaryAccuracy)), e.stdout + " vs \(summaryAccuracy)")

        let again = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("the run is complete; nothing to do"), again.stdout)

        let python = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"] ?? (NSHomeDirectory() + "/.cache/moe-run/venv/bin/python")
        if FileManager.default.isExecutableFile(atPath: python) {
            let script = CLI.repositoryRoot.appendingPathComponent("Tests/python/check_run.py").path
            let py = try CLI.tool(python, [script, runDir])
            XCTAssertEqual(py.status, 0, py.stdout + py.stderr)
        }
    }

    /// Killed mid-training and resumed: the stacked model and the auxiliary heads end bit-identical,
    /// and so do the per-stage series (checkpoints every 42 steps fall inside a 5-step log window,
    /// whose sums the checkpoint keeps).
    func testKilledLayerwiseRunResumesToBitIdenticalWeights() throws {
        let yaml = layerwiseSpec(name: "lwresume", epochs: 40)
            .replacingOccurrences(of: "log_every: 5", with: "log_every: 5\n  checkpoint_every: 42")
            .replacingOccurrences(of: "samples: 600", with: "samples: 3000")
        let reference = try CLI.workspace(yaml)
        let ref = try CLI.run(["spec.yaml", "--quiet"], in: reference)
        XCTAssertEqual(ref.status, 0, ref.stderr)
        let dir = try CLI.workspace(yaml)
        try CLI.startAndKillAfterFirstCheckpoint(in: dir)
        let resumed = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from the checkpoint at step"), resumed.stdout)
        let a = try H5File.open(reference + "/" + ref.lastLine + "/tasks/train.h5")
        let b = try H5File.open(dir + "/" + resumed.lastLine + "/tasks/train.h5")
        for name in ["model/embed/weight", "model/blocks/2/ffn/w1", "model/head/weight", "stages/0/head/weight", "stages/0/norm/bias"] {
            XCTAssertEqual(try a.read(name, as: Float.self).values.map(\.bitPattern),
                           try b.read(name, as: Float.self).values.map(\.bitPattern), name)
        }
        for name in ["metrics/stage_0_loss", "metrics/stage_1_accuracy", "metrics/train_loss"] {
            XCTAssertEqual(try a.read(name, as: Double.self).values.map(\.bitPattern),
                           try b.read(name, as: Double.self).values.map(\.bitPattern), name)
        }
    }
}
