import Foundation
import MoEHDF5
import XCTest

/// A full disk and a read-only file system, for real (ARCHITECTURE §6): a small tmpfs as `--out`
/// that fills up at the data file, at a checkpoint or at the final model, and a run directory made
/// read-only mid-run. Each is a permanent failure: one line naming the task, the file and the
/// cause, exit 1, no retry, no crash trace on stderr or in log.txt; what was written before stays;
/// `run.h5` says `failed` with the reason; once space is freed, `--resume` ends with the bits of an
/// uninterrupted run. The tests mount file systems, so they need root (as CI has); without it
/// they are skipped and say so.
final class FullDiskEndToEndTests: XCTestCase {
    var mounts: [TestMount] = []

    override func tearDown() {
        for mount in mounts.reversed() { mount.unmount() }
        mounts = []
        super.tearDown()
    }

    /// 2,000 samples (tasks/data.h5 ≈ 110 KB), a model of ≈ 9 K parameters, 5 epochs × 50 steps,
    /// one checkpoint kept (its file ≈ 160 KB, tasks/train.h5 ≈ 220 KB).
    func spec(checkpointEvery: Int, extra: String = "") -> String {
        """
        name: disk
        seed: 7
        data: {source: synthetic, samples: 2000, features: 8, classes: 3, domains: 3}
        model: {hidden: 32, ffn: 64, blocks: 2}
        train: {epochs: 5, batch_size: 32, lr: 0.003, log_every: 50, checkpoint_every: \(checkpointEvery)}
        output: {dir: out, keep_checkpoints: 1}
        \(extra)
        """
    }

    /// An uninterrupted run of `yaml` on an ordinary disk: its final weights and the sizes of
    /// its files, from which each test sizes its tmpfs.
    private struct Reference {
        var bits: [String: [UInt32]]
        var runBytes: Int, dataBytes: Int, trainBytes: Int
    }

    private func reference(_ yaml: String) throws -> Reference {
        let dir = try CLI.workspace(yaml)
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let runDir = dir + "/" + r.lastLine
        func size(_ path: String) throws -> Int { try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: runDir + "/" + path)[.size] as? Int) }
        return Reference(bits: try CLI.finalModelBits(runDir), runBytes: try size("run.h5"),
                         dataBytes: try size("tasks/data.h5"), trainBytes: try size("tasks/train.h5"))
    }

    /// Runs `yaml` with `--out` on a fresh tmpfs of `kilobytes`; checks that it fails permanently
    /// with exactly one line naming `task` and `file` (relative to the run directory), leaves no
    /// crash trace and no tmp file, and marks run.h5 failed with that line. Returns the tmpfs and
    /// the run directory.
    private func failOnFullDisk(_ yaml: String, kilobytes: Int, task: String, file: String, ranks: Int = 1,
                                line: UInt = #line) throws -> (TestMount, String) {
        let tmpfs = try TestMount.tmpfs(kilobytes: kilobytes)
        mounts.append(tmpfs)
        let dir = try CLI.workspace(yaml)
        let r = try CLI.run(["spec.yaml", "--quiet", "--out", tmpfs.path], in: dir)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr, line: line)
        let runDir = tmpfs.path + "/disk/" + (try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: tmpfs.path + "/disk").first))
        let reason = "\(task): no space left on device while writing \(runDir)/\(file); free some space, then rerun with --resume to continue"
        XCTAssertEqual(r.stderr, "moe-run: error: \(reason)\n", "one line, naming task, file and cause", line: line)
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        let starts = log.split(separator: "\n").filter { $0.contains(" \(task)") && $0.contains("started worker process") }
        XCTAssertEqual(starts.count, ranks, "not retried: \(log)", line: line)
        XCTAssertTrue(log.contains("\(task)\(ranks > 1 ? "[rank 0]" : ""): worker process") && log.contains("ended with exit status 3"),
                      log, line: line)
        for trace in ["signal", "Signal", "crashed", "Backtrac", "HDF5-DIAG", "errno"] {
            XCTAssertFalse(log.contains(trace) || r.stderr.contains(trace), "no crash trace nor HDF5 error stack: \(log)", line: line)
        }
        XCTAssertEqual(CLI.files(under: runDir).filter { $0.hasSuffix(".tmp") }, [], "no tmp file left", line: line)
        let run = try H5File.open(runDir + "/run.h5")
        XCTAssertEqual(try run.stringAttribute("status"), "failed", line: line)
        XCTAssertEqual(try run.stringAttribute("error"), reason, line: line)
        CLI.assertNoProcesses(in: dir)
        return (tmpfs, runDir)
    }

    /// Frees space and resumes: the run completes with the reference's bits. Returns log.txt.
    @discardableResult
    private func resumeAfterFreeingSpace(_ tmpfs: TestMount, _ yaml: String, _ reference: Reference,
                                         line: UInt = #line) throws -> String {
        try tmpfs.resize(kilobytes: 8192)
        let dir = try CLI.workspace(yaml)
        let r = try CLI.run(["spec.yaml", "--quiet", "--resume", "--out", tmpfs.path], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr, line: line)
        XCTAssertEqual(try H5File.open(r.lastLine + "/run.h5").stringAttribute("status"), "complete", line: line)
        XCTAssertEqual(try CLI.finalModelBits(r.lastLine), reference.bits, "the resumed run ends with the same bits", line: line)
        return try String(contentsOfFile: r.lastLine + "/log.txt", encoding: .utf8)
    }

    func testFullDiskAtTheDataFile() throws {
        let yaml = spec(checkpointEvery: 100)
        let ref = try reference(yaml)
        // run.h5 fits (twice: it is replaced whole), half the data file does not.
        let size = (2 * ref.runBytes + ref.dataBytes / 2) / 1024
        let (tmpfs, runDir) = try failOnFullDisk(yaml, kilobytes: size, task: "data", file: "tasks/data.h5")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: runDir + "/tasks"), [])
        try resumeAfterFreeingSpace(tmpfs, yaml, ref)
    }

    func testFullDiskAtACheckpoint() throws {
        try fullDiskAtTheSecondCheckpoint(spec(checkpointEvery: 100), ranks: 1)
    }

    /// Rank 0 of the group writes the checkpoint and fails permanently; its peer then fails with
    /// the aborted group, and the run still ends with rank 0's line, not retried.
    func testFullDiskAtACheckpointOfADataParallelGroup() throws {
        try fullDiskAtTheSecondCheckpoint(spec(checkpointEvery: 100, extra: "parallelism: {mode: data, workers: 2}"), ranks: 2)
    }

    /// Checkpoints at steps 100 and 200: the first fits, the second does not (the file of step 100
    /// is removed only once that of step 200 is written, so for a moment both need room).
    private func fullDiskAtTheSecondCheckpoint(_ yaml: String, ranks: Int) throws {
        let ref = try reference(yaml)
        let size = (2 * ref.runBytes + ref.dataBytes + ref.trainBytes + ref.trainBytes / 20) / 1024
        let (tmpfs, runDir) = try failOnFullDisk(yaml, kilobytes: size, task: "train", file: "tasks/train.checkpoints/200.h5", ranks: ranks)
        let checkpoint = try H5File.open(runDir + "/tasks/train.checkpoints/100.h5")
        XCTAssertEqual(try checkpoint.openGroup("checkpoints").children(), ["100"], "the checkpoint written before stays intact")
        let data = try H5File.open(runDir + "/tasks/data.h5")
        XCTAssertEqual(try data.read("data/train/x", as: Float.self).values.count, 1600 * 8)
        let log = try resumeAfterFreeingSpace(tmpfs, yaml, ref)
        XCTAssertTrue(log.contains("train: resuming from the checkpoint at step 100"), log)
    }

    func testFullDiskAtTheFinalModel() throws {
        // One checkpoint (step 150); the final train.h5 is written while it still exists.
        let yaml = spec(checkpointEvery: 150)
        let ref = try reference(yaml)
        let size = (2 * ref.runBytes + ref.dataBytes + ref.trainBytes + ref.trainBytes / 4) / 1024
        let (tmpfs, runDir) = try failOnFullDisk(yaml, kilobytes: size, task: "train", file: "tasks/train.h5")
        let checkpoint = try H5File.open(runDir + "/tasks/train.checkpoints/150.h5")
        XCTAssertEqual(try checkpoint.openGroup("checkpoints").children(), ["150"], "the checkpoint written before stays intact")
        XCTAssertFalse(FileManager.default.fileExists(atPath: runDir + "/tasks/train.h5"))
        let log = try resumeAfterFreeingSpace(tmpfs, yaml, ref)
        XCTAssertTrue(log.contains("train: resuming from the checkpoint at step 150"), log)
    }

    /// The run's tasks directory becomes read-only while it trains: the next checkpoint fails
    /// with EROFS, permanently; run.h5 (outside it) records why; once writable again, `--resume`
    /// continues to the reference's bits. (Should the mount land between the tmp file's write
    /// and its rename, the failing call is the rename: the line then says "renaming".)
    func testReadOnlyFileSystemMidRun() throws {
        let yaml = spec(checkpointEvery: 50).replacingOccurrences(of: "epochs: 5", with: "epochs: 100")
        let ref = try reference(yaml)
        let dir = try CLI.workspace(yaml)
        let err = Pipe()
        let p = try CLI.start(["spec.yaml", "--quiet"], in: dir, stderr: err)
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && Date() < deadline && !CLI.hasCheckpoint(dir) {
            usleep(10_000)
        }
        let runDir = dir + "/out/disk/" + (try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/disk").first))
        let readOnly: TestMount
        do {
            readOnly = try TestMount.readOnly(runDir + "/tasks")
        } catch {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            throw error
        }
        mounts.append(readOnly)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 1, stderr)
        // The next checkpoint's file: tasks/train.checkpoints/<step>.h5.
        let checkpoints = "\(runDir)/tasks/train.checkpoints/"
        let hint = ".h5; make the file system writable, then rerun with --resume to continue\n"
        XCTAssertTrue(stderr.hasPrefix("moe-run: error: train: read-only file system while writing \(checkpoints)")
                      || stderr.hasPrefix("moe-run: error: train: read-only file system while renaming \(checkpoints)"), stderr)
        XCTAssertTrue(stderr.hasSuffix(hint), stderr)
        XCTAssertNotNil(Int(stderr.dropLast(hint.count).components(separatedBy: "/").last ?? ""), stderr)
        XCTAssertEqual(stderr.split(separator: "\n").count, 1, stderr)
        let run = try H5File.open(runDir + "/run.h5")
        XCTAssertEqual(try run.stringAttribute("status"), "failed")
        XCTAssertEqual("moe-run: error: " + (try run.stringAttribute("error")) + "\n", stderr)
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        XCTAssertEqual(log.components(separatedBy: "train: started worker process").count - 1, 1, "not retried: \(log)")
        XCTAssertFalse(log.contains("signal"), log)
        CLI.assertNoProcesses(in: dir)

        readOnly.unmount()
        let resumed = try CLI.run(["spec.yaml", "--quiet", "--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try CLI.finalModelBits(dir + "/" + resumed.lastLine), ref.bits)
    }
}

extension FullDiskEndToEndTests {
    /// `--out` on a read-only file system: the run cannot even start; one line gives the system's
    /// reason (not Foundation's paraphrase), exit 1, nothing written.
    func testReadOnlyOutputDirectory() throws {
        let out = try TestMount.tmpfs(kilobytes: 256)
        mounts.append(out)
        try out.remount("ro")
        let dir = try CLI.workspace(spec(checkpointEvery: 100))
        let r = try CLI.run(["spec.yaml", "--quiet", "--out", out.path], in: dir)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("moe-run: error: \(out.path)/disk/"), r.stderr)
        XCTAssertTrue(r.stderr.hasSuffix(": cannot create the run directory: read-only file system\n"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path), [])
    }
}
