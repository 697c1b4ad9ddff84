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

    /// Hard-links `task`'s file from another run of the folder that holds a finished task of the
    /// same identity; returns that run's id, or nil (the task must run).
    func reuse(_ task: PlanTask) -> String? {
        guard let identity = identities[task.id] else { return nil }
        let target = layout.taskFile(task.id)
        let fm = FileManager.default
        guard !fm.fileExists(atPath: target) else { return nil }
        let directory = URL(fileURLWithPath: layout.directory).standardizedFileURL
        let folder = directory.deletingLastPathComponent().path
        let own = directory.lastPathComponent
        for run in ((try? fm.contentsOfDirectory(atPath: folder)) ?? []).sorted() where run != own {
            let source = folder + "/" + run + "/" + layout.relativeTaskFile(task.id)
            guard Self.holds(source, task: task.id, identity: identity), link(source, target) == 0 else { continue }
            guard Self.holds(target, task: task.id, identity: identity) else {
                unlink(target)
                continue
            }
            Self.syncDirectory(layout.tasksDirectory)
            // This run's own unfinished state of the task, as the task itself removes it once done.
            try? fm.removeItem(atPath: layout.checkpointDirectory(task.id))
            try? fm.removeItem(atPath: layout.partialFile(task.id))
            reused[task.id] = run
            return run
        }
        return nil
    }

    /// fsync(2) of a directory, so that a new link survives a crash (best effort: the link is
    /// only a shortcut, a lost one means the task runs again).
    private static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// Whether `path` is a finished task file of `task` stamped with `identity`.
    static func holds(_ path: String, task: String, identity: String) -> Bool {
        guard FileManager.default.fileExists(atPath: path), let file = try? H5File.open(path) else { return false }
        return (try? file.stringAttribute("format")) == "moe-run/1" && (try? file.stringAttribute("kind")) == "task"
            && (try? file.stringAttribute("task")) == task && (try? file.stringAttribute(TaskIdentity.attribute)) == identity
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
