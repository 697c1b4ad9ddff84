import Foundation
import MoEHDF5
import XCTest

/// The scheduler as users meet it: every task runs in a `moe-run worker` child process; the
/// worker count does not change the results; a worker killed with SIGKILL is retried and the run
/// ends with the same bits; a worker that fails permanently is not retried and ends the run with
/// exit 1 and its own line; SIGINT
/// to the scheduler stops its workers and leaves a resumable run. No process outlives a test.
final class SchedulerEndToEndTests: XCTestCase {
    /// Long enough to be killed mid-way: ~1,900 steps, a checkpoint every 50.
    let spec = tinySpec(name: "sched", epochs: 40).replacingOccurrences(of: "log_every: 5", with: "log_every: 5\n  checkpoint_every: 50")
        .replacingOccurrences(of: "samples: 600", with: "samples: 3000")

    private func runDirectory(_ dir: String) throws -> String {
        let name = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/sched").first)
        return dir + "/out/sched/" + name
    }

    /// Waits until the run in `dir` has a training checkpoint; returns the worker training it.
    private func trainingWorker(_ dir: String, of process: Process, timeout: Double = 60) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline && process.isRunning {
            if CLI.hasCheckpoint(dir),
               let worker = CLI.children(of: process.processIdentifier).first {
                return worker
            }
            usleep(20_000)
        }
        return nil
    }

    /// The reference: the same spec with one worker, undisturbed.
    private func reference() throws -> [String: [UInt32]] {
        let dir = try CLI.workspace(spec)
        let r = try CLI.run(["spec.yaml", "--quiet", "--workers", "1"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        CLI.assertNoProcesses(in: dir)
        return try CLI.finalModelBits(dir + "/" + r.lastLine)
    }

    func testTasksRunInWorkersAndTheWorkerCountDoesNotChangeTheWeights() throws {
        let expected = try reference()
        let dir = try CLI.workspace(spec.replacingOccurrences(of: "output:", with: "parallelism:\n  workers: 2\n  retries: 0\noutput:"))
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("train: done"), "worker output reaches the terminal: \(r.stdout)")
        let runDir = dir + "/" + r.lastLine
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        for task in ["data", "train", "evaluate"] {
            XCTAssertTrue(log.contains("\(task): started worker process"), log)
            XCTAssertTrue(log.contains("\(task): worker process") && log.contains("ended with exit status 0"), log)
        }
        XCTAssertTrue(log.contains("train: done"), "worker output is in log.txt")
        XCTAssertEqual(try CLI.finalModelBits(runDir), expected, "2 workers and 1 worker give the same bits")
        CLI.assertNoProcesses(in: dir)
    }

    func testKilledWorkerIsRetriedToBitIdenticalWeights() throws {
        let expected = try reference()
        let dir = try CLI.workspace(spec)
        let p = try CLI.start(["spec.yaml", "--quiet"], in: dir)
        let worker = try XCTUnwrap(trainingWorker(dir, of: p), "no training worker with a checkpoint appeared")
        usleep(150_000)  // let it train past the checkpoint, so work is lost and redone
        XCTAssertEqual(kill(worker, SIGKILL), 0)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit)
        XCTAssertEqual(p.terminationStatus, 0, "the scheduler retries the killed task")
        let runDir = try runDirectory(dir)
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("train: worker process \(worker) ended with signal 9 (SIGKILL)"), log)
        XCTAssertTrue(log.contains("train: the worker ended with signal 9 (SIGKILL); retry 1 of 1"), log)
        XCTAssertTrue(log.contains("resuming from the checkpoint at step"), log)
        XCTAssertEqual(try H5File.open(runDir + "/run.h5").stringAttribute("status"), "complete")
        XCTAssertEqual(try CLI.finalModelBits(runDir), expected, "the retried run ends with the same bits")
        CLI.assertNoProcesses(in: dir)
    }

    func testWorkerKilledMoreOftenThanRetriesFailsTheRunNamingTheTask() throws {
        let dir = try CLI.workspace(spec.replacingOccurrences(of: "output:", with: "parallelism:\n  retries: 0\noutput:"))
        let p = try CLI.start(["spec.yaml", "--quiet"], in: dir)
        let worker = try XCTUnwrap(trainingWorker(dir, of: p))
        kill(worker, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 1)
        let runDir = try runDirectory(dir)
        XCTAssertEqual(try H5File.open(runDir + "/run.h5").stringAttribute("status"), "failed")
        CLI.assertNoProcesses(in: dir)
        let resumed = try CLI.run(["spec.yaml", "--resume", "--quiet"], in: dir)
        XCTAssertEqual(resumed.status, 0, "a failed run resumes from its checkpoint: \(resumed.stderr)")
        CLI.assertNoProcesses(in: dir)
    }

    /// A worker that fails permanently (here: divergence) is not retried, though `retries` allows
    /// it: the run ends at once with exit 1 and the worker's one line.
    func testPermanentFailureIsNotRetriedAndEndsTheRunWithTheWorkersLine() throws {
        let dir = try CLI.workspace(tinySpec(name: "sched").replacingOccurrences(of: "lr: 0.003", with: "lr: 1.0e+30\n  optimizer: sgd\n  grad_clip: null\n  momentum: 0.0")
            .replacingOccurrences(of: "output:", with: "parallelism:\n  retries: 3\noutput:"))
        let r = try CLI.run(["spec.yaml", "--workers", "2"], in: dir)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("moe-run: error: train: the loss became nan at step 2 (epoch 1); the run stopped."), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertFalse(r.stdout.contains("retry"), "not retried: \(r.stdout)")
        let runDir = try runDirectory(dir)
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("train: failed permanently, not retried; stopping the run: train: the loss became nan"), log)
        XCTAssertEqual(log.components(separatedBy: "train: started worker process").count - 1, 1, log)
        XCTAssertEqual(try H5File.open(runDir + "/run.h5").stringAttribute("status"), "failed")
        CLI.assertNoProcesses(in: dir)
    }

    func testSIGINTToTheSchedulerStopsItsWorkersAndTheRunResumes() throws {
        let expected = try reference()
        let dir = try CLI.workspace(spec)
        let err = Pipe()
        let p = try CLI.start(["spec.yaml", "--quiet"], in: dir, stderr: err)
        let worker = try XCTUnwrap(trainingWorker(dir, of: p))
        kill(p.processIdentifier, SIGINT)  // the scheduler only, as `kill -INT` would
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130, stderr)
        XCTAssertTrue(stderr.contains("interrupted (train stopped); state saved, rerun with --resume"), stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/proc/\(worker)/cwd"), "the worker has ended")
        let runDir = try runDirectory(dir)
        XCTAssertEqual(try H5File.open(runDir + "/run.h5").stringAttribute("status"), "interrupted")
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("train: worker process \(worker) ended with exit status 130"), log)
        CLI.assertNoProcesses(in: dir)

        let resumed = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from the checkpoint at step"), resumed.stdout)
        XCTAssertEqual(try CLI.finalModelBits(dir + "/" + resumed.lastLine), expected)
        CLI.assertNoProcesses(in: dir)
    }
}
