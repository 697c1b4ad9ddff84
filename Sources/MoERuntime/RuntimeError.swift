/// What can end a run early, each with the exit code of the CLI contract (ARCHITECTURE §5.1).
public enum RuntimeError: Error, CustomStringConvertible {
    /// The loss or gradient became NaN or infinite.
    case diverged(task: String, step: Int, epoch: Int, loss: Double)
    /// SIGINT or SIGTERM: state saved, `--resume` continues.
    case interrupted(task: String, step: Int)
    /// The run directory holds a complete run and neither `--resume` nor `--force` was given.
    case runExists(dir: String, status: String)
    /// Another process holds the run directory's lock (`RunLock`); `holder` is `pid N on host H`
    /// when its lock file says so.
    case runLocked(dir: String, holder: String?)
    /// A task could not read or write what it needs.
    case io(path: String, message: String)
    /// Bad input given on the command line (not in a spec).
    case usage(String)
    /// `router.type: domain` on samples without domain ids.
    case missingDomains(path: String)
    /// A task's worker process died or failed on every attempt (`parallelism.retries` + 1);
    /// `reason` is the worker's own error message, if it printed one.
    case taskFailed(task: String, status: String, attempts: Int, reason: String?, log: String)
    /// SIGINT or SIGTERM reached the scheduler; its workers saved their state and stopped.
    case runInterrupted(tasks: [String])
    /// A collective of a task's process group failed (a peer died, timed out, or the group was
    /// aborted); the scheduler retries the group.
    case groupFailed(task: String, reason: String)
    /// `--resume` found checkpoint files of a task but none can be read (`corrupt`: each file
    /// and why). Exit 1, not 2: the command and spec are fine, the run's own files are damaged.
    case noIntactCheckpoint(task: String, directory: String, corrupt: [String])

    public var exitCode: Int32 {
        switch self {
        case .diverged, .io, .taskFailed, .groupFailed, .noIntactCheckpoint: return 1
        case .interrupted, .runInterrupted: return 130
        case .runExists, .runLocked, .usage, .missingDomains: return 2
        }
    }

    public var description: String {
        switch self {
        case let .diverged(task, step, epoch, loss):
            return "\(task): loss became \(loss) at step \(step) (epoch \(epoch + 1)); the run stopped. Lower train.lr or set train.grad_clip"
        case let .interrupted(task, step):
            return "\(task): interrupted at step \(step); state saved, rerun with --resume to continue"
        case let .runExists(dir, status):
            return status == "complete"
                ? "\(dir): a complete run of this spec exists; use --resume to reuse it or --force to run again"
                : "\(dir): an unfinished run of this spec exists (status \(status)); use --resume to continue it or --force to start over"
        case let .runLocked(dir, holder):
            return "\(dir): in use by " + (holder.map { "moe-run (\($0))" } ?? "another moe-run")
                + "; wait for it or stop it"
        case let .io(path, message):
            return "\(path): \(message)"
        case let .usage(message):
            return message
        case let .taskFailed(task, status, attempts, reason, log):
            let tries = attempts == 1 ? "1 attempt" : "\(attempts) attempts"
            return (reason.map { $0 + "; " } ?? "")
                + "task \(task) failed: its worker ended with \(status) (\(tries)); see \(log)"
        case let .groupFailed(task, reason):
            return "task \(task): \(reason)"
        case let .noIntactCheckpoint(task, directory, corrupt):
            return "\(task): no intact checkpoint to resume from in \(directory) (\(corrupt.joined(separator: "; "))); "
                + "rerun with --force to start the run over"
        case let .runInterrupted(tasks):
            let which = tasks.isEmpty ? "" : " (" + tasks.joined(separator: ", ") + " stopped)"
            return "interrupted\(which); state saved, rerun with --resume to continue"
        case let .missingDomains(path):
            return "\(path): the samples have no domain ids, and router.type: domain routes by them; "
                + "add a `domain` dataset (HDF5) or column (CSV), or choose another router.type"
        }
    }
}
