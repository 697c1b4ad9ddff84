import Foundation
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
        let splits = try spec.eval.splits.compactMap { split -> (name: String, data: Dataset)? in
            let (data, _) = try DataTask.load(split.rawValue, layout: layout)
            return data.count > 0 ? (split.rawValue, data) : nil
        }
        let measured = try fuseMetrics(layout)
        for (name, task) in models(spec) {
            let file = try H5File.open(layout.taskFile(task))
            if name == "best", !file.exists("best") { continue }   // the task never validated
            if EnsembleModel.isEnsemble(file, at: "model") {
                let (ensemble, _) = try EnsembleModel.load(from: file, at: "model")
                for (split, data) in splits {
                    let r = ensemble.evaluate(x: data.x, labels: data.y, batchSize: spec.eval.batchSize)
                    results.append(("\(name)/\(split)_loss", r.loss))
                    results.append(("\(name)/\(split)_accuracy", r.accuracy))
                }
                continue
            }
            let known = measured["\(task)/\(group(of: name))"] ?? [:]
            var model: ResidualMLP?
            for (split, data) in splits {
                if let loss = known["\(split)_loss"], let accuracy = known["\(split)_accuracy"] {
                    results += [("\(name)/\(split)_loss", loss), ("\(name)/\(split)_accuracy", accuracy)]
                    continue
                }
                if model == nil { model = try Checkpoint.loadModel(from: file, at: group(of: name), for: "evaluation on feature data").0 }
                try TrainTask.checkDomains(model!.config, data)
                let r = model!.evaluate(x: data.x, labels: data.y, domains: data.domain, batchSize: spec.eval.batchSize)
                results.append(("\(name)/\(split)_loss", r.loss))
                results.append(("\(name)/\(split)_accuracy", r.accuracy))
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

extension EvaluateTask {
    /// What the fuse task already measured (`/fusion/metrics/<name>/{val,test}_{loss,accuracy}`),
    /// by the checkpoint it measured (the group's `model` attribute, `<task>/<group>`): the same
    /// model on the same split in the same batches (`eval.batch_size`) gives the same bits, so
    /// the experts and the fused model are not forwarded a second time. Empty without a fuse
    /// task, or for a fuse.h5 written before the attribute existed.
    static func fuseMetrics(_ layout: RunLayout) throws -> [String: [String: Double]] {
        let path = layout.taskFile("fuse")
        guard FileManager.default.fileExists(atPath: path) else { return [:] }
        let file = try H5File.open(path)
        guard file.exists("fusion/metrics") else { return [:] }
        var out: [String: [String: Double]] = [:]
        for name in try file.children(of: "fusion/metrics") {
            let group = try file.openGroup("fusion/metrics/\(name)")
            guard group.hasAttribute("model") else { continue }
            var values: [String: Double] = [:]
            for key in try group.children() where group.kind(of: key) != .group {
                values[key] = try group.readScalar(key, as: Double.self)
            }
            out[try group.stringAttribute("model")] = values
        }
        return out
    }
}

func formatMetric(_ v: Double) -> String { String(format: "%.4f", v) }
