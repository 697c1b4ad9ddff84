import Foundation
import MoEComm
import MoEPlan
#if canImport(Glibc)
import Glibc
#endif

/// Runs a plan's DAG in child processes (ARCHITECTURE §3): every task whose dependencies are
/// complete is started, at most `workers` at a time, each in its own freshly exec'd process.
///
/// - A task whose output file exists is complete and never started (resume). A task whose
///   dependencies are complete is first offered to `reuse` (the task cache across runs); just
///   before its first start, `claim` may hold it back while another run computes the same task.
/// - A child that dies (a non-zero exit other than 130 and `Failure.permanentExitStatus`, or a
///   signal) has failed *transiently* and is started again, up to `retries` times; training
///   tasks resume from their newest intact checkpoint. After the last retry the task has failed: tasks that
///   depend on it never start, independent ones still finish, and `run()` throws
///   `RuntimeError.taskFailed` naming it.
/// - A child that exits with `Failure.permanentExitStatus` has failed *permanently* (a full
///   disk, a bad data file, divergence…; see `Failure`): it is never retried, no new task
///   starts, the other running workers are stopped as on SIGINT (they save their state), and
///   `run()` throws `RuntimeError.taskFailedPermanently` with the worker's own line.
/// - SIGINT/SIGTERM to this process (see `Interrupts`) is forwarded to every child; no new task
///   starts; once all children have ended `run()` throws `RuntimeError.runInterrupted`. A child
///   that exits 130 by itself (it was sent SIGINT directly) stops the run the same way.
///
/// The loop is single-threaded on the calling thread (children's parent-death signal is tied to
/// the thread that spawned them) and reads the children's output through pipes: stdout lines go
/// to the log (file and terminal), stderr lines to the log file and, but for a task's final
/// `moe-run: error:` line (folded into the scheduler's own message), to the terminal's stderr.
public struct Scheduler {
    /// How to start a task: executable, argv (with argv[0]) and the complete environment.
    public struct Command {
        public var executable: String
        public var arguments: [String]
        public var environment: [String: String]
        public init(executable: String, arguments: [String], environment: [String: String]) {
            self.executable = executable
            self.arguments = arguments
            self.environment = environment
        }
    }

    public var tasks: [PlanTask]
    /// Seconds the workers get to save their state and stop after SIGINT/SIGTERM is forwarded,
    /// before they are killed (`MOE_RUN_STOP_GRACE`, default 30).
    public var stopGrace: Double = ProcessInfo.processInfo.environment["MOE_RUN_STOP_GRACE"].flatMap(Double.init) ?? 30
    public var workers: Int
    public var retries: Int
    /// Whether a task's output exists (checked before starting it and after it exits 0).
    public var isComplete: (String) -> Bool
    /// The task cache (`TaskCache`): called once a task's dependencies are complete, before it
    /// would first start; a non-nil result (the run its file came from) makes it complete.
    public var reuse: ((PlanTask) -> String?)?
    /// Called after a pass of `reuse` over the ready tasks that reused any, before tasks start.
    public var afterReuse: (() -> Void)?
    /// What `claim` says of a task about to start for the first time.
    public enum Claim: Equatable {
        /// This run computes it.
        case claimed
        /// The run `holder` is computing a task of the same identity now: wait for it.
        case busy(holder: String)
        /// That run has finished it since; its file is now this run's (by the id of its run).
        case reused(String)
    }
    /// The task cache's claim (`TaskCache.claim`): asked just before a task's first attempt
    /// would start, so two runs side by side compute a shared task once.
    public var claim: ((PlanTask) -> Claim)?
    /// Called once a task is complete or has failed for good (the cache gives up its claim).
    public var settled: ((String) -> Void)?
    public var command: (PlanTask) -> Command
    public var log: RunLog
    /// The log file named in failure messages.
    public var logPath: String

    public init(tasks: [PlanTask], workers: Int, retries: Int, log: RunLog, logPath: String,
                isComplete: @escaping (String) -> Bool, command: @escaping (PlanTask) -> Command) {
        self.tasks = tasks
        self.workers = max(1, workers)
        self.retries = max(0, retries)
        self.log = log
        self.logPath = logPath
        self.isComplete = isComplete
        self.command = command
    }

    private enum State { case pending, running, complete, failed }
    /// The latest progress line of each running task (from its worker's marked stdout lines).
    private final class Board {
        var lines: [String: String] = [:]
        var lastDraw = Date.distantPast
    }
    private let board = Board()

    /// One worker process of a running task (a task of `workers > 1` runs as a group of ranks).
    private struct Running {
        let task: PlanTask
        let child: ChildProcess
        /// Rank in the task's group; nil for a task of one process.
        let rank: Int?
        var lastError: String?
        var label: String { rank.map { "\(task.id)[rank \($0)]" } ?? task.id }
    }

    /// One attempt of a task: its processes, and the shared memory of a group (kept open while
    /// the attempt runs, to abort the group through it; closed when the attempt ends).
    private struct Attempt {
        let task: PlanTask
        var group: SharedMemorySegment?
        var remaining: Int
        /// The first process that ended badly (the cause; its peers then fail with it), or the
        /// first that failed permanently (a rank whose disk is full outranks its aborted peers).
        var failure: (label: String, status: ExitStatus, error: String?)?
        var permanent: Bool { failure?.status == .exited(Failure.permanentExitStatus) }
        var allExitedZero = true
        var interrupted = false
    }

    /// Environment variables telling a worker its place in a group (see `Worker`).
    public static let rankVariable = "MOE_RUN_RANK"
    public static let worldSizeVariable = "MOE_RUN_WORLD_SIZE"
    /// The number of the inherited descriptor of the group's memory (an unnamed
    /// `SharedMemorySegment`: there is no path to pass, and none to leak).
    public static let groupDescriptorVariable = "MOE_RUN_GROUP_FD"

    /// Runs every task that is not complete yet; returns when all are complete.
    ///
    /// A task with `workers > 1` (data, expert and pipeline parallel training) starts as a group
    /// of that many processes, ranks 0 … N−1, sharing one unnamed shared-memory file for their
    /// collectives (`SharedMemorySegment`, `SharedMemoryGroup`): each process inherits its
    /// descriptor and finds its rank, the group size and the descriptor's number in its
    /// environment (`MOE_RUN_RANK`, `MOE_RUN_WORLD_SIZE`, `MOE_RUN_GROUP_FD`). The file has no
    /// name, so a kill -9 of this process, of its workers or of all of them leaves nothing in
    /// /dev/shm. The group is one attempt: when one rank dies the group is aborted through the
    /// descriptor kept open here (its peers' collectives fail at once instead of waiting), and
    /// once every rank has ended the whole group is retried from the last checkpoint, or fails.
    public func run() throws {
        var state: [String: State] = [:]
        var attempts: [String: Int] = [:]
        var running: [Running] = []
        var active: [String: Attempt] = [:]
        var failures: [RuntimeError] = []
        var interruptedTasks: [String] = []
        /// The permanent failure that stops the run (the first one).
        var permanentFailure: RuntimeError?
        var forwarded = false
        var forwardedAt = Date.distantFuture
        var killed = false
        /// Tasks whose wait for another run (`claim`) was logged.
        var announced: Set<String> = []
        Self.removeStaleGroupFiles(log: log)
        for task in tasks {
            if isComplete(task.id) {
                state[task.id] = .complete
                log.info("\(task.id): complete, skipped")
            } else {
                state[task.id] = .pending
            }
        }
        while true {
            let stopping = Interrupts.requested || !interruptedTasks.isEmpty || permanentFailure != nil
            if stopping && !forwarded {
                forwarded = true
                forwardedAt = Date()
                let sig = Interrupts.receivedSignal ?? SIGINT
                for r in running { r.child.signal(sig) }
            }
            // A worker that ignores the signal (stuck in a system call, or in a peer's wait) is
            // killed after the grace period: the run still stops, from its last checkpoint.
            if forwarded && !killed && Date().timeIntervalSince(forwardedAt) > stopGrace {
                killed = true
                for r in running {
                    let message = "\(r.label): worker process \(r.child.pid) did not stop within \(String(format: "%g", stopGrace)) s of the signal; killing it (SIGKILL)"
                    log.record(message)
                    log.warning(message)
                    r.child.signal(SIGKILL)
                }
            }
            // Tasks held back because another run is computing the same task (`claim`).
            var waiting = false
            if !stopping {
                // The task cache first (in plan order, so a chain of reusable tasks goes at once),
                // recorded before any task starts.
                if let reuse {
                    var reusedAny = false
                    for task in tasks where state[task.id] == .pending && attempts[task.id] == nil
                        && task.dependsOn.allSatisfy({ state[$0] == .complete }) {
                        guard let source = reuse(task) else { continue }
                        state[task.id] = .complete
                        reusedAny = true
                        log.info("\(task.id): reused from run \(source) (same task identity)")
                    }
                    if reusedAny { afterReuse?() }
                }
                for task in tasks where state[task.id] == .pending && task.dependsOn.allSatisfy({ state[$0] == .complete }) {
                    let size = min(max(1, task.workers), workers)
                    guard running.count + size <= workers else { continue }
                    if attempts[task.id] == nil, let claim {
                        switch claim(task) {
                        case .claimed: break
                        case .busy(let holder):
                            waiting = true
                            if announced.insert(task.id).inserted {
                                log.info("\(task.id): \(holder.isEmpty ? "another run" : "run " + holder) is computing the same task (same task identity); waiting to reuse it")
                            }
                            continue
                        case .reused(let source):
                            state[task.id] = .complete
                            log.info("\(task.id): reused from run \(source) (same task identity)")
                            afterReuse?()
                            continue
                        }
                    }
                    attempts[task.id, default: 0] += 1
                    let attempt = attempts[task.id]!
                    var record = Attempt(task: task, group: nil, remaining: size)
                    if size > 1 {
                        record.group = try SharedMemorySegment(worldSize: size, name: "moe-run-\(task.id)-\(attempt)")
                    }
                    active[task.id] = record
                    state[task.id] = .running
                    for rank in 0..<size {
                        var c = command(task)
                        if let group = record.group {
                            c.environment[Self.rankVariable] = String(rank)
                            c.environment[Self.worldSizeVariable] = String(size)
                            c.environment[Self.groupDescriptorVariable] = String(group.descriptor)
                        }
                        let child = try ChildProcess(executable: c.executable, arguments: c.arguments, environment: c.environment,
                                                     inheriting: record.group.map { [$0.descriptor] } ?? [])
                        let r = Running(task: task, child: child, rank: size > 1 ? rank : nil)
                        log.record("\(r.label): started worker process \(child.pid) (attempt \(attempt))")
                        running.append(r)
                    }
                }
            }
            if running.isEmpty {
                guard waiting && !stopping else { break }
                usleep(50_000)  // the other run's task is not done yet; look again
                continue
            }
            wait(for: running.map(\.child))
            var i = 0
            while i < running.count {
                forward(&running[i], final: false)
                guard let status = running[i].child.poll() else { i += 1; continue }
                forward(&running[i], final: true)
                let r = running.remove(at: i)
                let id = r.task.id
                log.record("\(r.label): worker process \(r.child.pid) ended with \(status)")
                guard var a = active[id] else { continue }
                a.remaining -= 1
                if status != .exited(0) {
                    a.allExitedZero = false
                    if status == .exited(130) { a.interrupted = true }
                    if a.failure == nil {
                        a.failure = (r.label, status, r.lastError)
                        // The peers of a dead rank stop now instead of at their time-out.
                        a.group?.abort()
                    } else if status == .exited(Failure.permanentExitStatus) && !a.permanent {
                        a.failure = (r.label, status, r.lastError)
                    }
                }
                active[id] = a
                guard a.remaining == 0 else { continue }
                active[id] = nil  // closes the group's descriptor; the memory goes with the last rank
                board.lines[id] = nil
                let interrupted = a.interrupted || Interrupts.requested || !interruptedTasks.isEmpty
                if a.allExitedZero && isComplete(id) {
                    state[id] = .complete
                    settled?(id)
                } else if a.permanent, let failure = a.failure {
                    state[id] = .failed
                    settled?(id)
                    let reason = failure.error ?? "\(failure.label): the worker failed with \(failure.status)"
                    log.record("\(id): failed permanently, not retried; stopping the run: \(reason)")
                    if permanentFailure == nil { permanentFailure = RuntimeError.taskFailedPermanently(task: id, reason: reason) }
                } else if interrupted {
                    state[id] = .pending
                    interruptedTasks.append(id)
                } else if attempts[id, default: 1] <= retries {
                    let cause = a.failure.map { "\($0.label == id ? "the worker" : $0.label) ended with \($0.status)\($0.error.map { " (\($0))" } ?? "")" }
                        ?? "the worker exited 0 without writing \(id).h5"
                    log.info("\(id): \(cause); retry \(attempts[id, default: 1]) of \(retries)")
                    state[id] = .pending
                } else {
                    state[id] = .failed
                    settled?(id)
                    let status = a.failure?.status ?? .exited(0)
                    let reason = a.failure == nil ? "exited 0 without writing \(id).h5" : a.failure!.error
                    let who = a.failure.map { $0.label == id ? "" : " (\($0.label))" } ?? ""
                    failures.append(RuntimeError.taskFailed(task: id + who, status: status.description, attempts: attempts[id, default: 1],
                                                            reason: reason, log: logPath))
                }
            }
        }
        if let permanentFailure { throw permanentFailure }
        if !interruptedTasks.isEmpty || Interrupts.requested {
            throw RuntimeError.runInterrupted(tasks: interruptedTasks)
        }
        if let first = failures.first { throw first }
        let blocked = tasks.filter { state[$0.id] != .complete }.map(\.id)
        if !blocked.isEmpty {
            throw RuntimeError.io(path: logPath, message: "tasks \(blocked.joined(separator: ", ")) never became ready (a dependency is missing from the plan)")
        }
    }

    /// Removes the /dev/shm files of groups whose scheduler is gone (`moe-run-<pid>-…` with no
    /// live process `pid`). Only versions of moe-run before the unnamed `SharedMemorySegment`
    /// made such files (a scheduler killed with SIGKILL could not remove its own); this one
    /// makes none, and still clears what they left.
    static func removeStaleGroupFiles(log: RunLog) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []
        for name in names where name.hasPrefix("moe-run-") {
            guard let pid = name.dropFirst("moe-run-".count).split(separator: "-").first.flatMap({ Int32($0) }),
                  pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            unlink("/dev/shm/" + name)
            log.record("removed /dev/shm/\(name), left by scheduler process \(pid), which is gone")
        }
    }

    /// Blocks until a child writes output or 50 ms pass (children that exit without output are
    /// noticed by the next `waitpid` poll; a signal to this process ends the wait early).
    private func wait(for children: [ChildProcess]) {
        var fds = children.flatMap { c in c.waitFDs.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) } }
        _ = fds.withUnsafeMutableBufferPointer { Glibc.poll($0.baseAddress, nfds_t($0.count), 50) }
    }

    /// Passes a child's output on: stdout lines to the log, stderr lines to the log file and the
    /// terminal, keeping the last `moe-run: error:` line for the failure message instead.
    /// With `final`, reads until both pipes reach end of file (the child has exited), for at most 2 s.
    private func forward(_ r: inout Running, final: Bool) {
        let deadline = Date().addingTimeInterval(2)  // a grandchild could hold a pipe open
        repeat {
            for line in r.child.readLines(0) {
                if line.first == RunLog.progressMarker {
                    board.lines[r.task.id] = String(line.dropFirst())
                    drawProgress()
                } else {
                    log.info(line)
                    drawProgress(force: true)
                }
            }
            for line in r.child.readLines(1) {
                log.record("\(r.label) stderr: \(line)")
                if line.hasPrefix(Self.errorPrefix) {
                    r.lastError = String(line.dropFirst(Self.errorPrefix.count))
                } else {
                    log.warning(line)
                }
            }
            if final && !r.child.drained { wait(for: [r.child]) }
        } while final && !r.child.drained && Date() < deadline
    }

    static let errorPrefix = "moe-run: error: "

    /// On a TTY: one line per running task (its latest progress line: bar, epoch, step, loss,
    /// samples/s, ETA) and an overall bar over the plan's tasks, at most 10 times a second.
    private func drawProgress(force: Bool = false) {
        guard log.drawsProgress else { return }
        let now = Date()
        guard force || now.timeIntervalSince(board.lastDraw) >= 0.1 else { return }
        board.lastDraw = now
        let done = tasks.filter { isComplete($0.id) }.count
        var lines = tasks.compactMap { t in board.lines[t.id].map { "  " + $0 } }
        lines.append(progressBar(Double(done) / Double(max(tasks.count, 1))) + " overall: \(done)/\(tasks.count) tasks complete")
        log.progressBlock(lines)
    }
}
