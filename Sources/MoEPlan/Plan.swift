import MoESpec

/// One unit of work in an execution plan: it reads the outputs of the tasks it depends on and
/// writes exactly one file, `tasks/<id>.h5`, atomically.
public struct PlanTask: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// Generate or load the data set, split it, fit the standardisation.
        case data
        /// Train a dense model first, to be upcycled (`replicate`) or moefied (`neurons`) into the
        /// MoE model (`split.pretrain_epochs`), or the seed model of `branch`.
        case pretrain
        /// Train the model (dense, or with MoE blocks) with checkpoints; with `split.strategy:
        /// branch`, one expert (`expert-<i>`) on its shard.
        case train
        /// Fuse the branch experts into one model (`fusion.method`, weight-space methods), with
        /// the evidence of issue 6: every model's metrics, interpolation curves and loss barriers.
        case fuse
        /// Train the fused (or stacked) model further on the full training split (`fusion.finetune`).
        case finetune
        /// Evaluate the trained model(s) on the requested splits.
        case evaluate
    }

    public var id: String
    public var kind: Kind
    /// Ids of the tasks whose outputs this task reads.
    public var dependsOn: [String]
    /// Worker processes the task occupies.
    public var workers: Int
    /// What the task reads: `FILE:OBJECT` references to other tasks' outputs (or a data file).
    public var inputs: [String]
    /// The file the task writes, relative to the run directory.
    public var output: String
    /// One line for people.
    public var summary: String

    enum CodingKeys: String, CodingKey {
        case id, kind, workers, inputs, output, summary
        case dependsOn = "depends_on"
    }
}

/// An execution plan: a DAG of tasks in a topological order (every task after its dependencies).
public struct Plan: Codable, Equatable, Sendable {
    public var name: String
    public var tasks: [PlanTask]

    public func task(_ id: String) -> PlanTask? { tasks.first { $0.id == id } }

    /// The plan as pretty-printed JSON with sorted keys (stored in `run.h5:/plan`).
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    /// A readable listing, one task per line with its dependencies, then its inputs and output.
    public func text() -> String {
        var lines = ["plan for \(name): \(tasks.count) task\(tasks.count == 1 ? "" : "s")"]
        let width = tasks.map(\.id.count).max() ?? 0
        for (i, t) in tasks.enumerated() {
            let deps = t.dependsOn.isEmpty ? "" : "  after " + t.dependsOn.joined(separator: ", ")
            lines.append("  \(i + 1). \(t.id.padding(toLength: width, withPad: " ", startingAt: 0))  [\(t.kind.rawValue), \(t.workers) worker\(t.workers == 1 ? "" : "s")]  \(t.summary)\(deps)")
            for input in t.inputs { lines.append("       reads  \(input)") }
            lines.append("       writes \(t.output)")
        }
        return lines.joined(separator: "\n")
    }
}

import Foundation
