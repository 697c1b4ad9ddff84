import Foundation
import MoESpec

/// What can end a run early, each with the exit code of the CLI contract (ARCHITECTURE §5.1).
public enum RuntimeError: Error, CustomStringConvertible {
    /// The loss or the gradient norm (`quantity`) became NaN or infinite at `step`. `lr` and
    /// `gradClip` are the spec's `train.lr` and `train.grad_clip`, so the advice never suggests
    /// a setting that is already on. Permanent: the same step diverges again on a retry.
    case diverged(task: String, step: Int, epoch: Int, quantity: String, value: Double, lr: Double, gradClip: Double?)
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
    /// A task failed in a way no retry can fix (ARCHITECTURE §6: no space left on device,
    /// permission denied, a read-only file system, a bad data file, divergence, a spec error found
    /// late). `reason` is its worker's one line, which starts with the task's id and names the
    /// file or step (`Failure.message`); the scheduler did not retry it and stopped the run.
    case taskFailedPermanently(task: String, reason: String)
    /// A collective of a task's process group failed (a peer died, timed out, or the group was
    /// aborted); the scheduler retries the group.
    case groupFailed(task: String, reason: String)
    /// `--resume` found checkpoint files of a task but none can be read (`corrupt`: each file
    /// and why). Exit 1, not 2: the command and spec are fine, the run's own files are damaged
    /// (and run.h5 already says so). Permanent: a retry would read the same files.
    case noIntactCheckpoint(task: String, directory: String, corrupt: [String])

    public var exitCode: Int32 {
        switch self {
        case .diverged, .io, .taskFailed, .taskFailedPermanently, .groupFailed, .noIntactCheckpoint: return 1
        case .interrupted, .runInterrupted: return 130
        case .runExists, .runLocked, .usage, .missingDomains: return 2
        }
    }

    public var description: String {
        switch self {
        case let .diverged(task, step, epoch, quantity, value, lr, gradClip):
            return "\(task): the \(quantity) became \(Self.number(value)) at step \(step) (epoch \(epoch + 1)); the run stopped. "
                + Self.divergenceAdvice(lr: lr, gradClip: gradClip)
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
        case let .taskFailedPermanently(_, reason):
            return reason
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

    /// The divergence of a training step whose `loss` or `gradNorm` is not finite (the loss is
    /// named when it is the one), with the spec's learning rate and clipping for the advice.
    static func diverged(task: String, step: Int, epoch: Int, loss: Double, gradNorm: Double, spec: ExperimentSpec) -> RuntimeError {
        .diverged(task: task, step: step, epoch: epoch, quantity: loss.isFinite ? "gradient norm" : "loss",
                  value: loss.isFinite ? gradNorm : loss, lr: spec.train.lr, gradClip: spec.train.gradClip)
    }

    /// Likely causes of a divergence and what to change; `train.grad_clip` is suggested only
    /// when it is off.
    static func divergenceAdvice(lr: Double, gradClip: Double?) -> String {
        if let clip = gradClip {
            return "Likely causes: a learning rate too high for this model (train.lr: \(number(lr)); gradients are already "
                + "clipped at train.grad_clip: \(number(clip))), or NaN or Inf values in the data. Lower train.lr, or check the data"
        }
        return "Likely causes: a learning rate too high for this model (train.lr: \(number(lr))) with no gradient clipping "
            + "(train.grad_clip: null), or NaN or Inf values in the data. Lower train.lr or set train.grad_clip (e.g. 1.0)"
    }

    /// A number as a user would write it in a spec ("0.003", "1e+30", "nan", "inf").
    static func number(_ x: Double) -> String {
        x.isNaN ? "nan" : String(format: "%g", x)
    }
}
