import Foundation
import MoEHDF5
import XCTest

/// The run's pre-flight (ARCHITECTURE §5.1): what the spec names is checked before anything is
/// written. Each failure is exit 2 with one line at the key concerned, from the run, `validate`
/// and `plan` alike, and leaves no run directory.
final class PreflightEndToEndTests: XCTestCase {
    /// Runs the spec, `validate` and `plan` in `dir`; each must exit 2 with exactly `line` and
    /// leave no `out` folder.
    private func assertRefusedEverywhere(in dir: String, _ line: String, extra: [String] = [], file: StaticString = #filePath, at: UInt = #line) throws {
        for args in [["spec.yaml"], ["validate", "spec.yaml"], ["plan", "spec.yaml"]] {
            let r = try CLI.run(args + extra, in: dir)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stdout)\(r.stderr)", file: file, line: at)
            XCTAssertEqual(r.stderr, "moe-run: error: \(line)\n", "\(args)", file: file, line: at)
            XCTAssertEqual(r.stdout, "", file: file, line: at)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "\(args): nothing written", file: file, line: at)
        }
    }

    /// A small (x, y) HDF5 file of `rows` samples, 4 features, 2 classes.
    private func writeData(_ path: String, rows: Int, nanAt: Int? = nil) throws {
        var x = (0..<(rows * 4)).map { Float($0 % 13) / 4 }
        if let nanAt { x[nanAt] = .nan }
        try H5File.createAtomically(path) { f in
            try f.createDataset("x", x, shape: [rows, 4])
            try f.createDataset("y", (0..<rows).map { Int64($0 % 2) })
        }
    }

    func testADataFileThatIsNotHDF5() throws {
        let dir = try CLI.workspace("""
            name: notdata
            data: {source: file, path: notdata.h5}
            train: {epochs: 1}
            output: {dir: out}
            """)
        try "this is not HDF5\n".write(toFile: dir + "/notdata.h5", atomically: true, encoding: .utf8)
        try assertRefusedEverywhere(in: dir, "spec.yaml:2:28: data.path: notdata.h5: not an HDF5 file (no HDF5 signature; it looks like text)")
    }

    /// The case: the shipped digits with one NaN cell used to be standardised to NaN and
    /// end as "loss became nan … set train.grad_clip" after a retry.
    func testANaNCellInTheTrainingData() throws {
        let digits = try H5File.open(CLI.repositoryRoot.appendingPathComponent("experiments/data/digits.h5").path)
        var (x, shape) = try digits.read("x", as: Float.self)
        x[100 * shape[1] + 20] = .nan
        var yaml = try String(contentsOf: CLI.repositoryRoot.appendingPathComponent("experiments/digits-dense.yaml"), encoding: .utf8)
        yaml = yaml.replacingOccurrences(of: "path: data/digits.h5", with: "path: digits-nan.h5")
        let dir = try CLI.workspace(yaml)
        try H5File.createAtomically(dir + "/digits-nan.h5") { f in
            try f.createDataset("x", x, shape: shape)
            try f.createDataset("y", try digits.read("y", as: Int64.self).values)
        }
        let lines = yaml.components(separatedBy: "\n")
        let row = try XCTUnwrap(lines.firstIndex { $0.contains("path: digits-nan.h5") })
        let column = lines[row].distance(from: lines[row].startIndex, to: lines[row].range(of: "digits-nan.h5")!.lowerBound) + 1
        try assertRefusedEverywhere(in: dir, "spec.yaml:\(row + 1):\(column): data.path: digits-nan.h5: x[100, 20] is nan (dataset 'x', row 100, column 20); features must be finite numbers",
                                    extra: ["--set", "output.dir=out"])
    }

    func testWorkerCountsWithinEachModesLimit() throws {
        let dir = try CLI.workspace(tinySpec(extra: "parallelism: {mode: data, workers: 1000}"))
        let line = tinySpec().components(separatedBy: "\n").count
        try assertRefusedEverywhere(in: dir, "spec.yaml:\(line):36: parallelism.workers: data parallelism runs its workers as one shared-memory group of at most 64 processes, got 1000")
        // The run's --workers flag is named as such, not as a position inside a `--set`.
        try tinySpec(extra: "parallelism: {mode: data}").write(toFile: dir + "/flag.yaml", atomically: true, encoding: .utf8)
        let flag = try CLI.run(["flag.yaml", "--workers", "65"], in: dir)
        XCTAssertEqual(flag.status, 2)
        XCTAssertEqual(flag.stderr, "moe-run: error: --workers: parallelism.workers: data parallelism runs its workers as one shared-memory group of at most 64 processes, got 65\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"))
        // Expert parallelism has the same limit; without a process group (mode none) there is none.
        let expert = try CLI.run(["validate", "spec.yaml", "--set", "experts=72", "--set", "split.strategy=replicate",
                                  "--set", "router.k=1", "--set", "parallelism.mode=expert", "--set", "parallelism.workers=65"], in: dir)
        XCTAssertEqual(expert.stderr, "moe-run: error: --set:1:21: parallelism.workers: expert parallelism runs its workers as one shared-memory group of at most 64 processes, got 65\n")
        let none = try CLI.run(["validate", "spec.yaml", "--set", "parallelism.mode=none"], in: dir)
        XCTAssertEqual(none.status, 0, none.stderr)
        XCTAssertEqual(try CLI.run(["validate", "spec.yaml", "--set", "parallelism.workers=64"], in: dir).status, 0)
    }

    func testEnoughRowsForEverySplitAndEveryBranchShard() throws {
        let dir = try CLI.workspace("""
            name: rows
            data: {source: file, path: three.h5}
            train: {epochs: 1}
            output: {dir: out}
            """)
        try writeData(dir + "/three.h5", rows: 3)
        try assertRefusedEverywhere(in: dir, "spec.yaml:2:28: data.path: three.h5: 3 samples; data.split (train 0.8, val 0.1, test 0.1) leaves none for val, and the training loop validates on it every epoch")

        let branch = try CLI.workspace("""
            name: shards
            data: {source: file, path: ten.h5, split: {train: 0.5, val: 0.25, test: 0.25}}
            experts: 8
            split: {strategy: branch, shard_by: index}
            output: {dir: out}
            """)
        try writeData(branch + "/ten.h5", rows: 10)
        try assertRefusedEverywhere(in: branch, "spec.yaml:2:28: data.path: ten.h5: the training split has 5 samples, too few for 8 branch experts (shard 0 is empty)")
        XCTAssertEqual(try CLI.run(["validate", "spec.yaml", "--set", "experts=5"], in: branch).status, 0, "one sample per expert is enough")
    }

    func testUpcycleSourceExistsAndFits() throws {
        let dense = try CLI.completeRun(tinySpec(name: "dense", epochs: 1))
        let moe = tinySpec(name: "upcycled", epochs: 1, extra: """
            experts: 4
            split: {strategy: replicate, upcycle_from: \(dense)/run.h5}
            router: {type: topk, k: 1}
            """)
        let dir = try CLI.workspace(moe)
        let line = tinySpec().components(separatedBy: "\n").count + 1
        let ok = try CLI.run(["validate", "spec.yaml"], in: dir)
        XCTAssertEqual(ok.status, 0, ok.stderr)
        try assertRefusedEverywhere(in: dir, "spec.yaml:\(line):44: split.upcycle_from: \(dense)/run.h5: cannot upcycle into this spec's model: blocks/0/ffn/w1: shape [32, 16] does not match one expert of blocks/0/moe/experts/w1 [64, 16]",
                                    extra: ["--set", "model.ffn=64"])
        try "not a checkpoint".write(toFile: dir + "/text.h5", atomically: true, encoding: .utf8)
        let text = try CLI.run(["validate", "spec.yaml", "--set", "split.upcycle_from=text.h5"], in: dir)
        XCTAssertEqual(text.status, 2)
        XCTAssertEqual(text.stderr, "moe-run: error: --set:1:20: split.upcycle_from: text.h5: not an HDF5 file (no HDF5 signature; it looks like text)\n")
    }

    /// `eval` takes a run directory and an intermediate checkpoint (`FILE.h5:/checkpoints/STEP/model`):
    /// the checkpoint of step 15 scores the validation split exactly as the run's own evaluation
    /// at step 15 did.
    func testEvalOnARunDirectoryAndAnIntermediateCheckpoint() throws {
        let runDir = try CLI.completeRun(tinySpec()
            .replacingOccurrences(of: "  log_every: 5", with: "  log_every: 5\n  eval_every: 15\n  checkpoint_every: 15")
            .replacingOccurrences(of: "  dir: out", with: "  dir: out\n  keep_checkpoints: 3"))
        let dir = (runDir as NSString).deletingLastPathComponent
        let run = try H5File.open(runDir + "/run.h5")
        try H5File.createAtomically(dir + "/val.h5") { f in
            try f.createDataset("x", try run.read("data/val/x", as: Float.self).values, shape: try run.read("data/val/x", as: Float.self).shape)
            try f.createDataset("y", try run.read("data/val/y", as: Int64.self).values)
        }
        let train = try H5File.open(runDir + "/tasks/train.h5")
        let steps = try train.read("metrics/eval/step", as: Int64.self).values
        let losses = try train.read("metrics/eval/val_loss", as: Double.self).values
        XCTAssertEqual(steps, [15, 30, 45])
        func evalLoss(_ model: String) throws -> Double {
            let e = try CLI.run(["eval", model, "val.h5"], in: dir)
            XCTAssertEqual(e.status, 0, e.stderr)
            let text = try XCTUnwrap(e.stdout.components(separatedBy: "loss ").last?.components(separatedBy: ",").first)
            return try XCTUnwrap(Double(text), e.stdout)
        }
        for (step, loss) in zip(steps, losses) {
            XCTAssertEqual(try evalLoss(runDir + "/tasks/train.h5:/checkpoints/\(step)/model"), loss, accuracy: 2e-6, "step \(step)")
        }
        XCTAssertEqual(try evalLoss(runDir + "/tasks/train.h5:/checkpoints/15"), losses[0], accuracy: 2e-6, "the group above /model works too")
        XCTAssertNotEqual(losses[0], losses[2], accuracy: 1e-4, "the checkpoints differ, so the path chose one")
        XCTAssertEqual(try evalLoss(runDir), losses[2], accuracy: 2e-6, "a run directory means its final model")

        let missing = try CLI.run(["eval", runDir + "/tasks/train.h5:/checkpoints/16/model", "val.h5"], in: dir)
        XCTAssertEqual(missing.status, 2)
        XCTAssertEqual(missing.stderr, "moe-run: error: \(runDir)/tasks/train.h5: /checkpoints/16/model is not a model checkpoint group; its checkpoints: /checkpoints/15/model, /checkpoints/30/model, /checkpoints/45/model\n")
        let notRun = try CLI.run(["eval", dir, "val.h5"], in: dir)
        XCTAssertEqual(notRun.status, 2)
        XCTAssertEqual(notRun.stderr, "moe-run: error: \(dir): is a directory without run.h5 (give a run directory, a model file, or FILE.h5:/checkpoints/STEP/model)\n")
        let dataDir = try CLI.run(["eval", runDir, runDir], in: dir)
        XCTAssertEqual(dataDir.status, 2)
        XCTAssertEqual(dataDir.stderr, "moe-run: error: \(runDir): is a directory, not a file\n")
    }

    /// A sweep validates every trial with the same pre-flight: nothing runs on a bad data file.
    func testSweepTrialsRunThePreflight() throws {
        let dir = try CLI.workspace("""
            name: sweepnan
            data: {source: file, path: nan.h5}
            train: {epochs: 1}
            output: {dir: out}
            """)
        try writeData(dir + "/nan.h5", rows: 40, nanAt: 4 * 3 + 1)
        let r = try CLI.run(["sweep", "spec.yaml", "--grid", "train.lr=0.1,0.2"], in: dir)
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("moe-run: error: trial 1/2 (train.lr=0.1) is invalid: spec.yaml:2:28: data.path: nan.h5: x[3, 1] is nan (dataset 'x', row 3, column 1); features must be finite numbers\n"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing ran")
    }
}
