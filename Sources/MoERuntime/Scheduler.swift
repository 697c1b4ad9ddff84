import Foundation
import MoEPlan
#if canImport(Glibc)
import Glibc
#endif

/// Runs a plan's DAG in child processes (ARCHITECTURE §3): every task whose dependencies are
/// complete is started, at most `workers` at a time, each in its own freshly exec'd process.
///
/// - A task whose output file exists is complete and never started (resume).
/// - A child that dies (a non-zero exit other than 130, or a signal) is started again, up to
///   `retries` times; training tasks resume from their partial file. After the last retry the
///   task has failed: tasks that depend on it never start, independent ones still finish, and
///   `run()` throws `RuntimeError.taskFailed` naming it.
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
    public var workers: Int
    public var retries: Int
    /// Whether a task's output exists (checked before starting it and after it exits 0).
    public var isComplete: (String) -> Bool
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

    private struct Running {
        let task: PlanTask
        let child: ChildProcess
        var lastError: String?
    }

    /// Runs every task that is not complete yet; returns when all are complete.
    public func run() throws {
        var state: [String: State] = [:]
        var attempts: [String: Int] = [:]
        var running: [Running] = []
        var failures: [RuntimeError] = []
        var interruptedTasks: [String] = []
        var forwarded = false
        for task in tasks {
            if isComplete(task.id) {
                state[task.id] = .complete
                log.info("\(task.id): complete, skipped")
            } else {
                state[task.id] = .pending
            }
        }
        while true {
            let stopping = Interrupts.requested || !interruptedTasks.isEmpty
            if stopping && !forwarded {
                forwarded = true
                let sig = Interrupts.receivedSignal ?? SIGINT
                for r in running { r.child.signal(sig) }
            }
            if !stopping {
                for task in tasks where running.count < workers && state[task.id] == .pending
                    && task.dependsOn.allSatisfy({ state[$0] == .complete }) {
                    attempts[task.id, default: 0] += 1
                    let c = command(task)
                    let child = try ChildProcess(executable: c.executable, arguments: c.arguments, environment: c.environment)
                    log.record("\(task.id): started worker process \(child.pid) (attempt \(attempts[task.id]!))")
                    running.append(Running(task: task, child: child))
                    state[task.id] = .running
                }
            }
            if running.isEmpty { break }
            wait(for: running.map(\.child))
            var i = 0
            while i < running.count {
                forward(&running[i], final: false)
                guard let status = running[i].child.poll() else { i += 1; continue }
                forward(&running[i], final: true)
                let r = running.remove(at: i)
                let id = r.task.id
                board.lines[id] = nil
                log.record("\(id): worker process \(r.child.pid) ended with \(status)")
                if status == .exited(0) && isComplete(id) {
                    state[id] = .complete
                } else if status == .exited(130) || Interrupts.requested || !interruptedTasks.isEmpty {
                    state[id] = .pending
                    interruptedTasks.append(id)
                } else if attempts[id, default: 1] <= retries {
                    log.info("\(id): the worker ended with \(status)\(r.lastError.map { " (\($0))" } ?? ""); "
                             + "retry \(attempts[id, default: 1]) of \(retries)")
                    state[id] = .pending
                } else {
                    state[id] = .failed
                    let reason = status == .exited(0) ? "exited 0 without writing \(id).h5" : r.lastError
                    let failure = RuntimeError.taskFailed(task: id, status: status.description, attempts: attempts[id, default: 1],
                                                          reason: reason, log: logPath)
                    failures.append(failure)
                }
            }
        }
        if !interruptedTasks.isEmpty || Interrupts.requested {
            throw RuntimeError.runInterrupted(tasks: interruptedTasks)
        }
        if let first = failures.first { throw first }
        let blocked = tasks.filter { state[$0.id] != .complete }.map(\.id)
        if !blocked.isEmpty {
            throw RuntimeError.io(path: logPath, message: "tasks \(blocked.joined(separator: ", ")) never became ready (a dependency is missing from the plan)")
        }
    }

    /// Blocks until a child writes output or 50 ms pass (children that exit without output are
    /// noticed by the next `waitpid` poll; a signal to this process ends the wait early).
    private func wait(for children: [ChildProcess]) {
        var fds = children.flatMap { c in c.fds.filter { $0 >= 0 }.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) } }
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
                log.record("\(r.task.id) stderr: \(line)")
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
