import Foundation
import MoEHDF5
#if canImport(Glibc)
import Glibc
#endif

/// Rank 0's watch for a rank that died (ARCHITECTURE §5.5, issue 14 item 4).
///
/// When a rank dies, Open MPI ends the job: mpirun sends SIGTERM to every other rank and SIGKILL
/// one second later (`odls_base_sigkill_timeout`). Rank 0's main thread may then be blocked in a
/// collective with the dead rank, so this thread, which makes no MPI or HDF5 call, looks at the
/// SIGTERM: if a rank on this host is gone (its pid no longer exists, or is a zombie), it prints
/// `moe-run: error: task T: rank R (host H, pid P) died; …`, appends it to log.txt, rewrites
/// run.h5 with status `failed` and that line as its `error` (`recordFailure`, given by Runner),
/// and exits 1. The run stays resumable: every task file and checkpoint is whole (written
/// atomically), and `--resume` continues from the last checkpoint to the same bits. run.h5 is
/// written from this thread while the main thread may be using HDF5 on its own files, which is
/// safe only with a thread-safe HDF5 (Debian's is; `H5File.isUsableFromThisThread`); with
/// another build the status stays `running`, as after a kill. Runner's own final writes of
/// run.h5 go through `finishing`, so the two never write the file at once.
///
/// When no rank on this host died, the signal is an interrupt (Ctrl-C on mpirun), or a rank on
/// another host died, which this host cannot see: the main thread stops the run as interrupted
/// (status `interrupted`, exit 130) if it can within the second mpirun gives. If it has not
/// ended 0.8 s after the signal (it is blocked in a collective with a rank that is gone), this
/// thread prints which tasks ran on which ranks and hosts, records status `failed` the same way
/// and exits 1; the run is resumable. Once the run has saved its final status (`settle`), the watch instead ends
/// the process with the run's own line and exit code (130 for an interrupt): mpirun may tear the
/// job down while rank 0 still tells its ranks to stop or finalizes MPI, which is no lost rank.
final class MPIFaultWatch: @unchecked Sendable {
    private let cluster: MPICluster
    private let logPath: String
    private let lock = NSLock()
    private var wave: [MPIAssignment] = []
    private var settled: (line: String?, code: Int32)?
    /// Held while run.h5's final status is written, by Runner (`finishing`) or by this watch
    /// (which then never releases it: the process ends).
    private let statusLock = NSLock()
    /// Rewrites run.h5 with status `failed` and the given line as its error (set by Runner before
    /// the first wave).
    var recordFailure: ((String) -> Void)?

    init(cluster: MPICluster, logPath: String) {
        self.cluster = cluster
        self.logPath = logPath
    }

    /// The tasks now running (nil or empty between waves).
    func setWave(_ assignments: [MPIAssignment]?) {
        lock.lock(); defer { lock.unlock() }
        wave = assignments ?? []
    }

    /// The run has ended with `line` (its error, as the CLI prints it; nil when it completed) and
    /// saved its status in run.h5: from now on the watch ends the process with that line and
    /// `code`, not as a fault.
    func settle(line: String?, code: Int32) {
        lock.lock(); defer { lock.unlock() }
        settled = (line, code)
    }

    /// Runs `body` (Runner's final write of run.h5, then `settle`) so that it never overlaps
    /// this watch's own write of status `failed`.
    func finishing(_ body: () throws -> Void) rethrows {
        statusLock.lock(); defer { statusLock.unlock() }
        try body()
    }

    /// Starts the watching thread (it ends with the process).
    func start() {
        let thread = Thread { [self] in
            while !Interrupts.requested { usleep(20_000) }
            // mpirun reaps the dead rank before it signals the others; a moment for its zombie.
            usleep(50_000)
            endIfSettled()
            if let line = deadRankLine() { fail(line) }
            usleep(750_000)
            endIfSettled()
            fail(endedLine())
        }
        thread.start()
    }

    private func endIfSettled() {
        lock.lock()
        let end = settled
        lock.unlock()
        guard let end else { return }
        if let line = end.line { FileHandle.standardError.write(Data(("moe-run: error: " + line + "\n").utf8)) }
        _exit(end.code)
    }

    private func fail(_ line: String) -> Never {
        statusLock.lock()  // never released: the process ends here
        endIfSettled()
        RunLog(path: logPath, quiet: true).record("error: " + line)
        if H5File.isUsableFromThisThread() { recordFailure?(line) }
        FileHandle.standardError.write(Data(("moe-run: error: " + line + "\n").utf8))
        _exit(1)
    }

    /// The line when the job ends and no rank on this host died: the tasks running, their ranks.
    func endedLine() -> String {
        lock.lock()
        let running = wave
        lock.unlock()
        let tasks = running.map { "task \($0.task) on \($0.ranks.map(cluster.label).joined(separator: ", "))" }
        return "MPI ended the job (a rank on another host died, or mpirun was stopped)"
            + (tasks.isEmpty ? "" : " while " + tasks.joined(separator: "; ") + " ran")
            + ". Every finished task and checkpoint is kept: rerun the same command with --resume to continue"
    }

    /// The line for the first rank on this host that is gone, or nil.
    func deadRankLine() -> String? {
        let me = cluster.hosts[cluster.rank]
        guard let dead = (0..<cluster.size).first(where: { $0 != cluster.rank && cluster.hosts[$0] == me && Self.isGone(cluster.pids[$0]) }) else {
            return nil
        }
        lock.lock()
        let task = wave.first { $0.ranks.contains(dead) }?.task
        lock.unlock()
        let what = task.map { "task \($0): " } ?? ""
        return "\(what)rank \(dead) (host \(cluster.hosts[dead]), pid \(cluster.pids[dead])) died; MPI ended the job. "
            + "Every finished task and checkpoint is kept: rerun the same command with --resume to continue"
    }

    /// Whether process `pid` no longer runs (absent, or a zombie).
    static func isGone(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        if kill(pid, 0) != 0 && errno == ESRCH { return true }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state == "Z" || state == "X"
    }
}
