import MoEData
import MoEHDF5
import MoENN
import MoESpec
import MoEStore

/// The `evaluate` task: the final model on each split of `eval.splits`; writes
/// `tasks/evaluate.h5` with `/summary/final/{<split>_loss, <split>_accuracy}` (float64 scalars)
/// and the attribute `batch_size` (`eval.batch_size`: MoE capacity is counted per batch, so an
/// independent re-computation must batch the same way).
enum EvaluateTask {
    static func run(spec: ExperimentSpec, layout: RunLayout, log: RunLog) throws {
        let trainFile = try H5File.open(layout.taskFile("train"))
        let (model, _) = try Checkpoint.loadModel(from: trainFile, at: "model")
        var results: [(String, Double)] = []
        for split in spec.eval.splits {
            let (data, _) = try DataTask.load(split.rawValue, layout: layout)
            guard data.count > 0 else { continue }
            try TrainTask.checkDomains(model.config, data)
            let r = model.evaluate(x: data.x, labels: data.y, domains: data.domain, batchSize: spec.eval.batchSize)
            results.append(("\(split.rawValue)_loss", r.loss))
            results.append(("\(split.rawValue)_accuracy", r.accuracy))
        }
        try H5File.createAtomically(layout.taskFile("evaluate")) { file in
            try file.setAttribute("format", "moe-run/1")
            try file.setAttribute("kind", "task")
            try file.setAttribute("task", "evaluate")
            try file.setAttribute("batch_size", Int64(spec.eval.batchSize))
            for (name, value) in results { try file.createScalar("summary/final/" + name, value) }
        }
        log.info("evaluate: " + results.map { "\($0.0) \(formatMetric($0.1))" }.joined(separator: ", "))
    }
}

func formatMetric(_ v: Double) -> String { String(format: "%.4f", v) }
