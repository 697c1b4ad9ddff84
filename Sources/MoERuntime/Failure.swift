import Foundation
import MoEData
import MoEFusion
import MoEHDF5
import MoESpec
#if canImport(Glibc)
import Glibc
#endif

/// The two classes of task failure (ARCHITECTURE §6) and how a worker tells its scheduler which
/// one it met.
///
/// - *Transient*: the worker was killed or crashed (a signal), a peer of its group died, or it
///   failed in a way a new attempt may not repeat. The scheduler retries the task, up to
///   `parallelism.retries` times, from its last checkpoint.
/// - *Permanent*: the same attempt would fail the same way: no space left on device or over
///   quota, permission denied, a read-only file system, a bad data file, divergence, a spec
///   error found late (`isPermanent`). The worker prints one `moe-run: error:` line naming its
///   task and the file or step (`message`) and exits with `permanentExitStatus`; the scheduler
///   never retries it, stops the other running tasks (they save their state) and ends the run
///   with that line. Everything written before stays: files only ever replace their previous
///   version whole (`H5File.createAtomically`), so `--resume` continues once the cause is fixed.
public enum Failure {
    /// Exit status of a `moe-run worker` whose task failed permanently (0 done, 1 failed and may
    /// be retried, 130 interrupted with its state saved). Never seen by users: the scheduler
    /// turns it into the run's exit status 1.
    public static let permanentExitStatus: Int32 = 3

    /// System errors no retry can fix: the storage is full, over quota, read-only, or refuses us.
    static let permanentSystemErrors: Set<Int32> = [ENOSPC, EDQUOT, EROFS, EACCES, EPERM]

    /// Whether `error`, thrown by a task, is permanent (see the type's documentation).
    public static func isPermanent(_ error: Error) -> Bool {
        switch error {
        case let error as RuntimeError:
            switch error {
            case .diverged, .usage, .missingDomains, .runExists, .runLocked, .taskFailedPermanently, .noIntactCheckpoint: return true
            case .io, .interrupted, .taskFailed, .runInterrupted, .groupFailed: return false
            }
        case is SpecError, is DataError, is FusionError:
            return true
        case let error as HDF5Error:
            return error.systemErrorCode.map(permanentSystemErrors.contains) ?? false
        default:
            return false
        }
    }

    /// The worker's one line for `error` in task `task`: it starts with the task's id, and for a
    /// full or refusing disk says what to do before `--resume`
    /// ("train: no space left on device while writing …/tasks/train.checkpoints/120.h5; free some space,
    /// then rerun with --resume to continue").
    public static func message(for error: Error, task: String) -> String {
        var text = "\(error)"
        if let code = (error as? HDF5Error)?.systemErrorCode, let hint = hint(code) {
            text += "; \(hint), then rerun with --resume to continue"
        }
        return text.hasPrefix(task + ": ") ? text : "\(task): \(text)"
    }

    /// What frees the way for a storage error.
    private static func hint(_ code: Int32) -> String? {
        switch code {
        case ENOSPC, EDQUOT: return "free some space"
        case EROFS: return "make the file system writable"
        case EACCES, EPERM: return "fix the permissions"
        default: return nil
        }
    }
}
