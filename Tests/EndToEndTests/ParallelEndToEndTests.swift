import Foundation
import MoEHDF5
import XCTest

/// `parallelism.mode: data` and `expert` as users meet them: the training task runs as a group
/// of worker processes over shared memory and learns what one process learns from the same
/// global batches (to the rounding of a fixed-order sum), the same bits on every rerun, with the
/// group's communication costs in the task file; a killed rank makes the whole group retry from
/// the last checkpoint and end with the bits of an undisturbed run. No process and no /dev/shm
/// file outlives a test.
final class ParallelEndToEndTests: XCTestCase {
    private func parallel(_ yaml: String, mode: String, workers: Int) -> String {
        yaml.replacingOccurrences(of: "output:", with: "parallelism: {mode: \(mode), workers: \(workers), retries: 1}\noutput:")
    }

    private func weights(_ runDir: String) throws -> [String: [Float]] {
        try CLI.finalModelBits(runDir).mapValues { $0.map(Float.init(bitPattern:)) }
    }

    /// Largest |a − b| over every parameter of two models with the same tensors.
    private func maxDifference(_ a: [String: [Float]], _ b: [String: [Float]]) -> Float {
        XCTAssertEqual(Set(a.keys), Set(b.keys))
        return a.keys.map { k in zip(a[k]!, b[k] ?? []).map { abs($0 - $1) }.max() ?? 0 }.max() ?? .infinity
    }

    private func assertClose(_ a: [Double], _ b: [Double], _ tolerance: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let worst = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThan(worst, tolerance, "\(what): \(a.prefix(4)) vs \(b.prefix(4))", file: file, line: line)
    }

    /// Measured: the loss curves agree to 3e-8 and the weights to 5e-8 (float rounding of the
    /// rank-order sums); a rank drawing the wrong dropout masks, or a wrongly scaled gradient,
    /// moves them by 1e-3 or more.
    func testDataParallelLearnsWhatOneProcessLearnsFromTheSameBatches() throws {
        let spec = tinySpec(name: "dp", epochs: 3)  // dropout 0.1: each rank draws its rows' masks
        let single = try CLI.completeRun(spec)
        let reference = try CLI.trainSeries(single, "train_loss")
        for workers in [2, 3] {
            let runDir = try CLI.completeRun(parallel(spec, mode: "data", workers: workers))
            assertClose(try CLI.trainSeries(runDir, "train_loss"), reference, 1e-6, "train_loss with \(workers) workers")
            assertClose(try CLI.trainSeries(runDir, "train_accuracy"), try CLI.trainSeries(single, "train_accuracy"), 1e-9, "train_accuracy with \(workers) workers")
            XCTAssertLessThan(maxDifference(try weights(runDir), try weights(single)), 1e-5, "final weights with \(workers) workers")
            // The communication costs, per step, next to the other metrics.
            let sent = try CLI.trainSeries(runDir, "bytes_sent")
            XCTAssertTrue(sent.allSatisfy { $0 > 0 }, "bytes_sent \(sent.prefix(3))")
            XCTAssertTrue(try CLI.trainSeries(runDir, "communication_seconds").allSatisfy { $0 > 0 })
            XCTAssertTrue(try CLI.trainSeries(runDir, "compute_seconds").allSatisfy { $0 > 0 })
            XCTAssertTrue(try CLI.trainSeries(runDir, "wait_seconds").allSatisfy { $0 >= 0 })
            XCTAssertEqual(try CLI.trainSeries(runDir, "compression_error").max(), 0)
            let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
            XCTAssertTrue(log.contains("train[rank \(workers - 1)]: started worker process"), log)
        }
        XCTAssertFalse(try H5File.open(single + "/tasks/train.h5").exists("metrics/bytes_sent"), "one process has no communication series")
    }

    func testDataParallelIsTheSameBitsOnEveryRun() throws {
        let spec = parallel(tinySpec(name: "dpbits", epochs: 2), mode: "data", workers: 2)
        XCTAssertEqual(try CLI.finalModelBits(try CLI.completeRun(spec)), try CLI.finalModelBits(try CLI.completeRun(spec)))
    }

    func testExpertParallelLearnsWhatOneProcessLearns() throws {
        // Top-2 of 4 experts with the balancing and z losses; no capacity limit (capacity is
        // enforced per rank's tokens, the one place expert parallelism differs).
        let spec = tinyMoESpec(name: "ep", epochs: 3, router: "{type: topk, k: 2, aux_loss: 0.01, z_loss: 0.001}")
        let single = try CLI.completeRun(spec)
        let runDir = try CLI.completeRun(parallel(spec, mode: "expert", workers: 2))
        assertClose(try CLI.trainSeries(runDir, "train_loss"), try CLI.trainSeries(single, "train_loss"), 1e-6, "train_loss")
        assertClose(try CLI.trainSeries(runDir, "aux_loss"), try CLI.trainSeries(single, "aux_loss"), 1e-7, "aux_loss (global balancing statistics)")
        XCTAssertLessThan(maxDifference(try weights(runDir), try weights(single)), 1e-5, "final weights")
        // The router series describe the whole batch (summed over the ranks), as one process records them.
        for name in ["load", "dropped_fraction", "gate_entropy", "load_cv"] {
            let path = "router/1/" + name
            let a = try H5File.open(runDir + "/tasks/train.h5").read(path, as: Double.self).values
            let b = try H5File.open(single + "/tasks/train.h5").read(path, as: Double.self).values
            assertClose(a, b, 1e-4, path)
        }
        XCTAssertTrue(try CLI.trainSeries(runDir, "bytes_sent").allSatisfy { $0 > 0 })
    }

    func testCompressedGradientsSendFewerBytesAndStillLearn() throws {
        let spec = tinySpec(name: "dpc", epochs: 3)
        let plain = try CLI.completeRun(parallel(spec, mode: "data", workers: 2))
        let plainBytes = try CLI.trainSeries(plain, "bytes_sent")[0]
        let plainLoss = try CLI.trainSeries(plain, "train_loss").last!
        for (scheme, ratio) in [("fp16", 0.51), ("int8", 0.27), ("topk", 0.03)] {
            let yaml = parallel(spec, mode: "data", workers: 2)
                .replacingOccurrences(of: "retries: 1}", with: "retries: 1, compression: \(scheme)\(scheme == "topk" ? ", ratio: 0.01" : "")}")
            let runDir = try CLI.completeRun(yaml)
            let bytes = try CLI.trainSeries(runDir, "bytes_sent")
            XCTAssertLessThan(bytes[0], ratio * plainBytes, "\(scheme): \(bytes[0]) bytes per step vs \(plainBytes) uncompressed")
            let error = try CLI.trainSeries(runDir, "compression_error")
            XCTAssertTrue(error.allSatisfy { $0 > 0 && $0 < 1 }, "\(scheme) compression_error \(error.prefix(3))")
            let loss = try CLI.trainSeries(runDir, "train_loss")
            XCTAssertLessThan(loss.last!, loss.first! * 0.9, "\(scheme): the loss falls")
            XCTAssertLessThan(abs(loss.last! - plainLoss), scheme == "topk" ? 0.3 : 0.02, "\(scheme): final loss \(loss.last!) vs \(plainLoss)")
        }
    }

    func testKilledRankMakesTheGroupRetryToTheBitsOfAnUndisturbedRun() throws {
        // top-k compression: the error-feedback residual of every rank must come back from the checkpoint too.
        let long = parallel(tinySpec(name: "dpkill", epochs: 30), mode: "data", workers: 2)
            .replacingOccurrences(of: "retries: 1}", with: "retries: 1, compression: topk, ratio: 0.05}")
            .replacingOccurrences(of: "log_every: 5", with: "log_every: 5\n  checkpoint_every: 50")
            .replacingOccurrences(of: "samples: 600", with: "samples: 3000")
        let expected = try CLI.finalModelBits(try CLI.completeRun(long))
        try CLI.assertKilledRankIsRetried(long, name: "dpkill", expected: expected)
    }

    /// Issue 5 item 7: the scheduler killed with SIGKILL takes its group with it (the ranks die
    /// with their parent) and leaves no shared-memory file (issue 11: the group's memory has no
    /// name); `--resume` finishes the run with the bits of an undisturbed run.
    func testKilledSchedulerOfAGroupResumesToTheSameBits() throws {
        let long = parallel(tinySpec(name: "dpparent", epochs: 30), mode: "data", workers: 2)
            .replacingOccurrences(of: "log_every: 5", with: "log_every: 5\n  checkpoint_every: 50")
            .replacingOccurrences(of: "samples: 600", with: "samples: 3000")
        let expected = try CLI.finalModelBits(try CLI.completeRun(long))
        let dir = try CLI.workspace(long)
        let p = try CLI.start(["spec.yaml", "--quiet"], in: dir)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && p.isRunning
                && !(CLI.children(of: p.processIdentifier).count == 2 && CLI.hasCheckpoint(dir)) {
            usleep(20_000)
        }
        usleep(100_000)
        let scheduler = p.processIdentifier
        XCTAssertEqual(kill(scheduler, SIGKILL), 0)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "the run finished before it could be killed")
        CLI.assertNoProcesses(in: dir)  // the ranks died with their scheduler
        XCTAssertEqual(CLI.sharedMemoryFiles(of: scheduler), [], "nothing named in /dev/shm to leave behind")
        let resumed = try CLI.run(["spec.yaml", "--resume", "--quiet"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try CLI.finalModelBits(dir + "/" + resumed.lastLine), expected)
        CLI.assertNoProcesses(in: dir)
    }
}
