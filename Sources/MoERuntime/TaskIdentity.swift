import Foundation
import MoECore
import MoEPlan
import MoESpec

/// The identity of a task: what its output file is a function of, hashed (SHA-256, 64 hex
/// digits). Two tasks with the same identity write the same bits (ARCHITECTURE §6: same inputs,
/// same bits), so the task cache (`TaskCache`) may hand one's file to the other.
///
/// The identity text holds, one line each:
/// - the scheme of this text (`scheme`) and the moe-run version;
/// - the task's id (a branch expert's index picks its shard and RNG streams) and kind, and the
///   version of its kind's code (`codeVersions`);
/// - the SHA-256 of the content of every file the spec names (`data.path`, a file or a text
///   corpus folder, and `split.upcycle_from`), so an edited data file is a different input;
/// - the identities of the tasks it depends on (each of which holds its own upstream's, so the
///   whole history is in it);
/// - the task's slice of the spec: `ExperimentSpec.significantYAML` (the run identity's entries:
///   no result-neutral keys, no keys at their default) without the sections the kind never
///   reads (`leftOut`).
///
/// When unsure whether a key matters, it stays in: a key that is in but does not matter only
/// costs a recomputation, a key that is out but matters would hand out wrong results.
public enum TaskIdentity {
    /// The version of the identity text; bump it when what goes into it changes.
    public static let scheme = 1

    /// The version of each task kind's code. **Bump a kind's number whenever a change to moe-run
    /// can change any bit that kind writes** (`make check-golden` failing is the sign); the
    /// cache then stops handing out files written by the older code. `TaskIdentityTests` pins
    /// the numbers, so they change only on purpose.
    public static let codeVersions: [PlanTask.Kind: Int] = [
        .data: 1, .pretrain: 1, .train: 1, .fuse: 1, .finetune: 1, .evaluate: 1,
    ]

    /// The attribute of a finished task file that holds the identity of the task that wrote it.
    public static let attribute = "task_identity"

    /// The task this process is running and its identity, stamped on its finished task file by
    /// `setTaskAttributes` (set by `Worker.perform` around the task).
    nonisolated(unsafe) static var stamp: (task: String, identity: String)?

    /// The spec sections `task` never reads, left out of its slice: the `fusion` section for the
    /// data, the pre-training and the branch experts (they are trained before and apart from any
    /// fusion: `TrainTask` and `LMTrainTask` drop the MoE config for every role but `train` and a
    /// `mix` fine-tune). Everything else stays, `eval` too (training tasks evaluate with
    /// `eval.batch_size`).
    public static func leftOut(_ task: PlanTask) -> Set<String> {
        switch task.kind {
        case .data, .pretrain: return ["fusion"]
        case .train where task.id.hasPrefix("expert-"): return ["fusion"]
        default: return []
        }
    }

    /// The identity text of `task` (see the type's documentation); `upstream` maps each
    /// dependency to its identity, `files` each file the spec names to its content hash.
    public static func text(of task: PlanTask, spec: ExperimentSpec, upstream: [String: String], files: [(path: String, sha256: String)],
                            codeVersions: [PlanTask.Kind: Int] = codeVersions) -> String {
        var lines = ["# moe-run task identity, scheme \(scheme)", "moe-run \(RunFile.version)",
                     "task: \(task.id)", "kind: \(task.kind.rawValue)", "code: \(task.kind.rawValue) \(codeVersions[task.kind] ?? 0)"]
        lines += files.map { "file: \($0.path) sha256 \($0.sha256)" }
        lines += task.dependsOn.sorted().map { "after: \($0) \(upstream[$0] ?? "?")" }
        lines.append("spec:")
        return lines.joined(separator: "\n") + "\n" + spec.significantYAML(leavingOut: leftOut(task), initFromDigest: RunLayout.initFromDigest(spec))
    }

    /// The identity of every task of `plan` (tasks in topological order, as the planner gives them).
    public static func identities(_ plan: Plan, spec: ExperimentSpec, codeVersions: [PlanTask.Kind: Int] = codeVersions) throws -> [String: String] {
        let files = try namedFiles(spec).map { (path: $0, sha256: try contentHash($0)) }
        var ids: [String: String] = [:]
        for task in plan.tasks {
            ids[task.id] = SHA256.hex(text(of: task, spec: spec, upstream: ids, files: files, codeVersions: codeVersions))
        }
        return ids
    }

    /// The files the spec names (absolute paths): the data file or text corpus, the checkpoint
    /// to upcycle from.
    static func namedFiles(_ spec: ExperimentSpec) -> [String] {
        var paths: [String] = []
        switch spec.data.source {
        case .synthetic: break
        case .file(let f): paths.append(f.resolvedPath)
        case .text(let t): paths.append(t.resolvedPath)
        }
        if let upcycle = spec.split.resolvedUpcycleFrom { paths.append(upcycle) }
        return paths
    }

    /// SHA-256 of a file's bytes; of a folder, of the sorted relative paths and contents of every
    /// regular file below it (a text corpus).
    static func contentHash(_ path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw RuntimeError.io(path: path, message: "cannot read it (task identity): no such file or directory")
        }
        guard isDirectory.boolValue else { return SHA256.hex(try bytes(path)) }
        var hasher = SHA256()
        let files = (FileManager.default.enumerator(atPath: path)?.compactMap { $0 as? String } ?? []).sorted()
        for relative in files {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path + "/" + relative, isDirectory: &isFolder), !isFolder.boolValue else { continue }
            let content = try bytes(path + "/" + relative)
            hasher.update(Array("\(relative)\n\(content.count)\n".utf8))
            hasher.update(content)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    private static func bytes(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RuntimeError.io(path: path, message: "cannot read it (task identity)")
        }
        return [UInt8](data)
    }
}
