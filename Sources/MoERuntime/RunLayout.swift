import Foundation
import MoEHDF5
import MoECore
import MoESpec

/// Where a run's files live (ARCHITECTURE §5.2):
///
///     <output>/<spec name>/<run-id>/run.h5, log.txt, tasks/<task>.h5,
///     tasks/<task>.checkpoints/<step>.h5 (while a training task runs)
///
/// The run id is the first 12 hex digits of the SHA-256 of the resolved spec with `output.dir`
/// and `parallelism.workers` neutralised, so rerunning the same experiment finds the same
/// directory wherever results go and however many workers run it.
public struct RunLayout: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    public init(spec: ExperimentSpec, outputRoot: String) {
        directory = (outputRoot as NSString).appendingPathComponent(spec.name) + "/" + RunLayout.runID(spec)
    }

    /// Stable hash of everything that determines the results: the resolved spec without
    /// `output.dir` (where results go) and `parallelism.workers` (how many processes run the
    /// tasks, which does not change a single bit of them), so `--out` and `--workers` do not
    /// start a new run and `--resume` finds the old one. In `data`, `expert` and `pipeline` mode
    /// the workers share one task and their number changes how sums are rounded, so it stays.
    public static func runID(_ spec: ExperimentSpec) -> String {
        var s = spec
        s.output.dir = ""
        if s.parallelism.mode == .none || s.parallelism.mode == .branch { s.parallelism.workers = 1 }
        return String(SHA256.hex(s.resolvedYAML()).prefix(12))
    }

    public var runFile: String { directory + "/run.h5" }
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

    /// Creates the run and task directories.
    public func create() throws {
        do {
            try FileManager.default.createDirectory(atPath: tasksDirectory, withIntermediateDirectories: true)
        } catch {
            throw RuntimeError.io(path: directory, message: "cannot create the run directory: \(error.localizedDescription)")
        }
    }
}

extension H5Location {
    /// The attributes every task file starts with: `format = "moe-run/1"`, `kind` (`task` for a
    /// finished task file, `partial` for a training task's in-progress state) and `task` (its id).
    func setTaskAttributes(_ task: String, partial: Bool = false) throws {
        try setAttribute("format", "moe-run/1")
        try setAttribute("kind", partial ? "partial" : "task")
        try setAttribute("task", task)
    }
}
