import MoEData
import MoEHDF5
import MoENN
import MoEStore

/// The `evaluate` task of a language model: the `train` task's model on each split of
/// `eval.splits` by the §5.4 protocol (`LMScores`); writes `tasks/evaluate.h5` with
///
///     /summary/final/<split>_{loss, accuracy, bits_per_byte}                  (float64 scalars)
///     /summary/final/domains/<name>/<split>_{loss, accuracy, bits_per_byte}
///
/// and the attributes `batch_size` (windows per forward: MoE capacity is counted per forward)
/// and `context`.
enum LMEvaluateTask {
    static func run(splits: [TextSplit], batchSize: Int, layout: RunLayout, log: RunLog) throws {
        let corpus = try TextDataTask.load(layout: layout)
        let model = try loadLM(from: try H5File.open(layout.taskFile("train")), at: "model", file: layout.taskFile("train"))
        var results: [(String, Double)] = []
        var perDomain: [String] = []
        for split in splits {
            let scores = LMScores.score(model, corpus, split: split, batchSize: batchSize)
            guard scores.overall.scored > 0 else { continue }
            results += LMScores.values(scores.overall, split: split.rawValue).map { ("final/" + $0.0, $0.1) }
            for (name, sums) in scores.domains where sums.scored > 0 {
                results += LMScores.values(sums, split: split.rawValue).map { ("final/domains/\(name)/" + $0.0, $0.1) }
                if split == .val { perDomain.append(String(format: "%@ %.3f", name, LMScores.bitsPerByte(sums.meanLoss))) }
            }
        }
        try H5File.createAtomically(layout.taskFile("evaluate")) { file in
            try file.setTaskAttributes("evaluate")
            try file.setAttribute("batch_size", Int64(batchSize))
            try file.setAttribute("context", Int64(model.config.context))
            for (name, value) in results { try file.createScalar("summary/" + name, value) }
        }
        let overall = results.filter { !$0.0.contains("/domains/") }.map { "\($0.0.dropFirst("final/".count)) \(formatMetric($0.1))" }
        log.info("evaluate: " + overall.joined(separator: ", "))
        if !perDomain.isEmpty { log.info("evaluate: val bits per byte by domain: " + perDomain.joined(separator: ", ")) }
    }

    /// The transformer LM stored at `path` of `file`; another kind is one line naming it.
    static func loadLM(from file: H5File, at path: String, file name: String) throws -> TransformerLM {
        let (model, _) = try Checkpoint.loadAnyModel(from: file, at: path)
        guard let lm = model as? TransformerLM else {
            throw RuntimeError.usage("\(name): the model at \(path) is of kind \(model.checkpointKind), not a transformer language model")
        }
        return lm
    }
}
