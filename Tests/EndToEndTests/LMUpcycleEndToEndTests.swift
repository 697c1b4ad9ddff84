import Foundation
import MoEHDF5
import XCTest

/// Sparse upcycling and MoEfication of a transformer LM through the CLI (issue 15): a dense
/// pre-training task of `split.pretrain_steps` steps in the plan, or `split.upcycle_from`; the
/// HDF5 files it writes; and the numpy recomputation of the final MoE LM (check_run.py).
final class LMUpcycleEndToEndTests: XCTestCase {
    /// The tiny MoE LM of `CLI.lmWorkspace` (4 experts in block 1, top-2, dropless) with `split`.
    private func workspace(split: String, ffn: Int = 32, steps: Int = 100) throws -> String {
        let dir = try CLI.lmWorkspace(steps: steps, moe: true)
        let path = dir + "/spec.yaml"
        let yaml = try String(contentsOfFile: path, encoding: .utf8)
            .replacingOccurrences(of: "split: {strategy: replicate}", with: "split: {\(split)}")
            .replacingOccurrences(of: "ffn: 32", with: "ffn: \(ffn)")
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return dir
    }

    /// The first logged train loss of `task`, and the dense model's first (a fresh start's).
    private func firstLosses(_ run: H5File, _ task: String) throws -> (fresh: [Double], started: [Double]) {
        (try run.read("tasks/pretrain/metrics/train_loss", as: Double.self).values,
         try run.read("tasks/\(task)/metrics/train_loss", as: Double.self).values)
    }

    func testPretrainStepsAreUpcycledIntoTheMoELM() throws {
        let dir = try workspace(split: "strategy: replicate, pretrain_steps: 150")
        let plan = try CLI.run(["plan", "spec.yaml"], in: dir)
        XCTAssertTrue(plan.stdout.contains("pre-train the dense transformer LM (context 16, hidden 32, 2 heads, ffn 32) for 150 steps, to upcycle"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("upcycled from the dense model"), plan.stdout)
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("train: upcycled from the dense LM in "), r.stdout)
        let runDir = dir + "/" + r.lastLine
        let pretrain = try H5File.open(runDir + "/tasks/pretrain.h5")
        XCTAssertEqual(try pretrain.attribute("steps", as: Int64.self), 150)
        XCTAssertEqual(try H5File.open(runDir + "/tasks/train.h5").attribute("steps", as: Int64.self), 100)
        let run = try H5File.open(runDir + "/run.h5")
        XCTAssertEqual(try run.openGroup("models/dense").stringAttribute("config").contains("\"moe\":null"), true)
        XCTAssertEqual(try run.openDataset("models/dense/blocks/1/ffn/w1").shape, [32, 32])
        XCTAssertEqual(try run.openDataset("models/final/blocks/1/moe/experts/w1").shape, [4, 32, 32])
        XCTAssertFalse(run.exists("models/dense/blocks/1/moe"))
        // Training continued from the dense LM: its first logged loss is far below a fresh start's.
        let (fresh, upcycled) = try firstLosses(run, "train")
        XCTAssertLessThan(upcycled[0], fresh[0] * 0.8, "pretrain \(fresh), train \(upcycled)")
        // The dense LM it came from is scored too (the baseline the MoE should beat), and numpy agrees.
        XCTAssertTrue(run.exists("summary/dense/val_bits_per_byte") && run.exists("summary/dense/domains/code/test_loss"))
        try CLI.assertNumpyReproduces(runDir, models: ["final", "dense"])
    }

    func testNeuronsMoefiesThePretrainedLM() throws {
        let dir = try workspace(split: "strategy: neurons, pretrain_steps: 150, method: cluster")
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("train: moefied the dense LM in "), r.stdout)
        let runDir = dir + "/" + r.lastLine
        let run = try H5File.open(runDir + "/run.h5")
        // ffn 32 split into 4 experts of 8 units: each unit in exactly one expert.
        XCTAssertEqual(try run.openDataset("models/dense/blocks/1/ffn/w1").shape, [32, 32])
        XCTAssertEqual(try run.openDataset("models/final/blocks/1/moe/experts/w1").shape, [4, 8, 32])
        let units = try H5File.open(runDir + "/tasks/train.h5").read("moefication/1/units", as: Int64.self)
        XCTAssertEqual(units.shape, [4, 8])
        XCTAssertEqual(units.values.sorted(), (0..<32).map(Int64.init))
        let (fresh, moefied) = try firstLosses(run, "train")
        XCTAssertLessThan(moefied[0], fresh[0] * 0.8, "pretrain \(fresh), train \(moefied)")
        try CLI.assertNumpyReproduces(runDir, models: ["final"])
    }

    /// `split.upcycle_from` a dense LM run's run.h5; a width that does not fit, or an MLP
    /// checkpoint, is a pre-flight error at the key naming the tensor (exit 2, nothing written).
    func testUpcycleFromADenseLMRunAndMismatches() throws {
        let denseDir = try CLI.lmWorkspace(steps: 100)
        let dense = try CLI.run(["spec.yaml", "--quiet"], in: denseDir)
        XCTAssertEqual(dense.status, 0, dense.stderr)
        let source = denseDir + "/" + dense.lastLine + "/run.h5"

        let dir = try workspace(split: "strategy: replicate, upcycle_from: \(source)", ffn: 64, steps: 50)
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("train: upcycled from the dense LM in \(source)"), r.stdout)
        let runDir = dir + "/" + r.lastLine
        let upcycled = try CLI.trainSeries(runDir, "train_loss")
        let denseLoss = try CLI.trainSeries(denseDir + "/" + dense.lastLine, "train_loss")
        XCTAssertLessThan(upcycled[0], denseLoss[0] * 0.8, "dense \(denseLoss), upcycled \(upcycled)")
        try CLI.assertNumpyReproduces(runDir, models: ["final"])

        let wrong = try workspace(split: "strategy: replicate, upcycle_from: \(source)", ffn: 32)
        let w = try CLI.run(["spec.yaml"], in: wrong)
        XCTAssertEqual(w.status, 2, w.stdout + w.stderr)
        XCTAssertEqual(w.stderr, "moe-run: error: spec.yaml:6:44: split.upcycle_from: \(source): cannot upcycle: "
                       + "blocks/0/ffn/w1: the dense checkpoint has shape [64, 32], the MoE model [32, 32]\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: wrong + "/out"), "nothing written")

        let mlpDir = try CLI.workspace(tinySpec(name: "mlp"))
        let mlp = try CLI.run(["spec.yaml", "--quiet"], in: mlpDir)
        XCTAssertEqual(mlp.status, 0, mlp.stderr)
        let mlpSource = mlpDir + "/" + mlp.lastLine + "/run.h5"
        let fromMLP = try workspace(split: "strategy: replicate, upcycle_from: \(mlpSource)", ffn: 64)
        let m = try CLI.run(["spec.yaml"], in: fromMLP)
        XCTAssertEqual(m.status, 2, m.stdout + m.stderr)
        XCTAssertEqual(m.stderr, "moe-run: error: spec.yaml:6:44: split.upcycle_from: \(mlpSource): holds a mlp model at models/final; "
                       + "a transformer LM is upcycled from a dense transformer LM\n")
    }
}
