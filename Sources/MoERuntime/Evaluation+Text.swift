import Foundation
import MoEData
import MoEHDF5
import MoENN
import MoEStore

/// `moe-run eval` of a transformer LM checkpoint, or of a BTM ensemble of them
/// (`LMEnsembleCheckpoint`, scored by the posterior-weighted mixture), on text, by the §5.4
/// evaluation protocol (`LMScores`): loss (nats per token), top-1 accuracy and bits per byte.
///
/// The data is a text corpus as `data.path` takes it: a `tasks/data.h5`-layout file (each of its
/// splits scored apart), or a folder / corpus HDF5 file (every domain's whole text scored).
extension Evaluation {
    public struct TextResult: Sendable {
        /// The part scored (`train`, `val`, `test`, or `text` for a whole corpus), its scored
        /// tokens, and the figures.
        public struct Part: Sendable {
            public var name: String
            public var tokens: Int
            public var loss: Double, accuracy: Double, bitsPerByte: Double
        }
        public var parts: [Part]
    }

    /// Nil when the checkpoint holds no transformer LM (then `evaluate` applies); else its scores.
    public static func evaluateText(checkpoint: String, data: String, batchSize: Int = 64) throws -> TextResult? {
        let (file, path) = try openModel(checkpoint)
        guard let model = try loadTextModel(checkpoint, file: file, at: path) else { return nil }
        let corpus: TextCorpus, parts: [(String, TextSplit)]
        do {
            // A whole corpus goes entirely to `train` (fractions 1, 0) and is scored as `text`.
            corpus = try TextCorpus.load(path: data, train: 1, val: 0)
            let split = try isDataLayout(data)
            parts = split ? TextSplit.allCases.map { ($0.rawValue, $0) } : [("text", .train)]
        } catch let error as DataError {
            throw RuntimeError.usage(error.description)
        }
        guard corpus.vocabulary <= model.config.vocab else {
            throw RuntimeError.usage("\(data): tokens of a \(corpus.vocabulary)-token vocabulary; the model knows \(model.config.vocab)")
        }
        var result = TextResult(parts: [])
        for (name, split) in parts {
            let s = LMScores.score(model, corpus, split: split, batchSize: batchSize).overall
            guard s.scored > 0 else { continue }
            result.parts.append(.init(name: name, tokens: s.scored, loss: s.meanLoss, accuracy: s.accuracy,
                                      bitsPerByte: LMScores.bitsPerByte(s.meanLoss)))
        }
        guard !result.parts.isEmpty else {
            throw RuntimeError.usage("\(data): no domain holds a window of \(model.config.context + 1) tokens (the model's context + 1)")
        }
        return result
    }

    /// The transformer LM or LM ensemble at `path`; nil for a model of another kind.
    static func loadTextModel(_ checkpoint: String, file: H5File, at path: String) throws -> (any TokenWindowScorer)? {
        if EnsembleModel.isEnsemble(file, at: path) {
            guard LMEnsembleCheckpoint.isLMEnsemble(file, at: path) else { return nil }
            return try readModel(checkpoint) { try LMEnsembleCheckpoint.load(from: file, at: path) }
        }
        guard try readModel(checkpoint, { try Checkpoint.readKindAndConfig(from: file, at: path) }).kind == TransformerLM.checkpointKind else {
            return nil
        }
        return try readModel(checkpoint) { try Checkpoint.loadAnyModel(from: file, at: path) }.0 as! TransformerLM
    }

    /// The file is HDF5 in the `tasks/data.h5` layout (has `/data`).
    private static func isDataLayout(_ path: String) throws -> Bool {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue else { return false }
        return (try? H5File.open(path).exists("data")) ?? false
    }
}
