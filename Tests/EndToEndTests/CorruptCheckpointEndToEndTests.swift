import Foundation
import MoEHDF5
import XCTest

/// Issue 11 item 7: every kept checkpoint is a file of its own (`tasks/train.checkpoints/<step>.h5`),
/// so a damaged one loses nothing else. A run killed with SIGKILL whose newest checkpoint is then
/// truncated resumes from the one before, says so in one line, and ends with the bits of an
/// uninterrupted run (the dense task, and a data-parallel group whose compression residuals live
/// in each checkpoint); when no checkpoint is intact, `--resume` ends with one line and the
/// `--force` hint.
final class CorruptCheckpointEndToEndTests: XCTestCase {
    /// ~1,900 steps with a checkpoint every 50 (as ResumeEndToEndTests).
    private func long(_ name: String, extra: String = "") -> String {
        tinySpec(name: name, epochs: 40, extra: extra)
            .replacingOccurrences(of: "log_every: 5", with: "log_every: 5\n  checkpoint_every: 50")
            .replacingOccurrences(of: "samples: 600", with: "samples: 3000")
    }

    /// The run directory of the only run in `dir/out/<name>`, once it exists.
    private func runDirectory(_ dir: String, _ name: String) -> String? {
        (try? FileManager.default.contentsOfDirectory(atPath: dir + "/out/\(name)"))?.first.map { dir + "/out/\(name)/" + $0 }
    }

    private func checkpointSteps(_ runDir: String) -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: runDir + "/tasks/train.checkpoints")) ?? []
        return names.compactMap { $0.hasSuffix(".h5") ? Int($0.dropLast(3)) : nil }.sorted()
    }

    /// Starts the run, waits until `count` checkpoint files exist, and kills the scheduler with
    /// SIGKILL (its workers die with it). Returns the run directory.
    private func startAndKill(_ dir: String, name: String, afterCheckpoints count: Int) throws -> String {
        let p = try CLI.start(["spec.yaml", "--quiet"], in: dir)
        let deadline = Date().addingTimeInterval(60)
        var runDir: String?
        while Date() < deadline && p.isRunning {
            if runDir == nil { runDir = runDirectory(dir, name) }
            if let runDir, checkpointSteps(runDir).count >= count { break }
            usleep(20_000)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "the run finished before it could be killed; make the spec longer")
        CLI.assertNoProcesses(in: dir)
        return try XCTUnwrap(runDir, "no run directory appeared")
    }

    private func assertResumesPastATruncatedNewestCheckpoint(_ yaml: String, name: String) throws {
        let reference = try CLI.completeRun(yaml)
        let dir = try CLI.workspace(yaml)
        let runDir = try startAndKill(dir, name: name, afterCheckpoints: 2)
        // keep_checkpoints 2: one file each (a third only between its rename and the removal of the oldest)
        let steps = checkpointSteps(runDir)
        XCTAssertTrue((2...3).contains(steps.count), "\(steps)")
        let (older, newest) = (steps[steps.count - 2], steps[steps.count - 1])
        let newestPath = runDir + "/tasks/train.checkpoints/\(newest).h5"
        let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: newestPath)[.size] as? Int)
        XCTAssertEqual(truncate(newestPath, off_t(size / 2)), 0)

        let resumed = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(resumed.stderr.split(separator: "\n").map(String.init),
                       ["warning: tasks/train.checkpoints/\(newest).h5 is corrupt (truncated file); resuming from step \(older)"])
        XCTAssertTrue(resumed.stdout.contains("train: resuming from the checkpoint at step \(older) "), resumed.stdout)
        XCTAssertEqual(try CLI.finalModelBits(runDir), try CLI.finalModelBits(reference), "the same bits as an uninterrupted run")
        // The finished task file keeps its layout: the same kept checkpoints, the same values
        // (h5diff compares exactly), the same metrics rows.
        let diff = try CLI.tool("/usr/bin/h5diff", [reference + "/tasks/train.h5", runDir + "/tasks/train.h5", "/checkpoints", "/checkpoints"])
        XCTAssertEqual(diff.status, 0, diff.stdout + diff.stderr)
        XCTAssertEqual(try CLI.trainSeries(runDir, "train_loss"), try CLI.trainSeries(reference, "train_loss"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: runDir + "/tasks/train.checkpoints"), "removed once train.h5 is written")
    }

    func testDenseRunResumesFromTheCheckpointBeforeATruncatedOneToTheSameBits() throws {
        try assertResumesPastATruncatedNewestCheckpoint(long("corrupt"), name: "corrupt")
    }

    /// Top-k compression: each checkpoint file holds every rank's error-feedback residual at its
    /// own step, so resuming from an older checkpoint is exact too.
    func testDataParallelGroupResumesFromTheCheckpointBeforeATruncatedOneToTheSameBits() throws {
        let yaml = long("corruptdp").replacingOccurrences(
            of: "output:", with: "parallelism: {mode: data, workers: 2, retries: 1, compression: topk, ratio: 0.05}\noutput:")
        try assertResumesPastATruncatedNewestCheckpoint(yaml, name: "corruptdp")
    }

    func testNoIntactCheckpointEndsWithOneLineAndTheForceHint() throws {
        let dir = try CLI.workspace(long("nointact"))
        let runDir = try startAndKill(dir, name: "nointact", afterCheckpoints: 1)
        let steps = checkpointSteps(runDir)
        for step in steps {
            try Data("not an HDF5 file".utf8).write(to: URL(fileURLWithPath: runDir + "/tasks/train.checkpoints/\(step).h5"))
        }
        let r = try CLI.run(["spec.yaml", "--resume", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 1, r.stderr)
        let corrupt = steps.reversed().map { "tasks/train.checkpoints/\($0).h5: file signature not found" }.joined(separator: "; ")
        XCTAssertEqual(r.stderr, "moe-run: error: train: no intact checkpoint to resume from in tasks/train.checkpoints "
            + "(\(corrupt)); rerun with --force to start the run over\n")
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        XCTAssertFalse(log.contains("retry"), "a damaged file is a permanent failure: \(log)")
        XCTAssertEqual(checkpointSteps(runDir), steps, "nothing is removed when nothing can be resumed")
        XCTAssertEqual(try H5File.open(runDir + "/run.h5").stringAttribute("status"), "failed")

        let forced = try CLI.run(["spec.yaml", "--force", "--quiet"], in: dir)
        XCTAssertEqual(forced.status, 0, forced.stderr)
        CLI.assertNoProcesses(in: dir)
    }
}
