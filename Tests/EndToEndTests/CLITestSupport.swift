import Foundation
import MoEHDF5
import XCTest

/// Runs the built `moe-run` binary, as a user would.
struct CLI {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var lastLine: String { stdout.split(separator: "\n").last.map(String.init) ?? "" }
    }

    /// The `moe-run` next to the test bundle (`MOE_RUN_BIN` overrides). Every moe-run a test
    /// starts (they all name this) writes a checkpoint file at every epoch, as the tests that kill
    /// a run right after its first checkpoint need: `MOE_RUN_CHECKPOINT_SECONDS=0` unless the
    /// environment sets it (`TrainingLoop.checkpointSeconds`).
    static var binary: String {
        _ = everyEpochCheckpoints
        if let b = ProcessInfo.processInfo.environment["MOE_RUN_BIN"] { return b }
        return Bundle.main.bundleURL.appendingPathComponent("moe-run").path
    }

    private static let everyEpochCheckpoints: Void = { setenv("MOE_RUN_CHECKPOINT_SECONDS", "0", 0) }()

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Starts `moe-run args…` in `directory`; returns the process (for tests that signal it).
    static func start(_ args: [String], in directory: String, stdout: Pipe = Pipe(), stderr: Pipe = Pipe()) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: directory)
        p.standardOutput = stdout
        p.standardError = stderr
        try p.run()
        return p
    }

    /// Runs `moe-run args…` to completion.
    @discardableResult
    static func run(_ args: [String], in directory: String) throws -> Result {
        let out = Pipe(), err = Pipe()
        let p = try start(args, in: directory, stdout: out, stderr: err)
        // Read before waiting so a full pipe cannot block the child.
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                      stderr: String(decoding: e, as: UTF8.self))
    }

    /// A fresh scratch directory holding `spec.yaml` with `yaml`.
    static func workspace(_ yaml: String, file: String = "spec.yaml") throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-run-e2e-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try yaml.write(toFile: dir + "/" + file, atomically: true, encoding: .utf8)
        return dir
    }

    /// Runs an external tool (h5dump, python) and returns status and output.
    static func tool(_ path: String, _ args: [String]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    /// The pids of `pid`'s children (Linux: `/proc/<pid>/task/*/children`).
    static func children(of pid: Int32) -> [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.flatMap { task -> [Int32] in
            let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
            return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
    }

    /// Live processes whose working directory is `dir` or below (a run started there and its
    /// workers, which inherit the directory); zombies have no working directory and do not count.
    static func processes(in dir: String) -> [Int32] {
        let root = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
        return pids.filter { pid in
            guard let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd") else { return false }
            return cwd == root || cwd.hasPrefix(root + "/")
        }
    }

    /// Asserts that no process is left running in `dir`, allowing `timeout` seconds for
    /// processes that are being killed to go.
    static func assertNoProcesses(in dir: String, timeout: Double = 5, file: StaticString = #filePath, line: UInt = #line) {
        let deadline = Date().addingTimeInterval(timeout)
        while !processes(in: dir).isEmpty && Date() < deadline { usleep(20_000) }
        XCTAssertEqual(processes(in: dir), [], "processes left running in \(dir)", file: file, line: line)
    }

    /// True once a training task whose id starts with `task` has written a checkpoint below
    /// `dir/out` (a `tasks/<id>.checkpoints/<step>.h5` file; a `.h5.tmp` is still being written).
    static func hasCheckpoint(_ dir: String, task: String = "train") -> Bool {
        files(under: dir + "/out").contains { path in
            let parts = path.split(separator: "/")
            guard parts.count >= 2, path.hasSuffix(".h5") else { return false }
            let folder = parts[parts.count - 2]
            return folder.hasPrefix(task) && folder.hasSuffix(".checkpoints")
        }
    }

    /// Every file below `dir` (recursively).
    static func files(under dir: String) -> [String] {
        (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []).map { dir + "/" + $0 }
            .filter { var d: ObjCBool = false; return FileManager.default.fileExists(atPath: $0, isDirectory: &d) && !d.boolValue }
    }
}

extension CLI {
    /// Every parameter of the model at `/models/<model>` of a run file, as float32 bit patterns
    /// (for "the same bits" assertions), by its path inside the checkpoint group.
    static func modelBits(_ run: H5File, _ model: String) throws -> [String: [UInt32]] {
        try groupBits(run, "models/" + model)
    }

    /// `modelBits` of any checkpoint group `path` of `file` (a task file's `/model` or `/best`).
    static func groupBits(_ file: H5File, _ path: String) throws -> [String: [UInt32]] {
        var out: [String: [UInt32]] = [:]
        func walk(_ group: H5Group, _ prefix: String) throws {
            for name in try group.children() {
                let path = prefix.isEmpty ? name : prefix + "/" + name
                if group.kind(of: name) == .group { try walk(try group.openGroup(name), path) }
                else { out[path] = try group.read(name, as: Float.self).values.map(\.bitPattern) }
            }
        }
        try walk(try file.openGroup(path), "")
        return out
    }

    /// `modelBits` of `/models/final` in `runDir/run.h5`.
    static func finalModelBits(_ runDir: String) throws -> [String: [UInt32]] {
        try modelBits(try H5File.open(runDir + "/run.h5"), "final")
    }

    /// Starts `moe-run spec.yaml --quiet` in `dir`, waits until its training task has written a
    /// checkpoint (`hasCheckpoint`), lets it train on a little, and kills it with SIGKILL:
    /// the situation `--resume` must recover from exactly.
    static func startAndKillAfterFirstCheckpoint(in dir: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let p = try start(["spec.yaml", "--quiet"], in: dir)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && p.isRunning && !hasCheckpoint(dir) {
            usleep(20_000)
        }
        usleep(100_000)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "the run finished before it could be killed; make the spec longer",
                       file: file, line: line)
    }
}

extension CLI {
    /// Starts `moe-run spec.yaml --quiet` in `dir`, waits until its training task runs as a group
    /// of `ranks` processes and has written a checkpoint, lets it train on a little, and kills the
    /// last-started rank with SIGKILL. Returns the scheduler (still running: it retries the group)
    /// and the killed rank's pid.
    static func startAndKillLastRank(in dir: String, ranks: Int) throws -> (scheduler: Process, killed: Int32) {
        let p = try start(["spec.yaml", "--quiet"], in: dir)
        var victim: Int32?
        let deadline = Date().addingTimeInterval(60)
        while victim == nil && Date() < deadline && p.isRunning {
            let group = children(of: p.processIdentifier)
            if group.count == ranks, hasCheckpoint(dir) {
                victim = group.max()
            }
            usleep(20_000)
        }
        let rank = try XCTUnwrap(victim, "no group of \(ranks) with a checkpoint appeared")
        usleep(150_000)  // train past the checkpoint, so work is lost and redone
        XCTAssertEqual(kill(rank, SIGKILL), 0)
        return (p, rank)
    }
}

extension CLI {
    /// Runs `Tests/python/check_run.py` (h5py + numpy alone) on a run directory: it re-computes
    /// the test loss of every linked model checkpoint from the file and compares it with moe-run's
    /// summary. Asserts success and that each of `models` was among the ones checked. Skips when
    /// there is no Python venv (`make test` creates it).
    static func assertNumpyReproduces(_ runDir: String, models: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let python = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"] ?? (NSHomeDirectory() + "/.cache/moe-run/venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("no Python venv with h5py at \(python); `make test` creates it")
        }
        let script = repositoryRoot.appendingPathComponent("Tests/python/check_run.py").path
        let py = try tool(python, [script, runDir])
        XCTAssertEqual(py.status, 0, py.stdout + py.stderr, file: file, line: line)
        XCTAssertTrue(py.stdout.hasPrefix("interop: ok: "), py.stdout, file: file, line: line)
        for model in models {
            XCTAssertTrue(py.stdout.contains(" \(model) (") || py.stdout.hasPrefix("interop: ok: \(model) ("), "\(model) not checked: \(py.stdout)", file: file, line: line)
        }
    }

    /// Runs `yaml` in a fresh workspace to completion (asserting exit 0 and no process left);
    /// returns the run directory.
    static func completeRun(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let dir = try workspace(yaml)
        let r = try run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        assertNoProcesses(in: dir, file: file, line: line)
        return dir + "/" + r.lastLine
    }

    /// A training series `/metrics/<name>` of a run's `tasks/train.h5`.
    static func trainSeries(_ runDir: String, _ name: String) throws -> [Double] {
        try H5File.open(runDir + "/tasks/train.h5").read("metrics/" + name, as: Double.self).values
    }

    /// The /dev/shm files of the process groups of the scheduler `pid` (versions before issue 11
    /// named them so; there must be none now).
    static func sharedMemoryFiles(of pid: Int32) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).filter { $0.hasPrefix("moe-run-\(pid)-") }
    }

    /// Issue 5 item 7 for a task run by a group of 2: runs `yaml` (experiment `name`, results in
    /// `out/`), kills rank 1 with SIGKILL after the first checkpoint, and asserts that the
    /// scheduler retried the group to `expected` (the bits of an undisturbed run), said so in the
    /// log, left no process and no /dev/shm file, and that the task file opens with h5dump.
    /// `setUp` adds files to the fresh workspace (e.g. a text corpus) before the run.
    static func assertKilledRankIsRetried(_ yaml: String, name: String, expected: [String: [UInt32]],
                                          setUp: (String) throws -> Void = { _ in },
                                          file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = try workspace(yaml)
        try setUp(dir)
        let (p, rank) = try startAndKillLastRank(in: dir, ranks: 2)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "the scheduler retries the group", file: file, line: line)
        let run = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/" + name).first, file: file, line: line)
        let runDir = dir + "/out/\(name)/" + run
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("train[rank 1]: worker process \(rank) ended with signal 9 (SIGKILL)"), log, file: file, line: line)
        XCTAssertTrue(log.contains("train: train[rank 1] ended with signal 9 (SIGKILL); retry 1 of 1"), log, file: file, line: line)
        XCTAssertTrue(log.contains("resuming from the checkpoint at step"), log, file: file, line: line)
        XCTAssertEqual(try finalModelBits(runDir), expected, "the retried group ends with the same bits", file: file, line: line)
        assertNoProcesses(in: dir, file: file, line: line)
        XCTAssertEqual(sharedMemoryFiles(of: p.processIdentifier), [], "the group's shared-memory file is removed", file: file, line: line)
        let h5dump = try tool("/usr/bin/h5dump", ["-H", runDir + "/tasks/train.h5"])
        XCTAssertEqual(h5dump.status, 0, h5dump.stderr, file: file, line: line)
    }
}

/// A tiny dense experiment: trains in about a second.
func tinySpec(name: String = "tiny", epochs: Int = 3, extra: String = "") -> String {
    """
    name: \(name)
    seed: 7
    data:
      source: synthetic
      samples: 600
      features: 8
      classes: 3
      domains: 3
    model:
      hidden: 16
      ffn: 32
      blocks: 2
      dropout: 0.1
    train:
      epochs: \(epochs)
      batch_size: 32
      lr: 0.003
      log_every: 5
    output:
      dir: out
    \(extra)
    """
}

/// `tinySpec` long enough to be stopped or killed mid-training: ~1,900 steps, a checkpoint
/// every 50 (about two seconds).
func longSpec(name: String) -> String {
    tinySpec(name: name, epochs: 40).replacingOccurrences(of: "log_every: 5", with: "log_every: 5\n  checkpoint_every: 50")
        .replacingOccurrences(of: "samples: 600", with: "samples: 3000")
}
