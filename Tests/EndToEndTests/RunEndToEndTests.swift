import Foundation
import MoEHDF5
import XCTest

/// End-to-end: the built binary on tiny specs, checking what it wrote with the HDF5 library,
/// h5dump and h5py.
final class RunEndToEndTests: XCTestCase {
    func testRunWritesTheDocumentedLayoutAndPrintsTheRunDirectory() throws {
        let dir = try CLI.workspace(tinySpec())
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let runDir = dir + "/" + r.lastLine
        XCTAssertTrue(r.lastLine.hasPrefix("out/tiny/"), "last line is the run directory: \(r.lastLine)")
        XCTAssertTrue(r.stdout.contains("test_accuracy"), r.stdout)

        let run = try H5File.open(runDir + "/run.h5")
        XCTAssertEqual(try run.stringAttribute("format"), "moe-run/1")
        XCTAssertEqual(try run.stringAttribute("status"), "complete")
        XCTAssertEqual(try run.attribute("seed", as: Int64.self), 7)
        XCTAssertEqual(try run.stringAttribute("spec_sha256").count, 64)
        XCTAssertFalse(try run.stringAttribute("finished").isEmpty)
        XCTAssertTrue(try run.readString("spec").contains("name: tiny"))
        XCTAssertTrue(try run.readString("plan").contains("\"evaluate\""))
        for split in ["train", "val", "test"] {
            let (y, _) = try run.read("data/\(split)/y", as: Int64.self)
            XCTAssertEqual(try run.openDataset("data/\(split)/x").shape, [y.count, 8])
        }
        XCTAssertEqual(try run.read("data/train/y", as: Int64.self).values.count, 480)
        XCTAssertEqual(try run.openGroup("models/final").stringAttribute("kind"), "model")
        XCTAssertEqual(try run.openDataset("models/final/blocks/1/ffn/w1").shape, [32, 16])
        let accuracy = try run.readScalar("summary/final/test_accuracy", as: Double.self)
        XCTAssertGreaterThan(accuracy, 1.0 / 3, "better than chance on 3 classes")
        XCTAssertGreaterThan(try run.read("tasks/train/metrics/step", as: Int64.self).values.count, 3)
        XCTAssertEqual(try run.openGroup("tasks/train/checkpoints").children().count, 2, "keep_checkpoints default 2")
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("train: done"), log)

        // No temporary or partial file is left, and h5dump opens every file the run left.
        let files = CLI.files(under: runDir)
        XCTAssertFalse(files.contains { $0.hasSuffix(".tmp") || $0.contains(".partial.") || $0.contains(".checkpoints/") }, "\(files)")
        for f in files where f.hasSuffix(".h5") {
            let dump = try CLI.tool("/usr/bin/h5dump", ["-H", f])
            XCTAssertEqual(dump.status, 0, "h5dump \(f): \(dump.stderr)")
        }
        XCTAssertEqual(files.filter { $0.hasSuffix(".h5") }.count, 4, "run.h5 + data, train, evaluate")
    }

    /// Interop: from Python alone (h5py + numpy), the layout checks out and a numpy forward pass
    /// built from the checkpoint reproduces the reported test loss to 1e-4 relative.
    func testPythonReadsTheRunAndReproducesTheTestLoss() throws {
        let dir = try CLI.workspace(tinySpec(name: "interop"))
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        try CLI.assertNumpyReproduces(dir + "/" + r.lastLine, models: ["final"])
    }

    func testQuietPrintsOnlyTheRunDirectory() throws {
        let dir = try CLI.workspace(tinySpec())
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.split(separator: "\n").count, 1, r.stdout)
    }

    func testRerunRefusesResumeReusesForceReruns() throws {
        let dir = try CLI.workspace(tinySpec())
        let first = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(first.status, 0)
        let again = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(again.status, 2)
        XCTAssertTrue(again.stderr.hasPrefix("moe-run: error: out/tiny/"), again.stderr)
        XCTAssertTrue(again.stderr.contains("complete run"), again.stderr)
        let resumed = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("nothing to do"), resumed.stdout)
        XCTAssertEqual(resumed.lastLine, first.lastLine)
        let forced = try CLI.run(["spec.yaml", "--force", "--quiet"], in: dir)
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertEqual(forced.lastLine, first.lastLine, "same spec, same run id")
        // The worker count does not change the run id either: the complete run is found.
        let workers = try CLI.run(["spec.yaml", "--resume", "--workers", "2"], in: dir)
        XCTAssertEqual(workers.status, 0, workers.stderr)
        XCTAssertTrue(workers.stdout.contains("nothing to do"), workers.stdout)
        XCTAssertEqual(workers.lastLine, first.lastLine)
        // --out moves the results without changing the run id.
        let moved = try CLI.run(["spec.yaml", "--quiet", "--out", "elsewhere"], in: dir)
        XCTAssertEqual(moved.lastLine, "elsewhere/tiny/" + (first.lastLine as NSString).lastPathComponent)
    }

    /// Divergence is a permanent failure (ARCHITECTURE §6): one line naming the task, the step and
    /// the likely causes, never suggesting a setting that is already on; not retried (the same
    /// step would diverge again); `run.h5` says `failed` with that line.
    func testDivergingLossStopsWithExitOneNamingTheStepAndLikelyCauses() throws {
        let unclipped = "lr: 1.0e+30\n  optimizer: sgd\n  grad_clip: null\n  momentum: 0.0"
        let clipped = "lr: 1.0e+30\n  optimizer: sgd\n  grad_clip: 1.0\n  momentum: 0.0"
        let expected = [
            unclipped: "train: the loss became nan at step 2 (epoch 1); the run stopped. Likely causes: a learning rate too high for this "
                + "model (train.lr: 1e+30) with no gradient clipping (train.grad_clip: null), or NaN or Inf values in the data. "
                + "Lower train.lr or set train.grad_clip (e.g. 1.0)",
            clipped: "train: the loss became nan at step 2 (epoch 1); the run stopped. Likely causes: a learning rate too high for this "
                + "model (train.lr: 1e+30; gradients are already clipped at train.grad_clip: 1), or NaN or Inf values in the data. "
                + "Lower train.lr, or check the data",
        ]
        for (train, line) in expected {
            let dir = try CLI.workspace(tinySpec().replacingOccurrences(of: "lr: 0.003", with: train))
            let r = try CLI.run(["spec.yaml"], in: dir)
            XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
            XCTAssertEqual(r.stderr, "moe-run: error: \(line)\n", "one line, no stack trace")
            let runDir = dir + "/out/tiny/" + (try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/tiny").first))
            let run = try H5File.open(runDir + "/run.h5")
            XCTAssertEqual(try run.stringAttribute("status"), "failed")
            XCTAssertEqual(try run.stringAttribute("error"), line)
            let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
            XCTAssertEqual(log.components(separatedBy: "train: started worker process").count - 1, 1, "not retried: \(log)")
            XCTAssertTrue(log.contains("ended with exit status 3"), log)
            XCTAssertFalse(log.contains("retry"), log)
        }
    }

    func testEvalCommandMatchesTheRunsTestMetrics() throws {
        let dir = try CLI.workspace(tinySpec())
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        let runDir = dir + "/" + r.lastLine
        // A plain data file with the test split, raw features, as a user would have it.
        let run = try H5File.open(runDir + "/run.h5")
        let (x, shape) = try run.read("data/test/x", as: Float.self)
        let (y, _) = try run.read("data/test/y", as: Int64.self)
        try H5File.createAtomically(dir + "/test.h5") { f in
            try f.createDataset("x", x, shape: shape)
            try f.createDataset("y", y)
        }
        let e = try CLI.run(["eval", runDir + "/run.h5", dir + "/test.h5"], in: dir)
        XCTAssertEqual(e.status, 0, e.stderr)
        let loss = try run.readScalar("summary/final/test_loss", as: Double.self)
        XCTAssertTrue(e.stdout.contains(String(format: "loss %.6f", loss)), "\(e.stdout) vs \(loss)")
        let missing = try CLI.run(["eval", runDir + "/run.h5", dir + "/nope.h5"], in: dir)
        XCTAssertEqual(missing.status, 2, "a missing input file is bad usage (exit 2)")
        XCTAssertEqual(missing.stderr, "moe-run: error: \(dir)/nope.h5: no such file\n")
    }

    func testShowAndPlan() throws {
        let dir = try CLI.workspace(tinySpec())
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        let show = try CLI.run(["show", r.lastLine], in: dir)
        XCTAssertEqual(show.status, 0, show.stderr)
        XCTAssertTrue(show.stdout.contains("run tiny — complete"), show.stdout)
        XCTAssertTrue(show.stdout.contains("summary/final: test_accuracy"), show.stdout)
        let plan = try CLI.run(["plan", "spec.yaml"], in: dir)
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertTrue(plan.stdout.contains("1. data"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("after train"), plan.stdout)
        let json = try CLI.run(["plan", "spec.yaml", "--json"], in: dir)
        let decoded = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        XCTAssertEqual((decoded?["tasks"] as? [[String: Any]])?.map { $0["id"] as? String }, ["data", "train", "evaluate"])
    }
}

/// `output.compression` reaches the files: gzip level 0 writes no filters, 9 writes shuffle + deflate.
final class CompressionEndToEndTests: XCTestCase {
    func testOutputCompressionLevelIsApplied() throws {
        for (level, filters) in [(0, 0), (9, 2)] {
            let yaml = tinySpec(epochs: 1).replacingOccurrences(of: "samples: 600", with: "samples: 3000")
                .replacingOccurrences(of: "  dir: out", with: "  dir: out\n  compression: \(level)")
            let dir = try CLI.workspace(yaml)
            let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
            XCTAssertEqual(r.status, 0, r.stderr)
            let data = try H5File.open(dir + "/" + r.lastLine + "/tasks/data.h5")
            let x = try data.openDataset("data/train/x")
            XCTAssertEqual(try x.layout, .chunked, "96 KB of features are chunked")
            XCTAssertEqual(try x.filterCount, filters, "compression \(level)")
        }
    }
}
