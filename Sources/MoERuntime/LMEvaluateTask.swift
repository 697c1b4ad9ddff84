import Foundation
import MoEData
import MoEHDF5
import MoENN
import MoEStore

/// The `evaluate` task of a language model: each model the run delivers (`EvaluateTask.models`:
/// `final`, the `train` task's, and `dense`, the `pretrain` task's, when upcycled or moefied;
/// with `split.strategy: branch` every `expert-<i>`, the `seed` when pre-trained, and with
/// fusion `fused` and `final`) on each split of `eval.splits` by the §5.4
/// protocol (`LMScores`); writes `tasks/evaluate.h5` with
///
///     /summary/<model>/<split>_{loss, accuracy, bits_per_byte}                  (float64 scalars)
///     /summary/<model>/domains/<name>/<split>_{loss, accuracy, bits_per_byte}
///
/// and the attributes `batch_size` (windows per forward: MoE capacity is counted per forward)
/// and `context`.
enum LMEvaluateTask {
    static func run(splits: [TextSplit], batchSize: Int, models: [(name: String, task: String)] = [("final", "train")],
                    layout: RunLayout, log: RunLog) throws {
        let corpus = try TextDataTask.load(layout: layout)
        var results: [(String, Double)] = []
        var context = 0
        var scored: [(source: String, model: any TokenWindowScorer, scores: [TextSplit: LMScores])] = []
        for (name, task) in models {
            let file = try H5File.open(layout.taskFile(task))
            if name == "best", !file.exists("best") { continue }   // the task never validated
            let model = try loadScorer(from: file, at: EvaluateTask.group(of: name), file: layout.taskFile(task))
            context = model.config.context
            // A model already scored (`final` = `fused`: the same checkpoint; `best` taken at the
            // last step: the same bits), or one the fuse task scored, gets those scores: the
            // protocol is deterministic.
            let source = task + "/" + EvaluateTask.group(of: name)
            let known = scored.first { $0.source == source || sameWeights($0.model, model) }?.scores
            let earlier = try known ?? fuseScores(of: source, splits: splits, corpus: corpus, layout: layout)
            var scoresBySplit: [TextSplit: LMScores] = [:]
            var perDomain: [String] = []
            for split in splits {
                let scores = earlier?[split] ?? LMScores.score(model, corpus, split: split, batchSize: batchSize)
                scoresBySplit[split] = scores
                guard scores.overall.scored > 0 else { continue }
                results += LMScores.values(scores.overall, split: split.rawValue).map { ("\(name)/" + $0.0, $0.1) }
                for (domain, sums) in scores.domains where sums.scored > 0 {
                    results += LMScores.values(sums, split: split.rawValue).map { ("\(name)/domains/\(domain)/" + $0.0, $0.1) }
                    if split == .val { perDomain.append(String(format: "%@ %.3f", domain, LMScores.bitsPerByte(sums.meanLoss))) }
                }
            }
            if known == nil { scored.append((source, model, scoresBySplit)) }
            let prefix = models.filter({ $0.name != "best" }).count == 1 && name != "best" ? "" : "\(name): "
            let overall = results.filter { $0.0.hasPrefix(name + "/") && !$0.0.contains("/domains/") }
                .map { "\($0.0.dropFirst(name.count + 1)) \(formatMetric($0.1))" }
            log.info("evaluate: " + prefix + overall.joined(separator: ", "))
            if !perDomain.isEmpty { log.info("evaluate: \(prefix)val bits per byte by domain: " + perDomain.joined(separator: ", ")) }
        }
        try H5File.createAtomically(layout.taskFile("evaluate")) { file in
            try file.setTaskAttributes("evaluate")
            try file.setAttribute("batch_size", Int64(batchSize))
            try file.setAttribute("context", Int64(context))
            for (name, value) in results { try file.createScalar("summary/" + name, value) }
        }
    }

    /// The §5.4 sums the fuse task measured on the checkpoint `source` (`<task>/<group>`), read
    /// from `tasks/fuse.h5:/fusion/metrics/<model>/sums/<split>` (`[domains, 3]`: Σ loss, correct,
    /// scored per domain, `FuseTask.writeMetrics`) when it holds every split of `splits`; nil
    /// otherwise. The fuse task scores with this task's protocol and `eval.batch_size`, and the
    /// overall sums are the domains' added in domain order as `LMScores.score` adds them, so these
    /// are the scores this task would compute, bit for bit.
    static func fuseScores(of source: String, splits: [TextSplit], corpus: TextCorpus, layout: RunLayout) throws -> [TextSplit: LMScores]? {
        let path = layout.taskFile("fuse")
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let file = try H5File.open(path)
        guard file.exists("fusion/metrics") else { return nil }
        for name in try file.children(of: "fusion/metrics") where file.exists("fusion/metrics/\(name)/sums") {
            let group = try file.openGroup("fusion/metrics/\(name)/sums")
            guard try group.stringAttribute("model") == source else { continue }
            var result: [TextSplit: LMScores] = [:]
            for split in splits {
                guard let scores = try readSums(group, split: split, domains: corpus.domains) else { return nil }
                result[split] = scores
            }
            return result
        }
        return nil
    }

    /// `LMScores` from a `sums` group's `<split>` dataset (`[domains, 3]`, `FuseTask.writeMetrics`),
    /// the overall sums added in domain order as `LMScores.score` adds them; nil when it is
    /// missing or of another shape.
    static func readSums(_ group: H5Group, split: TextSplit, domains: [String]) throws -> LMScores? {
        guard group.exists(split.rawValue) else { return nil }
        let (values, shape) = try group.read(split.rawValue, as: Double.self)
        guard shape == [domains.count, 3] else { return nil }
        var scores = LMScores()
        for (d, domain) in domains.enumerated() {
            let sums = ObjectiveSums(lossSum: values[3 * d], correct: Int(values[3 * d + 1]), scored: Int(values[3 * d + 2]))
            scores.overall += sums
            scores.domains.append((domain, sums))
        }
        return scores
    }

    /// Whether `a` and `b` score every window alike: the same object, or two transformer LMs of
    /// one configuration whose parameters and buffers hold the same bits.
    static func sameWeights(_ a: any TokenWindowScorer, _ b: any TokenWindowScorer) -> Bool {
        if a === b { return true }
        guard let a = a as? TransformerLM, let b = b as? TransformerLM, a.config == b.config else { return false }
        let x = a.parameters + a.buffers, y = b.parameters + b.buffers
        return x.count == y.count && zip(x, y).allSatisfy { p, q in
            p.name == q.name && p.value.shape == q.value.shape
                && memcmp(p.value.data, q.value.data, p.value.count * MemoryLayout<Float>.size) == 0
        }
    }

    /// The transformer LM stored at `path` of `file`; another kind is one line naming it.
    static func loadLM(from file: H5File, at path: String, file name: String) throws -> TransformerLM {
        let (model, _) = try Checkpoint.loadAnyModel(from: file, at: path)
        guard let lm = model as? TransformerLM else {
            throw RuntimeError.usage("\(name): the model at \(path) is of kind \(model.checkpointKind), not a transformer language model")
        }
        return lm
    }

    /// What the evaluate task scores: a transformer LM, or the BTM ensemble of LMs that
    /// `fusion.method: ensemble` stores; another kind is one line naming it.
    static func loadScorer(from file: H5File, at path: String, file name: String) throws -> any TokenWindowScorer {
        if let model = try Evaluation.loadTextModel(name, file: file, at: path) { return model }
        let kind = (try? Checkpoint.readKindAndConfig(from: file, at: path).kind) ?? "unknown"
        throw RuntimeError.usage("\(name): the model at \(path) is of kind \(kind), not a transformer language model")
    }
}
