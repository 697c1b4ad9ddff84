import Foundation
import MoEHDF5
import MoECore
import MoESpec

/// Where a run's files live (ARCHITECTURE §5.2):
///
///     <output>/<spec name>/<run-id>/run.lock, run.h5, log.txt, tasks/<task>.h5,
///     tasks/<task>.checkpoints/<step>.h5 (while a training task runs)
///
/// The run id is the first 12 hex digits of the SHA-256 of the spec's identity
/// (`ExperimentSpec.identityYAML`: the resolved spec without keys that cannot change the results
/// and without keys equal to their default), so rerunning the same experiment finds the same
/// directory wherever results go, however many workers run it, and after moe-run gains new keys.
public struct RunLayout: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    /// The directory of `spec`'s run under the current id scheme (see `locate` for runs made by
    /// an older moe-run).
    public init(spec: ExperimentSpec, outputRoot: String) {
        directory = RunLayout.experimentDirectory(spec, outputRoot) + "/" + RunLayout.runID(spec)
    }

    private static func experimentDirectory(_ spec: ExperimentSpec, _ outputRoot: String) -> String {
        (outputRoot as NSString).appendingPathComponent(spec.name)
    }

    /// The run id: 12 hex digits of the SHA-256 of `spec.identityYAML()`, with the content
    /// hash of the `train.init_from` checkpoint in place of its path.
    public static func runID(_ spec: ExperimentSpec) -> String {
        String(SHA256.hex(spec.identityYAML(initFromDigest: initFromDigest(spec))).prefix(12))
    }

    /// SHA-256 (hex) of the bytes of the `train.init_from` checkpoint file; nil without one.
    /// A file that cannot be read hashes as its path (the run then fails on it with a clear error).
    static func initFromDigest(_ spec: ExperimentSpec) -> String? {
        guard let path = spec.train.resolvedInitFrom else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { return "unreadable:" + path }
        return SHA256.hex(Array(data))
    }

    /// The run id of moe-run before run ids became stable (identity scheme 1): the whole resolved
    /// spec with `output.dir` emptied and `parallelism.workers` set to 1 in modes `none` and
    /// `branch`, and without the keys added since (at their defaults, `keysNewerThanScheme1`).
    /// Kept so that runs made then are still found (`locate`).
    public static func legacyRunID(_ spec: ExperimentSpec) -> String {
        var s = spec
        s.output.dir = ""
        if s.workersAreResultNeutral { s.parallelism.workers = 1 }
        return String(SHA256.hex(s.resolvedYAML(droppingDefaultsOf: ExperimentSpec.keysNewerThanScheme1)).prefix(12))
    }

    /// The run directory of `spec`: the current id's, unless only a directory made by an older
    /// moe-run (scheme 1, `legacyRunID`) exists for it, in which case that run is continued,
    /// reused or redone where it is (`isLegacy` says so), rather than silently recomputed.
    public static func locate(spec: ExperimentSpec, outputRoot: String) -> (layout: RunLayout, isLegacy: Bool) {
        let current = RunLayout(spec: spec, outputRoot: outputRoot)
        let legacy = RunLayout(directory: experimentDirectory(spec, outputRoot) + "/" + legacyRunID(spec))
        let fm = FileManager.default
        if legacy.directory != current.directory, !fm.fileExists(atPath: current.directory),
           fm.fileExists(atPath: legacy.runFile) {
            return (legacy, true)
        }
        return (current, false)
    }

    public var runFile: String { directory + "/run.h5" }
    /// Held with flock(2) by the process that runs the directory (`RunLock`); never deleted.
    public var lockFile: String { directory + "/run.lock" }
    public var logFile: String { directory + "/log.txt" }
    public var tasksDirectory: String { directory + "/tasks" }
    /// The finished output of a task.
    public func taskFile(_ id: String) -> String { tasksDirectory + "/\(id).h5" }
    /// The in-progress state of a training task: one file per kept checkpoint, `<step>.h5`
    /// (see `CheckpointStore`), removed when the task file is written.
    public func checkpointDirectory(_ id: String) -> String { tasksDirectory + "/\(id).checkpoints" }
    /// The in-progress state of a training task as moe-run wrote it before one file per
    /// checkpoint (all kept checkpoints in one file); still resumed from.
    public func partialFile(_ id: String) -> String { tasksDirectory + "/\(id).partial.h5" }
    /// A task file's path relative to the run directory (for external links).
    public func relativeTaskFile(_ id: String) -> String { "tasks/\(id).h5" }

    /// Task `id`'s file in every other run of this run's experiment folder (`<output>/<name>/*`),
    /// by run id in name order: where the task cache and the fuse task's evidence look for work
    /// already done. Files that do not exist are left out; names starting with "." are no runs.
    func sameTaskInOtherRuns(_ id: String) -> [(run: String, path: String)] {
        let me = URL(fileURLWithPath: directory).standardizedFileURL
        let folder = me.deletingLastPathComponent().path
        return ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
            .filter { $0 != me.lastPathComponent && !$0.hasPrefix(".") }
            .map { (run: $0, path: folder + "/" + $0 + "/" + relativeTaskFile(id)) }
            .filter { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// Whether the directory holds anything of a run: anything but its lock file.
    func holdsRun() -> Bool {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return entries.contains { $0 != "run.lock" }
    }

    /// Deletes everything in the directory but the lock file (`--force`, with the lock held: the
    /// lock file must stay, or a process that opened it before could lock a deleted file while
    /// a third locks a new one).
    func removeAllButLock() throws {
        let fm = FileManager.default
        for entry in (try? fm.contentsOfDirectory(atPath: directory)) ?? [] where entry != "run.lock" {
            do {
                try fm.removeItem(atPath: directory + "/" + entry)
            } catch {
                throw RuntimeError.io(path: directory + "/" + entry, message: "cannot delete it (--force): \(error.localizedDescription)")
            }
        }
    }

    /// Creates the run and task directories.
    public func create() throws {
        try Self.makeDirectory(tasksDirectory, reportedAs: directory)
    }

    /// Creates `path` and its parents (`mkdir -p`); a failure names `name` and gives the system's
    /// reason ("read-only file system"), which Foundation's error would only paraphrase.
    static func makeDirectory(_ path: String, reportedAs name: String) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw RuntimeError.io(path: name, message: "cannot create the run directory: \(systemErrorText(errno))")
            }
        }
    }
}

extension H5Location {
    /// The attributes every task file starts with: `format = "moe-run/1"`, `kind` (`task` for a
    /// finished task file, `partial` for a training task's in-progress state), `task` (its id)
    /// and, on a finished task file written by a worker, `task_identity` (`TaskIdentity`).
    func setTaskAttributes(_ task: String, partial: Bool = false) throws {
        try setAttribute("format", "moe-run/1")
        try setAttribute("kind", partial ? "partial" : "task")
        try setAttribute("task", task)
        if !partial, let stamp = TaskIdentity.stamp, stamp.task == task {
            try setAttribute(TaskIdentity.attribute, stamp.identity)
        }
    }
}
