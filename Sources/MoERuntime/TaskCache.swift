import CProcess
import Foundation
import MoEHDF5
import MoEPlan
#if canImport(Glibc)
import Glibc
#endif

/// The task cache across runs (issue 17): a task about to start whose identity (`TaskIdentity`:
/// its spec slice, its kind's code version, its upstream tasks' identities, the named files'
/// contents) equals that of a finished task file of another run in the same experiment folder
/// (`<output>/<spec name>/*/tasks/<id>.h5`) is not recomputed: that file is hard-linked into this
/// run as `tasks/<id>.h5`. The run layout is unchanged; run.h5 lists the reused tasks under
/// `/reused/<task>` (the source run's id), and `moe-run show` prints them.
///
/// Runs side by side (a sweep's `--jobs`) do not compute a shared task twice: a task that is
/// about to start claims its identity (`TaskClaim`); a run that finds it claimed waits until the
/// claimer has finished it, then reuses its file (or, if the claimer failed or died, claims and
/// computes it itself).
///
/// Why a hard link is safe: a task file is only ever written whole to `<id>.h5.tmp` and renamed
/// over `<id>.h5` (`H5File.createAtomically`); nothing opens a task file for writing, and a
/// rename or delete in either run replaces or drops only that run's directory entry, never the
/// shared content. Resume writes checkpoints into `tasks/<id>.checkpoints/`, never into a task
/// file, and a task whose file exists is complete and never started again.
///
/// What is reused: only a finished task file (`kind = task`, never a training task's partial
/// state or checkpoints) of the same task id whose `task_identity` attribute equals this task's
/// identity; files written before task identities existed have none and are never reused. The
/// link is checked again after it is made (the source may have been replaced in between).
final class TaskCache {
    let layout: RunLayout
    let identities: [String: String]
    /// Task id → id of the run whose file it is, for every task of this run that was reused
    /// (carried over from `run.h5` when the run is resumed).
    private(set) var reused: [String: String]

    init(layout: RunLayout, identities: [String: String], reused: [String: String]) {
        self.layout = layout
        self.identities = identities
        self.reused = reused
    }

    /// The claims this run holds on the tasks it computes (`TaskClaim`), by task id.
    private var claims: [String: TaskClaim] = [:]

    /// The experiment folder: the runs of one spec name (`<output>/<name>`).
    private var folder: String {
        URL(fileURLWithPath: layout.directory).standardizedFileURL.deletingLastPathComponent().path
    }

    /// Called just before `task` would start (its dependencies complete, nothing to reuse yet):
    /// claims its identity for this run, or reports the run computing it now (`TaskClaim`), or
    /// reuses the file that run finished since the last look.
    func claim(_ task: PlanTask) -> Scheduler.Claim {
        // The scheduler's reuse pass has just looked for a finished file.
        guard let identity = identities[task.id] else { return .claimed }
        let own = URL(fileURLWithPath: layout.directory).lastPathComponent
        switch TaskClaim.attempt(folder: folder, identity: identity, holder: own) {
        case nil: return .claimed
        case .busy(let holder)?: return .busy(holder: holder)
        case .claimed(let claim)?:
            // Finished between the first look and the claim: reuse it after all.
            if let run = reuse(task) {
                claim.release()
                return .reused(run)
            }
            claims[task.id] = claim
            return .claimed
        }
    }

    /// Gives up this run's claim on `task` (it is complete, or failed): runs waiting on it go on.
    func release(_ task: String) {
        claims.removeValue(forKey: task)?.release()
    }

    /// Hard-links `task`'s file from another run of the folder that holds a finished task of the
    /// same identity; returns that run's id, or nil (the task must run).
    func reuse(_ task: PlanTask) -> String? {
        guard let identity = identities[task.id] else { return nil }
        let target = layout.taskFile(task.id)
        let fm = FileManager.default
        guard !fm.fileExists(atPath: target) else { return nil }
        for (run, source) in layout.sameTaskInOtherRuns(task.id) {
            // A file already read once says its identity in an extended attribute: one getxattr(2)
            // instead of an HDF5 open (~0.3 ms) per file of another identity.
            if let mark = IdentityMark.read(source), mark != identity { continue }
            guard Self.holds(source, task: task.id, identity: identity), link(source, target) == 0 else { continue }
            guard Self.holds(target, task: task.id, identity: identity) else {
                unlink(target)
                continue
            }
            unsynced = true
            // This run's own unfinished state of the task, as the task itself removes it once done.
            try? fm.removeItem(atPath: layout.checkpointDirectory(task.id))
            try? fm.removeItem(atPath: layout.partialFile(task.id))
            reused[task.id] = run
            return run
        }
        return nil
    }

    /// Whether links were made since the last `syncLinks`.
    private var unsynced = false

    /// Makes the links made so far durable: one fsync(2) of the tasks directory for all of them
    /// (called before run.h5 records them; best effort: a link is only a shortcut, a lost one
    /// means the task runs again).
    func syncLinks() {
        guard unsynced else { return }
        Self.syncDirectory(layout.tasksDirectory)
        unsynced = false
    }

    /// fsync(2) of a directory.
    private static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// Whether `path` is a finished task file of `task` stamped with `identity`. What the file
    /// holds is left on it as its `IdentityMark` for later scans.
    static func holds(_ path: String, task: String, identity: String) -> Bool {
        guard FileManager.default.fileExists(atPath: path), let file = try? H5File.open(path) else { return false }
        let finished = (try? file.stringAttribute("format")) == "moe-run/1" && (try? file.stringAttribute("kind")) == "task"
            && (try? file.stringAttribute("task")) == task
        let stamped = finished ? (try? file.stringAttribute(TaskIdentity.attribute)) ?? "" : ""
        file.close()
        IdentityMark.write(path, stamped)
        return !stamped.isEmpty && stamped == identity
    }

    /// run.h5's group of reused tasks: one string dataset per task, the source run's id.
    static let group = "reused"

    /// The reused tasks recorded in an existing run.h5 (none when there is none).
    static func recorded(_ layout: RunLayout) -> [String: String] {
        guard let file = try? H5File.open(layout.runFile), file.exists(group),
              let tasks = try? file.openGroup(group).children() else { return [:] }
        var out: [String: String] = [:]
        for task in tasks { out[task] = try? file.readString(group + "/" + task) }
        return out
    }
}

/// A finished task file's identity (`TaskIdentity.attribute`) repeated as an extended attribute,
/// `user.moe-run.task-identity` ("" for a file that is no finished task file or has no identity),
/// set by the first run whose task cache read the file with HDF5. Later scans of the experiment
/// folder skip a file of another identity with one getxattr(2) instead of an HDF5 open, which
/// matters when every trial of a sweep scans every other trial's files.
///
/// Only a filter: a file whose mark matches (or that has none) is still checked in the file
/// itself (`TaskCache.holds`) before it is reused, so a missing, lost (copied without xattrs) or
/// stale mark can make a task run again, never reuse the wrong file. Task files are written whole
/// and renamed into place, never changed, so a mark stays true of its inode (and its hard links).
/// Where extended attributes are not supported, nothing is marked and every scan reads the files.
enum IdentityMark {
    static let name = "user.moe-run.task-identity"

    /// The mark of `path`, or nil when it has none (or the file system keeps none).
    static func read(_ path: String) -> String? {
        var buffer = [UInt8](repeating: 0, count: 128)
        let count = moe_run_getxattr(path, name, &buffer, UInt(buffer.count))
        guard count >= 0 else { return nil }
        return String(decoding: buffer[..<Int(count)], as: UTF8.self)
    }

    /// Marks `path` with `identity` unless it has that mark already (a write dirties the inode;
    /// best effort: a read-only folder or a file system without user extended attributes keeps
    /// no mark).
    static func write(_ path: String, _ identity: String) {
        guard read(path) != identity else { return }
        let bytes = Array(identity.utf8)
        _ = moe_run_setxattr(path, name, bytes, UInt(bytes.count))
    }
}
