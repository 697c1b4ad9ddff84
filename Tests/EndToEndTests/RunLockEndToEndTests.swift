import Foundation
import MoEHDF5
import XCTest

/// The run lock (ARCHITECTURE §5.2, docs/results.md) with the real binary: a second moe-run on a
/// run directory in use exits 2 naming the holder and harms nothing; `kill -9` of the holder
/// frees the directory at once; a sweep trial whose run is held fails with the same line.
final class RunLockEndToEndTests: XCTestCase {
    private var host: String {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, 255)
        return String(cString: name)
    }

    /// Starts `moe-run args…` in `dir`, waits until it holds the lock of a run directory below
    /// `dir/out` (its pid in a `run.lock`) and `file` exists in that directory, and stops it with
    /// SIGSTOP, with its workers: stopped, it keeps the lock and changes nothing for as long as the
    /// test needs. Returns the process and the run directory relative to `dir`.
    private func startHolding(_ args: [String], in dir: String, until file: String = "run.lock") throws -> (process: Process, runDir: String) {
        let p = try CLI.start(args, in: dir)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && p.isRunning {
            for lock in CLI.files(under: dir + "/out") where lock.hasSuffix("/run.lock") {
                let runDir = String(lock.dropLast("/run.lock".count))
                if let text = try? String(contentsOfFile: lock, encoding: .utf8), text.hasPrefix("\(p.processIdentifier) "),
                   FileManager.default.fileExists(atPath: runDir + "/" + file) {
                    signal(p, SIGSTOP)
                    return (p, String(runDir.dropFirst(dir.count + 1)))
                }
            }
            usleep(2_000)
        }
        XCTFail("moe-run \(args) ended or never took a lock")
        throw XCTSkip("no holder")
    }

    /// Sends `sig` to `p` (first) and its worker processes (SIGSTOP/SIGCONT of a whole run).
    private func signal(_ p: Process, _ sig: Int32) {
        kill(p.processIdentifier, sig)
        for child in CLI.children(of: p.processIdentifier) { kill(child, sig) }
    }

    private func inUse(_ runDir: String, by p: Process) -> String {
        "moe-run: error: \(runDir): in use by moe-run (pid \(p.processIdentifier) on host \(host)); wait for it or stop it\n"
    }

    private let spec = longSpec(name: "lock")

    func testASecondProcessIsTurnedAwayAndTheFirstCompletesUnharmed() throws {
        let reference = try CLI.finalModelBits(try CLI.completeRun(spec))

        let dir = try CLI.workspace(spec)
        let (first, runDir) = try startHolding(["spec.yaml", "--quiet"], in: dir, until: "tasks/train.checkpoints")
        let before = try snapshot(dir + "/" + runDir)
        XCTAssertTrue(holdsOpen(first.processIdentifier, "run.lock"), "the scheduler has the lock file open")
        let workers = CLI.children(of: first.processIdentifier)
        XCTAssertFalse(workers.isEmpty, "the training worker runs")
        for worker in workers { XCTAssertFalse(holdsOpen(worker, "run.lock"), "worker \(worker) inherited the lock (O_CLOEXEC)") }
        XCTAssertTrue(before.keys.contains("run.h5"), "\(before.keys)")
        for args in [["spec.yaml", "--resume"], ["spec.yaml", "--force"], ["spec.yaml"]] {
            let second = try CLI.run(args, in: dir)
            XCTAssertEqual(second.status, 2, "\(args): \(second.stderr)")
            XCTAssertEqual(second.stderr, inUse(runDir, by: first), "\(args)")
            XCTAssertEqual(second.stdout, "", "\(args)")
        }
        XCTAssertEqual(try snapshot(dir + "/" + runDir), before, "the turned-away processes (--force too) changed nothing")

        signal(first, SIGCONT)
        first.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 0)
        let run = try H5File.open(dir + "/" + runDir + "/run.h5")
        XCTAssertEqual(try run.stringAttribute("status"), "complete")
        run.close()
        XCTAssertEqual(try CLI.finalModelBits(dir + "/" + runDir), reference, "the first run ends with the bits of an undisturbed run")
        let h5dump = try CLI.tool("/usr/bin/h5dump", ["-H", dir + "/" + runDir + "/tasks/train.h5"])
        XCTAssertEqual(h5dump.status, 0, h5dump.stderr)

        // The lock went with its holder: the directory is free again.
        let again = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("the run is complete; nothing to do"), again.stdout)
        CLI.assertNoProcesses(in: dir)
    }

    /// Whether process `pid` has a file named `name` open (`/proc/<pid>/fd`).
    private func holdsOpen(_ pid: Int32, _ name: String) -> Bool {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        return fds.contains { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"))?.hasSuffix("/" + name) == true
        }
    }

    /// Every file below `dir` (relative path) with its contents.
    private func snapshot(_ dir: String) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for file in CLI.files(under: dir) { out[String(file.dropFirst(dir.count + 1))] = try Data(contentsOf: URL(fileURLWithPath: file)) }
        return out
    }

    /// SIGKILL gives the holder no chance to clean up; the kernel drops its flock, so `--resume`
    /// started the moment it is gone continues the run.
    func testKillNineThenResumeWorksAtOnce() throws {
        let dir = try CLI.workspace(spec)
        try CLI.startAndKillAfterFirstCheckpoint(in: dir)
        let lock = try XCTUnwrap(CLI.files(under: dir + "/out").first { $0.hasSuffix("/run.lock") })
        XCTAssertFalse(try String(contentsOfFile: lock, encoding: .utf8).isEmpty, "the dead holder's pid is still written there")
        let resumed = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from the checkpoint at step"), resumed.stdout)
        XCTAssertEqual(try H5File.open(dir + "/" + resumed.lastLine + "/run.h5").stringAttribute("status"), "complete")
        CLI.assertNoProcesses(in: dir)
    }

    /// A sweep whose trial's run is held by another moe-run: that trial fails with the holder's
    /// line, the other trial runs, and once the holder is done a rerun skips both.
    func testASweepTrialWhoseRunIsHeldFailsNamingTheHolder() throws {
        let dir = try CLI.workspace(tinySpec(name: "held", epochs: 2))
        let (holder, runDir) = try startHolding(["spec.yaml", "--set", "seed=8", "--quiet"], in: dir)
        let sweep = try CLI.run(["sweep", "spec.yaml", "--grid", "seed=7,8"], in: dir)
        XCTAssertEqual(sweep.status, 1, sweep.stderr)
        let line = String(inUse(runDir, by: holder).dropFirst("moe-run: error: ".count).dropLast())
        XCTAssertTrue(sweep.stderr.contains("trial 2/2 (seed=8) failed: " + line + " (log "), sweep.stderr)
        XCTAssertTrue(sweep.stdout.contains("trial 1/2 (seed=7): complete in"), sweep.stdout)

        signal(holder, SIGCONT)
        holder.waitUntilExit()
        XCTAssertEqual(holder.terminationStatus, 0)
        let rerun = try CLI.run(["sweep", "spec.yaml", "--grid", "seed=7,8"], in: dir)
        XCTAssertEqual(rerun.status, 0, rerun.stderr)
        XCTAssertTrue(rerun.stdout.contains("trial 2/2 (seed=8): complete, skipped: \(runDir)"), rerun.stdout)
        CLI.assertNoProcesses(in: dir)
    }
}
