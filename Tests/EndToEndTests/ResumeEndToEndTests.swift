import Foundation
import MoEHDF5
import XCTest

/// Exact resume: a run killed with SIGKILL (or interrupted with SIGINT) mid-training and
/// resumed with `--resume` ends with bit-identical final weights to an uninterrupted run.
/// The signal goes to the `moe-run` process the user started (the scheduler); its training
/// worker dies with it (SIGKILL: the worker's parent-death signal) or saves its state and stops
/// (SIGINT, forwarded), so nothing keeps running after the test.
final class ResumeEndToEndTests: XCTestCase {
    /// Long enough to be killed mid-way: ~1,900 steps, a checkpoint every 50.
    let spec = tinySpec(name: "resume", epochs: 40).replacingOccurrences(of: "log_every: 5", with: "log_every: 5\n  checkpoint_every: 50")
        .replacingOccurrences(of: "samples: 600", with: "samples: 3000")

    private func waitForCheckpoint(_ dir: String, process: Process, timeout: Double = 60) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline && process.isRunning {
            if CLI.hasCheckpoint(dir) { return true }
            usleep(20_000)
        }
        return false
    }

    /// Starts `spec.yaml` in `dir`, waits for its first checkpoint file, lets it train 0.15 s
    /// more and kills it with SIGKILL (asserting it was still running).
    private func killAfterACheckpointFile(in dir: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let p = try CLI.start(["spec.yaml", "--quiet"], in: dir)
        XCTAssertTrue(try waitForCheckpoint(dir, process: p), "no checkpoint file appeared before the run ended", file: file, line: line)
        usleep(150_000)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "the run finished before it could be killed; make the spec longer", file: file, line: line)
        CLI.assertNoProcesses(in: dir)
    }

    func testKilledRunResumesToBitIdenticalWeights() throws {
        let reference = try CLI.workspace(spec)
        let r = try CLI.run(["spec.yaml", "--quiet"], in: reference)
        XCTAssertEqual(r.status, 0, r.stderr)
        let expected = try CLI.finalModelBits(reference + "/" + r.lastLine)

        let dir = try CLI.workspace(spec)
        let p = try CLI.start(["spec.yaml", "--quiet"], in: dir)
        XCTAssertTrue(try waitForCheckpoint(dir, process: p), "no checkpoint appeared before the run ended")
        usleep(150_000)  // let it train past the checkpoint, so work is lost and redone
        let worker = try XCTUnwrap(CLI.children(of: p.processIdentifier).first, "the training worker")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "the run finished before it could be killed; make the spec longer")
        CLI.assertNoProcesses(in: dir)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/proc/\(worker)/cwd"), "the worker died with the scheduler")

        let again = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(again.status, 2, "without --resume an unfinished run is not touched")
        XCTAssertTrue(again.stderr.contains("--resume"), again.stderr)

        let resumed = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("data: complete, skipped"), resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("resuming from the checkpoint at step"), resumed.stdout)
        let got = try CLI.finalModelBits(dir + "/" + resumed.lastLine)
        XCTAssertEqual(Set(got.keys), Set(expected.keys))
        for (name, values) in expected {
            XCTAssertEqual(got[name]!, values, "\(name) differs after resume")
        }
    }

    func testSIGINTLeavesAnInterruptedRunThatResumes() throws {
        let dir = try CLI.workspace(spec)
        let p = try CLI.start(["spec.yaml", "--quiet"], in: dir)
        XCTAssertTrue(try waitForCheckpoint(dir, process: p))
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130)
        CLI.assertNoProcesses(in: dir)
        let runDir = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/resume").first)
        let run = try H5File.open(dir + "/out/resume/\(runDir)/run.h5")
        XCTAssertEqual(try run.stringAttribute("status"), "interrupted")
        run.close()
        let resumed = try CLI.run(["spec.yaml", "--resume", "--quiet"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try H5File.open(dir + "/" + resumed.lastLine + "/run.h5").stringAttribute("status"), "complete")
        CLI.assertNoProcesses(in: dir)
    }

    /// The default cadence (`checkpoint_every: 0`) keeps every epoch's checkpoint but writes a file
    /// only every `MOE_RUN_CHECKPOINT_SECONDS` (here 0.05 s, a few epochs; the e2e default is a file per epoch),
    /// each file holding the kept checkpoints that have no file of their own. Killed with SIGKILL
    /// after its first file and resumed, the run ends with the final weights and the kept
    /// checkpoints (`tasks/train.h5:/checkpoints`, 3 kept) of an uninterrupted run, bit for bit.
    func testDefaultCadenceKilledRunResumesToTheSameWeightsAndKeptCheckpoints() throws {
        setenv("MOE_RUN_CHECKPOINT_SECONDS", "0.05", 1)
        defer { setenv("MOE_RUN_CHECKPOINT_SECONDS", "0", 1) }
        let yaml = tinySpec(name: "cadence", epochs: 150).replacingOccurrences(of: "samples: 600", with: "samples: 3000")
            .replacingOccurrences(of: "dir: out", with: "dir: out\n  keep_checkpoints: 3")
        func kept(_ runDir: String) throws -> [String: [UInt32]] {
            let task = try H5File.open(runDir + "/tasks/train.h5")
            var out: [String: [UInt32]] = [:]
            for step in try task.openGroup("checkpoints").children() {
                out[step] = try task.read("checkpoints/\(step)/model/head/weight", as: Float.self).values.map(\.bitPattern)
            }
            return out
        }
        let reference = try CLI.workspace(yaml)
        let r = try CLI.run(["spec.yaml", "--quiet"], in: reference)
        XCTAssertEqual(r.status, 0, r.stderr)
        let expected = try CLI.finalModelBits(reference + "/" + r.lastLine)
        let expectedKept = try kept(reference + "/" + r.lastLine)
        XCTAssertEqual(expectedKept.count, 3)

        let dir = try CLI.workspace(yaml)
        try killAfterACheckpointFile(in: dir)

        let resumed = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from the checkpoint at step"), resumed.stdout)
        XCTAssertEqual(try CLI.finalModelBits(dir + "/" + resumed.lastLine), expected)
        XCTAssertEqual(try kept(dir + "/" + resumed.lastLine), expectedKept)
    }
    /// A step-budget run (`train.steps`: every language model) has one epoch-end checkpoint, at
    /// the end; its default cadence also writes a resume point every `MOE_RUN_CHECKPOINT_SECONDS`
    /// (10 s; here 0.05 s). Killed with SIGKILL mid-training, it resumes from the newest resume
    /// point (not from step 0) and ends with an uninterrupted run's weights *and* kept
    /// checkpoints, bit for bit: resume points are never among the kept checkpoints.
    func testStepBudgetRunWritesResumePointsThatAreNotKeptCheckpoints() throws {
        setenv("MOE_RUN_CHECKPOINT_SECONDS", "0.05", 1)
        defer { setenv("MOE_RUN_CHECKPOINT_SECONDS", "0", 1) }
        let yaml = tinySpec(name: "points").replacingOccurrences(of: "epochs: 3", with: "steps: 4000")
            .replacingOccurrences(of: "samples: 600", with: "samples: 3000")
        func kept(_ runDir: String) throws -> [String] {
            try H5File.open(runDir + "/tasks/train.h5").openGroup("checkpoints").children().sorted()
        }
        let reference = try CLI.workspace(yaml)
        let r = try CLI.run(["spec.yaml", "--quiet"], in: reference)
        XCTAssertEqual(r.status, 0, r.stderr)
        let expected = try CLI.finalModelBits(reference + "/" + r.lastLine)
        XCTAssertEqual(try kept(reference + "/" + r.lastLine), ["4000"], "one kept checkpoint: the end of training")

        let dir = try CLI.workspace(yaml)
        try killAfterACheckpointFile(in: dir)
        let point = try XCTUnwrap(CLI.files(under: dir + "/out").first { $0.contains("train.checkpoints/") && $0.hasSuffix(".h5") })
        let step = try XCTUnwrap(Int(((point as NSString).lastPathComponent as NSString).deletingPathExtension))
        XCTAssertGreaterThan(step, 0)
        XCTAssertLessThan(step, 4000)
        XCTAssertEqual(try H5File.open(point).openGroup("checkpoints/\(step)").attribute("resume_only", as: Int64.self), 1)

        let resumed = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from the checkpoint at step "), resumed.stdout)
        XCTAssertFalse(resumed.stdout.contains("resuming from the checkpoint at step 0 "), resumed.stdout)
        XCTAssertEqual(try CLI.finalModelBits(dir + "/" + resumed.lastLine), expected)
        XCTAssertEqual(try kept(dir + "/" + resumed.lastLine), ["4000"], "the resume point is not kept")
    }

    /// The kept checkpoints in a finished task file are stored without filters, like the
    /// checkpoint files (gzip of float weights and Adam moments saved ~15 % of the bytes for ~5 %
    /// of a small run's wall time), while the final model keeps `output.compression`: a 512 × 64
    /// weight (128 KB, over the 64 KB threshold) is shuffled and deflated in `/model` only.
    func testKeptCheckpointsAreStoredUncompressedAndTheModelCompressed() throws {
        let yaml = tinySpec(name: "kept", epochs: 2).replacingOccurrences(of: "  hidden: 16\n  ffn: 32", with: "  hidden: 64\n  ffn: 512")
        XCTAssertTrue(yaml.contains("ffn: 512"))
        let dir = try CLI.workspace(yaml)
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let file = try H5File.open(dir + "/" + r.lastLine + "/tasks/train.h5")
        XCTAssertEqual(try file.openDataset("model/blocks/0/ffn/w1").filterCount, 2, "the final model: shuffle + deflate")
        let steps = try file.openGroup("checkpoints").children()
        XCTAssertEqual(steps.count, 2, "one kept checkpoint per epoch")
        for step in steps {
            for path in ["model/blocks/0/ffn/w1", "optimizer/exp_avg/blocks/0/ffn/w1", "optimizer/exp_avg_sq/blocks/1/ffn/w2"] {
                XCTAssertEqual(try file.openDataset("checkpoints/\(step)/" + path).filterCount, 0, "checkpoints/\(step)/\(path)")
            }
        }
    }
}
