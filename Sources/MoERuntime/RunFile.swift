import Foundation
import MoECore
import MoEHDF5
import MoEPlan
import MoESpec

/// Writes `run.h5`, the index of a run (ARCHITECTURE §5.2): attributes, the resolved spec, the
/// plan, external links to the task files, data splits and models, and the summary metrics.
/// It is rewritten whole (tmp file, fsync, rename) whenever the status changes, never in place.
enum RunFile {
    static let version = "0.1.0"
    /// Attribute: the absolute directory relative paths in `/spec` are resolved against.
    static let specDirectoryAttribute = "spec_directory"

    struct Header {
        var status: String
        var started: String
        var finished: String?
        /// Why a `failed` run failed: the line the CLI printed (attribute `error`, absent otherwise).
        var error: String?
    }

    /// `warnings`: the spec's keys without effect, one line each, stored joined by newlines in the
    /// `warnings` attribute ("" when there are none).
    /// `reused`: the tasks the task cache took from other runs (task id → run id), written as
    /// `/reused/<task>` (`TaskCache`).
    static func write(spec: ExperimentSpec, plan: Plan, layout: RunLayout, specDirectory: String, warnings: [String] = [],
                      reused: [String: String] = [:], header: Header) throws {
        let yaml = spec.resolvedYAML()
        try H5File.createAtomically(layout.runFile) { file in
            try file.setAttribute("format", "moe-run/1")
            try file.setAttribute("kind", "run")
            try file.setAttribute("name", spec.name)
            try file.setAttribute("status", header.status)
            try file.setAttribute("seed", Int64(spec.seed))
            try file.setAttribute("spec_sha256", SHA256.hex(yaml))
            try file.setAttribute("moe_run_version", version)
            try file.setAttribute("started", header.started)
            try file.setAttribute("finished", header.finished ?? "")
            if let error = header.error { try file.setAttribute("error", error) }
            try file.setAttribute(specDirectoryAttribute, specDirectory)
            try file.setAttribute("warnings", warnings.joined(separator: "\n"))
            try file.createString("spec", yaml)
            try file.createString("plan", plan.json())
            if !reused.isEmpty {
                let group = try file.createGroup(TaskCache.group)
                for (task, run) in reused.sorted(by: { $0.key < $1.key }) { try group.createString(task, run) }
                group.close()
            }
            let fm = FileManager.default
            for task in plan.tasks where fm.fileExists(atPath: layout.taskFile(task.id)) {
                try file.createExternalLink("tasks/" + task.id, file: layout.relativeTaskFile(task.id), object: "/")
            }
            if fm.fileExists(atPath: layout.taskFile("data")) {
                for split in ["train", "val", "test"] {
                    try file.createExternalLink("data/" + split, file: layout.relativeTaskFile("data"), object: "/data/" + split)
                }
            }
            // Fusion: `fused` before fine-tuning (the fuse task's, or layerwise's stacked model),
            // `final` what the run delivers (fine-tuned if any, else fused; else the trained model).
            let fusedTask = fm.fileExists(atPath: layout.taskFile("fuse")) ? "fuse" : spec.fusion.finetune != nil ? "train" : nil
            if let fusedTask, fm.fileExists(atPath: layout.taskFile(fusedTask)) {
                try file.createExternalLink("models/fused", file: layout.relativeTaskFile(fusedTask), object: "/model")
            }
            if let finalTask = ["finetune", "fuse", "train"].first(where: { fm.fileExists(atPath: layout.taskFile($0)) }),
               finalTask != "train" || spec.fusion.finetune == nil {
                try file.createExternalLink("models/final", file: layout.relativeTaskFile(finalTask), object: "/model")
                // The best model by `eval.metric` of the training task that delivers `final`.
                if finalTask != "fuse", try H5File.open(layout.taskFile(finalTask)).exists("best") {
                    try file.createExternalLink("models/best", file: layout.relativeTaskFile(finalTask), object: "/best")
                }
            }
            if spec.split.strategy == .branch, !spec.split.pretrains, fm.fileExists(atPath: layout.taskFile("fuse")),
               try H5File.open(layout.taskFile("fuse")).exists("seed") {
                try file.createExternalLink("models/seed", file: layout.relativeTaskFile("fuse"), object: "/seed")
            }
            // The pre-trained dense model: `dense` (upcycled or moefied), `seed` of `branch`.
            if fm.fileExists(atPath: layout.taskFile("pretrain")) {
                let name = spec.split.strategy == .branch ? "models/seed" : "models/dense"
                try file.createExternalLink(name, file: layout.relativeTaskFile("pretrain"), object: "/model")
            }
            for task in plan.tasks where task.id.hasPrefix("expert-") && fm.fileExists(atPath: layout.taskFile(task.id)) {
                try file.createExternalLink("models/" + task.id, file: layout.relativeTaskFile(task.id), object: "/model")
            }
            if fm.fileExists(atPath: layout.taskFile("evaluate")) {
                let eval = try H5File.open(layout.taskFile("evaluate"))
                if eval.exists("summary") {
                    for model in try eval.openGroup("summary").children() {
                        try copyScalars(eval, "summary/" + model, to: file)
                    }
                }
            }
        }
    }

    /// Copies the float64 scalars under `path` of `source` to the same paths in `file`, with the
    /// sub-groups (a language model's `domains/<name>/`).
    private static func copyScalars(_ source: H5File, _ path: String, to file: H5File) throws {
        for name in try source.openGroup(path).children() {
            let child = path + "/" + name
            if source.kind(of: child) == .group {
                try copyScalars(source, child, to: file)
            } else {
                try file.createScalar(child, try source.readScalar(child, as: Double.self))
            }
        }
    }

    /// The status and start time of an existing run file, if there is one.
    static func readHeader(_ layout: RunLayout) -> Header? {
        guard FileManager.default.fileExists(atPath: layout.runFile),
              let file = try? H5File.open(layout.runFile),
              let status = try? file.stringAttribute("status") else { return nil }
        return Header(status: status, started: (try? file.stringAttribute("started")) ?? now(), finished: nil)
    }

    static func now() -> String { RunLog.timestamp() }
}
