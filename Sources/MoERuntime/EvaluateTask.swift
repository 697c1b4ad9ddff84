import MoEData
import MoEHDF5
import MoEPlan
import MoENN
import MoESpec
import MoEStore

/// The `evaluate` task: each model the run delivers on each split of `eval.splits`; writes
/// `tasks/evaluate.h5` with `/summary/<model>/{<split>_loss, <split>_accuracy}` (float64
/// scalars) and the attribute `batch_size` (`eval.batch_size`: MoE capacity is counted per batch,
/// so an independent re-computation must batch the same way). The models: `final` (the `train`
/// task's; with a `pretrain` task also `dense`, the model upcycled or moefied), or with
/// `split.strategy: branch` every `expert-<i>` and, when pre-trained, `seed`;
/// when the delivered model comes from a training task, also `best`, that task's best model by
/// `eval.metric` (`/best`, `BestModel`).
enum EvaluateTask {
    /// (model name in `/summary`, task whose `/model` it is).
    /// With fusion also `fused` (the `fuse` task's model, or the stacked `train` model before
    /// fine-tuning) and `final` (the `finetune` task's model, else the fused one).
    static func models(_ spec: ExperimentSpec) -> [(name: String, task: String)] {
        let delivered = deliveredModels(spec)
        guard let final = delivered.first(where: { $0.name == "final" }), final.task != "fuse" else { return delivered }
        return delivered + [("best", final.task)]
    }

    /// The checkpoint group of model `name` in its task file: `/best` for `best`, else `/model`.
    static func group(of name: String) -> String { name == "best" ? "best" : "model" }

    private static func deliveredModels(_ spec: ExperimentSpec) -> [(name: String, task: String)] {
        let finetuned = spec.fusion.finetune != nil
        if spec.split.strategy == .replicate, spec.fusion.method == .average {
            return [("moe", "train"), ("fused", "fuse"), ("final", finetuned ? "finetune" : "fuse")]
        }
        guard spec.split.strategy == .branch else {
            // Upcycled or moefied from a pre-trained dense model: that model too (`dense`), the
            // baseline the MoE should beat.
            let dense = spec.split.pretrains ? [("dense", "pretrain")] : []
            return dense + (finetuned ? [("fused", "train"), ("final", "finetune")] : [("final", "train")])
        }
        let experts = (0..<spec.experts).map { (Planner.expertID($0), Planner.expertID($0)) }
        let fusion = spec.fusion.method == .none ? [] : [("fused", "fuse"), ("final", finetuned ? "finetune" : "fuse")]
        return (spec.split.pretrains ? [("seed", "pretrain")] : []) + experts + fusion
    }

    static func run(spec: ExperimentSpec, layout: RunLayout, log: RunLog) throws {
        var results: [(String, Double)] = []
        for (name, task) in models(spec) {
            let file = try H5File.open(layout.taskFile(task))
            if name == "best", !file.exists("best") { continue }   // the task never validated
            if EnsembleModel.isEnsemble(file, at: "model") {
                let (ensemble, _) = try EnsembleModel.load(from: file, at: "model")
                for split in spec.eval.splits {
                    let (data, _) = try DataTask.load(split.rawValue, layout: layout)
                    guard data.count > 0 else { continue }
                    let r = ensemble.evaluate(x: data.x, labels: data.y, batchSize: spec.eval.batchSize)
                    results.append(("\(name)/\(split.rawValue)_loss", r.loss))
                    results.append(("\(name)/\(split.rawValue)_accuracy", r.accuracy))
                }
                continue
            }
            let (model, _) = try Checkpoint.loadModel(from: file, at: group(of: name), for: "evaluation on feature data")
            for split in spec.eval.splits {
                let (data, _) = try DataTask.load(split.rawValue, layout: layout)
                guard data.count > 0 else { continue }
                try TrainTask.checkDomains(model.config, data)
                let r = model.evaluate(x: data.x, labels: data.y, domains: data.domain, batchSize: spec.eval.batchSize)
                results.append(("\(name)/\(split.rawValue)_loss", r.loss))
                results.append(("\(name)/\(split.rawValue)_accuracy", r.accuracy))
            }
        }
        try H5File.createAtomically(layout.taskFile("evaluate")) { file in
            try file.setTaskAttributes("evaluate")
            try file.setAttribute("batch_size", Int64(spec.eval.batchSize))
            for (name, value) in results { try file.createScalar("summary/" + name, value) }
        }
        let best = results.filter { $0.0.hasPrefix("best/") }
        results.removeAll { $0.0.hasPrefix("best/") }
        let single = results.allSatisfy { $0.0.hasPrefix("final/") }
        if single { results = results.map { (String($0.0.dropFirst("final/".count)), $0.1) } }
        log.info("evaluate: " + results.map { "\($0.0) \(formatMetric($0.1))" }.joined(separator: ", "))
        if !best.isEmpty { log.info("evaluate: " + best.map { "\($0.0) \(formatMetric($0.1))" }.joined(separator: ", ")) }
    }
}

func formatMetric(_ v: Double) -> String { String(format: "%.4f", v) }
