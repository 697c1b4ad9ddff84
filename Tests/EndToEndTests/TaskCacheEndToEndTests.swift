import CProcess
import Foundation
import MoEHDF5
import XCTest

/// The task cache across runs (issue 17 item 2), through the built binary: a task whose identity
/// equals a finished task of another run in the same results folder is hard-linked, not
/// recomputed; run.h5 and `moe-run show` say which; `--no-cache` turns it off; any changed input
/// recomputes; an unfinished task is never reused and a linked file is never written again.
final class TaskCacheEndToEndTests: XCTestCase {
    /// A shared seed model (1 epoch) branched into 2 experts on index shards, averaged.
    private func branchSpec(long: Bool = false, data: String? = nil) -> String {
        var yaml = tinySpec(name: "cache").replacingOccurrences(of: "  dropout: 0.1", with: """
              dropout: 0.1
            experts: 2
            split:
              strategy: branch
              shard_by: index
              pretrain_epochs: 1
            parallelism:
              mode: branch
              workers: 1
            fusion:
              method: average
            """)
        if long {
            yaml = yaml.replacingOccurrences(of: "epochs: 3", with: "epochs: 40").replacingOccurrences(of: "samples: 600", with: "samples: 3000")
                .replacingOccurrences(of: "log_every: 5", with: "log_every: 5\n  checkpoint_every: 50")
        }
        if let data {
            yaml = yaml.replacingOccurrences(of: "  source: synthetic\n  samples: 600\n  features: 8\n  classes: 3\n  domains: 3\n", with: data)
        }
        return yaml
    }

    private let upstream = ["data", "pretrain", "expert-0", "expert-1"]

    private func inode(_ path: String) -> UInt64? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_ino) : nil
    }

    /// run.h5's record of reused tasks: task → source run id.
    private func reused(_ runDir: String) throws -> [String: String] {
        let run = try H5File.open(runDir + "/run.h5")
        guard run.exists("reused") else { return [:] }
        var out: [String: String] = [:]
        for task in try run.openGroup("reused").children() { out[task] = try run.readString("reused/" + task) }
        return out
    }

    /// SHA-256 (sha256sum) of every file of a run's tasks directory.
    private func checksums(_ runDir: String) throws -> String {
        let files = CLI.files(under: runDir + "/tasks").sorted()
        XCTAssertFalse(files.isEmpty)
        return try CLI.tool("/usr/bin/sha256sum", files).stdout
    }

    private func runID(_ runDir: String) -> String { (runDir as NSString).lastPathComponent }

    /// fuse.h5's expert evidence: its key, the run it was reused from (nil: measured), and the
    /// bits of every expert metric and expert–expert curve dataset.
    private func expertEvidence(_ runDir: String) throws -> (key: String, from: String?, values: [String: [UInt64]]) {
        let fusion = try H5File.open(runDir + "/tasks/fuse.h5").openGroup("fusion")
        var values: [String: [UInt64]] = [:]
        for name in ["metrics/expert-0", "metrics/expert-1", "barrier/expert-0--expert-1"] {
            for key in try fusion.openGroup(name).children() {
                values[name + "/" + key] = try fusion.read(name + "/" + key, as: Double.self).values.map(\.bitPattern)
            }
        }
        let from = fusion.hasAttribute("expert_evidence_from") ? try fusion.stringAttribute("expert_evidence_from") : nil
        return (try fusion.stringAttribute("expert_evidence"), from, values)
    }

    func testAnotherFusionMethodReusesTheUpstreamTasksAndNoCacheRecomputesThem() throws {
        let dir = try CLI.workspace(branchSpec())
        let a = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(a.status, 0, a.stderr)
        let first = dir + "/" + a.lastLine
        XCTAssertEqual(try reused(first), [:], "nothing to reuse in an empty folder")
        let before = try checksums(first)

        let b = try CLI.run(["spec.yaml", "--set", "fusion.method=ties"], in: dir)
        XCTAssertEqual(b.status, 0, b.stderr)
        let second = dir + "/" + b.lastLine
        XCTAssertNotEqual(second, first)
        for task in upstream {
            XCTAssertTrue(b.stdout.contains("\(task): reused from run \(runID(first)) (same task identity)"), b.stdout)
            XCTAssertEqual(inode(second + "/tasks/\(task).h5"), inode(first + "/tasks/\(task).h5"), "\(task) is a hard link")
        }
        for task in ["fuse", "evaluate"] {
            XCTAssertFalse(b.stdout.contains("\(task): reused"), b.stdout)
            XCTAssertNotEqual(inode(second + "/tasks/\(task).h5"), inode(first + "/tasks/\(task).h5"), task)
        }
        XCTAssertEqual(try reused(second), Dictionary(uniqueKeysWithValues: upstream.map { ($0, runID(first)) }))
        let show = try CLI.run(["show", second], in: dir)
        XCTAssertTrue(show.stdout.contains("  reused: data (run \(runID(first))), expert-0 (run \(runID(first))), expert-1 (run \(runID(first))), pretrain (run \(runID(first)))"), show.stdout)
        let cached = try CLI.finalModelBits(second)

        // The fuse task took the experts' metrics and curves from the first run's fuse.h5.
        XCTAssertTrue(b.stdout.contains("fuse: the experts' metrics and curves reused from run \(runID(first)) (same experts)"), b.stdout)
        let evidence = try expertEvidence(second)
        XCTAssertEqual(evidence.from, runID(first))
        let shown = try CLI.run(["show", second], in: dir)
        XCTAssertTrue(shown.stdout.contains("the experts' metrics and expert-expert curves: reused from run \(runID(first)) (same experts)"), shown.stdout)

        // --no-cache (after --force: the links go, the first run's files stay as they were).
        let c = try CLI.run(["spec.yaml", "--set", "fusion.method=ties", "--no-cache", "--force"], in: dir)
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertEqual(dir + "/" + c.lastLine, second)
        XCTAssertFalse(c.stdout.contains("reused"), c.stdout)
        XCTAssertEqual(try reused(second), [:])
        for task in upstream {
            XCTAssertNotEqual(inode(second + "/tasks/\(task).h5"), inode(first + "/tasks/\(task).h5"), "\(task) recomputed")
        }
        XCTAssertEqual(try CLI.finalModelBits(second), cached, "the reused tasks give the bits of the recomputed ones")
        let measured = try expertEvidence(second)
        XCTAssertNil(measured.from, "--no-cache measures the experts again")
        XCTAssertEqual(measured.key, evidence.key)
        XCTAssertEqual(measured.values, evidence.values, "reused evidence has the bits of measured evidence")
        XCTAssertEqual(measured.values.keys.filter { $0.contains("barrier/expert-0--expert-1/") }.count, 5)
        XCTAssertEqual(try checksums(first), before, "the first run's files are untouched")

        // A sweep passes --no-cache on to its trials.
        let sweep = try CLI.run(["sweep", "spec.yaml", "--grid", "fusion.method=task_arithmetic", "--no-cache", "--quiet"], in: dir)
        XCTAssertEqual(sweep.status, 0, sweep.stderr)
        let trialLog = try String(contentsOfFile: sweep.lastLine.hasPrefix("/") ? sweep.lastLine + "/logs/trial-1.txt" : dir + "/" + sweep.lastLine + "/logs/trial-1.txt", encoding: .utf8)
        XCTAssertTrue(trialLog.hasPrefix("$ moe-run spec.yaml --set sweep= --set fusion.method=task_arithmetic --out out --resume --quiet --no-cache\n"), trialLog)
    }

    /// One mutation per input class, through the binary: a spec key of the tasks' slice, the
    /// content of the data file, another code version (a source file stamped with another
    /// identity), and a task file that is not a finished task. None is reused.
    func testAnyChangedInputIsRecomputed() throws {
        var csv = "a,b,c,y\n"
        for i in 0..<200 { csv += "\(Double(i % 7) / 3),\(Double(i % 5) / 2),\(Double(i % 3)),\(i % 3)\n" }
        let dir = try CLI.workspace(branchSpec(data: "  source: file\n  path: data.csv\n"))
        try csv.write(toFile: dir + "/data.csv", atomically: true, encoding: .utf8)
        let a = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(a.status, 0, a.stderr)
        let first = dir + "/" + a.lastLine

        // A key of the experts' own slice: nothing upstream of it in common either.
        let lr = try CLI.run(["spec.yaml", "--set", "train.lr=0.004"], in: dir)
        XCTAssertEqual(lr.status, 0, lr.stderr)
        XCTAssertFalse(lr.stdout.contains("reused"), lr.stdout)

        // Another code version of the expert kind: the first run's expert-0 stamped otherwise.
        let expert0 = first + "/tasks/expert-0.h5"
        let stamp = try H5File.open(expert0).stringAttribute("task_identity")
        XCTAssertEqual(stamp.count, 64)
        try H5File.open(expert0, mode: .readWrite).setAttribute("task_identity", String(stamp.reversed()))
        // A task file that is not a finished task (as a training task's partial state is marked).
        try H5File.open(first + "/tasks/expert-1.h5", mode: .readWrite).setAttribute("kind", "partial")
        let b = try CLI.run(["spec.yaml", "--set", "fusion.method=ties"], in: dir)
        XCTAssertEqual(b.status, 0, b.stderr)
        let second = dir + "/" + b.lastLine
        XCTAssertEqual(try reused(second), ["data": runID(first), "pretrain": runID(first)], b.stdout)
        XCTAssertTrue(b.stdout.contains("expert-0: started") || !b.stdout.contains("expert-0: reused"), b.stdout)
        XCTAssertEqual(try H5File.open(second + "/tasks/expert-0.h5").stringAttribute("task_identity"), stamp,
                       "recomputed, with this code's identity")

        // The data file's content: one label changed, the same spec otherwise.
        try csv.replacingOccurrences(of: "\n0.0,0.0,0.0,0\n", with: "\n0.0,0.0,0.0,1\n").write(toFile: dir + "/data.csv", atomically: true, encoding: .utf8)
        let c = try CLI.run(["spec.yaml", "--set", "fusion.method=dare"], in: dir)
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertFalse(c.stdout.contains("reused"), c.stdout)
        let third = dir + "/" + c.lastLine
        XCTAssertNotEqual(try H5File.open(third + "/tasks/data.h5").read("data/train/y", as: Int64.self).values
                            + H5File.open(third + "/tasks/data.h5").read("data/val/y", as: Int64.self).values
                            + H5File.open(third + "/tasks/data.h5").read("data/test/y", as: Int64.self).values,
                          try H5File.open(first + "/tasks/data.h5").read("data/train/y", as: Int64.self).values
                            + H5File.open(first + "/tasks/data.h5").read("data/val/y", as: Int64.self).values
                            + H5File.open(first + "/tasks/data.h5").read("data/test/y", as: Int64.self).values)
    }

    /// An interrupted run lends only its finished tasks; when it is resumed after another run
    /// finished the task it was in the middle of, it takes that file (and drops its own
    /// checkpoints) and ends with the bits of an undisturbed run; no linked file changes.
    func testInterruptedRunLendsOnlyFinishedTasksAndResumesOntoReusedOnes() throws {
        let reference = try CLI.workspace(branchSpec(long: true))
        let r = try CLI.run(["spec.yaml", "--quiet", "--no-cache"], in: reference)
        XCTAssertEqual(r.status, 0, r.stderr)
        let expected = try CLI.finalModelBits(reference + "/" + r.lastLine)

        let dir = try CLI.workspace(branchSpec(long: true))
        let p = try CLI.start(["spec.yaml", "--quiet"], in: dir)
        let deadline = Date().addingTimeInterval(120)
        while !CLI.hasCheckpoint(dir, task: "expert-0") && Date() < deadline && p.isRunning { usleep(20_000) }
        XCTAssertTrue(p.isRunning, "the run ended before expert-0 checkpointed; make the spec longer")
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130)
        let interrupted = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/cache").first.map { dir + "/out/cache/" + $0 })
        XCTAssertFalse(FileManager.default.fileExists(atPath: interrupted + "/tasks/expert-0.h5"))

        let other = try CLI.run(["spec.yaml", "--set", "fusion.method=ties"], in: dir)
        XCTAssertEqual(other.status, 0, other.stderr)
        let otherDir = dir + "/" + other.lastLine
        XCTAssertEqual(try reused(otherDir), ["data": runID(interrupted), "pretrain": runID(interrupted)],
                       "only the finished tasks of the interrupted run")
        let otherSums = try checksums(otherDir)

        let resumed = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(dir + "/" + resumed.lastLine, interrupted)
        XCTAssertTrue(resumed.stdout.contains("expert-0: reused from run \(runID(otherDir))"), resumed.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: interrupted + "/tasks/expert-0.checkpoints"), "its own unfinished state is dropped")
        XCTAssertEqual(try reused(interrupted), ["expert-0": runID(otherDir), "expert-1": runID(otherDir)])
        XCTAssertEqual(try CLI.finalModelBits(interrupted), expected)
        XCTAssertEqual(try checksums(otherDir), otherSums, "no linked file was written")
        CLI.assertNoProcesses(in: dir)
    }
    /// Two runs started together that share upstream tasks (a sweep's `--jobs 2`, two terminals)
    /// compute each shared task once: the first to claim it computes it, the other waits and
    /// hard-links it; both end with the bits of a run alone.
    func testRunsSideBySideComputeEachSharedTaskOnce() throws {
        let dir = try CLI.workspace(branchSpec(long: true))
        let pipes = (0..<2).map { _ in Pipe() }
        let runs = try [["spec.yaml", "--quiet"], ["spec.yaml", "--quiet", "--set", "fusion.method=ties"]].enumerated().map {
            try CLI.start($0.element, in: dir, stdout: pipes[$0.offset])
        }
        for p in runs { p.waitUntilExit() }
        XCTAssertEqual(runs.map(\.terminationStatus), [0, 0])
        let dirs = pipes.map { pipe in
            dir + "/" + String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                .split(separator: "\n").last.map(String.init)!
        }
        let records = try dirs.map(reused)
        for task in upstream {
            let computedBy = dirs.indices.filter { records[$0][task] == nil }
            XCTAssertEqual(computedBy.count, 1, "\(task) is computed by exactly one run: \(records)")
            guard let owner = computedBy.first else { continue }
            XCTAssertEqual(records[1 - owner][task], runID(dirs[owner]))
            XCTAssertEqual(inode(dirs[0] + "/tasks/\(task).h5"), inode(dirs[1] + "/tasks/\(task).h5"), "\(task) is one file")
        }
        let logs = try dirs.map { try String(contentsOfFile: $0 + "/log.txt", encoding: .utf8) }
        XCTAssertTrue(logs.contains { $0.contains("is computing the same task (same task identity); waiting to reuse it") }, logs.joined())
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/cache").count, 2, "the results folder holds the two runs only")

        let alone = try CLI.workspace(branchSpec(long: true))
        let r = try CLI.run(["spec.yaml", "--quiet", "--no-cache"], in: alone)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try CLI.finalModelBits(dirs[0]), try CLI.finalModelBits(alone + "/" + r.lastLine))
        CLI.assertNoProcesses(in: dir)
    }

    /// The extended attribute `user.moe-run.task-identity` a scan leaves on each task file it read
    /// (`IdentityMark`): it lets later scans skip files of another identity without opening them,
    /// and never decides a reuse on its own: a mark that lies about a file cannot make a run reuse
    /// it, and a mark that hides a match only makes the task run again.
    func testIdentityMarksSkipOtherIdentitiesButNeverDecideAReuse() throws {
        func mark(_ path: String) -> String? {
            var buffer = [UInt8](repeating: 0, count: 128)
            let n = moe_run_getxattr(path, "user.moe-run.task-identity", &buffer, UInt(buffer.count))
            return n < 0 ? nil : String(decoding: buffer[..<Int(n)], as: UTF8.self)
        }
        func setMark(_ path: String, _ value: String) throws {
            let bytes = Array(value.utf8)
            guard moe_run_setxattr(path, "user.moe-run.task-identity", bytes, UInt(bytes.count)) == 0 else {
                throw XCTSkip("this file system keeps no user extended attributes")
            }
        }
        func identity(_ path: String) throws -> String { try H5File.open(path).stringAttribute("task_identity") }

        // The identity a dare run's fuse task has (identities do not depend on the folder).
        let other = try CLI.workspace(branchSpec())
        let d = try CLI.run(["spec.yaml", "--quiet", "--set", "fusion.method=dare"], in: other)
        XCTAssertEqual(d.status, 0, d.stderr)
        let dareFuse = try identity(other + "/" + d.lastLine + "/tasks/fuse.h5")

        let dir = try CLI.workspace(branchSpec())
        let a = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(a.status, 0, a.stderr)
        let first = dir + "/" + a.lastLine
        let b = try CLI.run(["spec.yaml", "--quiet", "--set", "fusion.method=ties"], in: dir)
        XCTAssertEqual(b.status, 0, b.stderr)
        // The second run's scan marked what it read: the reused files and the first fuse.h5.
        for task in upstream + ["fuse"] {
            let file = first + "/tasks/\(task).h5"
            guard let found = mark(file) else { throw XCTSkip("this file system keeps no user extended attributes") }
            XCTAssertEqual(found, try identity(file), task)
        }

        // A lying mark: the first run's fuse.h5 claims the identity of a dare fuse task. A dare
        // run checks the file itself and computes its own fuse task.
        let truth = try identity(first + "/tasks/fuse.h5")
        XCTAssertNotEqual(truth, dareFuse)
        try setMark(first + "/tasks/fuse.h5", dareFuse)
        // A hiding mark: expert-0 (one inode in both runs) claims another identity, so it is
        // skipped unread and computed again; expert-1 is reused as before.
        try setMark(first + "/tasks/expert-0.h5", String(repeating: "0", count: 64))
        let c = try CLI.run(["spec.yaml", "--set", "fusion.method=dare"], in: dir)
        XCTAssertEqual(c.status, 0, c.stderr)
        let third = dir + "/" + c.lastLine
        XCTAssertFalse(c.stdout.contains("fuse: reused"), c.stdout)
        XCTAssertNotEqual(inode(third + "/tasks/fuse.h5"), inode(first + "/tasks/fuse.h5"))
        XCTAssertEqual(try identity(third + "/tasks/fuse.h5"), dareFuse)
        XCTAssertEqual(mark(first + "/tasks/fuse.h5"), truth, "reading the file set its mark right")
        XCTAssertFalse(c.stdout.contains("expert-0: reused"), c.stdout)
        XCTAssertNotEqual(inode(third + "/tasks/expert-0.h5"), inode(first + "/tasks/expert-0.h5"))
        XCTAssertTrue(c.stdout.contains("expert-1: reused from run"), c.stdout)
        XCTAssertEqual(try CLI.finalModelBits(third), try CLI.finalModelBits(other + "/" + d.lastLine),
                       "the same bits as the dare run alone")
    }
}
