import MoESpec

extension Planner {
    /// Block ranges of the stages of `split.strategy: layerwise`: `model.blocks` blocks cut into
    /// `experts` contiguous stages as evenly as possible, the first `blocks mod experts` stages
    /// one block longer (the rule of `StagePartition.ranges`, which trains them).
    public static func layerwiseStages(_ spec: ExperimentSpec) -> [ClosedRange<Int>] {
        let (b, e) = (spec.model.blocks, max(spec.experts, 1))
        var start = 0
        return (0..<e).map { s in
            let size = b / e + (s < b % e ? 1 : 0)
            defer { start += size }
            return start...(start + size - 1)
        }
    }

    /// "layer-wise local training of 2 stages (blocks 0-1, 2-3), …" (`train.local`) or "GPipe
    /// pipeline training of 4 stages …" for the `train` task.
    static func layerwiseSummary(_ spec: ExperimentSpec) -> String {
        let stages = layerwiseStages(spec)
        let blocks = stages.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }
        if !spec.train.local {
            let where_ = spec.parallelism.mode == .pipeline ? "over \(spec.parallelism.workers) workers" : "in one process"
            return "GPipe pipeline training of \(stages.count) stage\(stages.count == 1 ? "" : "s") (blocks \(blocks.joined(separator: ", "))) "
                + "of a dense \(spec.modelWords()) \(where_), \(spec.parallelism.microbatches) micro-batches per batch, end to end; "
                + "\(spec.trainingLength(epochs: spec.train.epochs)), \(spec.train.optimizer.rawValue) lr \(spec.train.lr)"
        }
        return "layer-wise local training of \(stages.count) stage\(stages.count == 1 ? "" : "s") (blocks \(blocks.joined(separator: ", "))) "
            + "of a dense \(spec.modelWords()), each stage on its own auxiliary head, then stacked; "
            + "\(spec.trainingLength(epochs: spec.train.epochs)), \(spec.train.optimizer.rawValue) lr \(spec.train.lr)"
    }
}
