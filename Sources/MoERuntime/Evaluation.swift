import Foundation
import MoEData
import MoEHDF5
import MoENN
import MoEStore

/// `moe-run eval`: a stored model on a data file.
public enum Evaluation {
    public struct Result: Sendable {
        public var count: Int
        public var loss: Double
        public var accuracy: Double
    }

    /// Where the model is inside `file`: the root if it is a checkpoint group, else `/model`
    /// (a train task file), else `/models/final` (a run file).
    static func modelGroup(in file: H5File) -> String? {
        if file.hasAttribute("kind"), ["model", "ensemble"].contains((try? file.stringAttribute("kind")) ?? "") { return "/" }
        for path in ["model", "models/final"] where file.exists(path) { return path }
        return nil
    }

    public static func evaluate(checkpoint: String, data: String, batchSize: Int = 1024) throws -> Result {
        guard FileManager.default.fileExists(atPath: checkpoint) else {
            throw RuntimeError.io(path: checkpoint, message: "no such file")
        }
        let file = try H5File.open(checkpoint)
        guard let path = modelGroup(in: file) else {
            throw RuntimeError.io(path: checkpoint, message: "holds no model (expected a checkpoint group, /model or /models/final)")
        }
        guard FileManager.default.fileExists(atPath: data) else { throw RuntimeError.io(path: data, message: "no such file") }
        if EnsembleModel.isEnsemble(file, at: path) {
            // Branch-Train-Merge ensemble: loss = NLL of the posterior-weighted mixture (`EnsembleModel`).
            let (ensemble, norm) = try EnsembleModel.load(from: file, at: path)
            var dataset = data.lowercased().hasSuffix(".csv") ? try Dataset.load(csv: data) : try Dataset.load(hdf5: data)
            guard dataset.features == ensemble.features else {
                throw RuntimeError.io(path: data, message: "has \(dataset.features) features; the model expects \(ensemble.features)")
            }
            if let bad = dataset.y.first(where: { $0 >= ensemble.classes }) {
                throw RuntimeError.io(path: data, message: "has label \(bad); the model knows \(ensemble.classes) classes")
            }
            if let norm { dataset = norm.apply(dataset) }
            let r = ensemble.evaluate(x: dataset.x, labels: dataset.y, batchSize: batchSize)
            return Result(count: dataset.count, loss: r.loss, accuracy: r.accuracy)
        }
        let (model, norm) = try Checkpoint.loadModel(from: file, at: path)
        var dataset = data.lowercased().hasSuffix(".csv") ? try Dataset.load(csv: data) : try Dataset.load(hdf5: data)
        guard dataset.features == model.config.features else {
            throw RuntimeError.io(path: data, message: "has \(dataset.features) features; the model expects \(model.config.features)")
        }
        if let bad = dataset.y.first(where: { $0 >= model.config.classes }) {
            throw RuntimeError.io(path: data, message: "has label \(bad); the model knows \(model.config.classes) classes")
        }
        if model.config.moe?.router == .domain && dataset.domain == nil { throw RuntimeError.missingDomains(path: data) }
        if let norm { dataset = norm.apply(dataset) }
        let r = model.evaluate(x: dataset.x, labels: dataset.y, domains: dataset.domain, batchSize: batchSize)
        return Result(count: dataset.count, loss: r.loss, accuracy: r.accuracy)
    }
}
