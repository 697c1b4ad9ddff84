import Foundation
import MoEData
import MoEHDF5
import MoENN
import MoEStore

/// `moe-run eval`: a stored model on a data file.
///
/// Every problem with what the user named (a missing or non-HDF5 file, a path inside it that
/// holds no model, a data file that breaks the data contract, features or labels that do not fit
/// the model) is bad input: `RuntimeError.usage`, exit 2, one line naming the file.
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

    /// `checkpoint` is a run directory (its `run.h5`), a file holding a model (run.h5, a task
    /// file, a checkpoint file), or `FILE.h5:/GROUP` naming a checkpoint group inside a file,
    /// e.g. `tasks/train.h5:/checkpoints/580/model` (`/checkpoints/580` is accepted too).
    public static func evaluate(checkpoint: String, data: String, batchSize: Int = 1024) throws -> Result {
        let (file, path) = try openModel(checkpoint)
        let dataset = try loadData(data)
        guard dataset.count > 0 else { throw RuntimeError.usage("\(data): holds no samples (x has 0 rows)") }
        if EnsembleModel.isEnsemble(file, at: path) {
            // Branch-Train-Merge ensemble: loss = NLL of the posterior-weighted mixture (`EnsembleModel`).
            let (ensemble, norm) = try readModel(checkpoint) { try EnsembleModel.load(from: file, at: path) }
            try check(dataset, data: data, features: ensemble.features, classes: ensemble.classes)
            let input = norm.map { $0.apply(dataset) } ?? dataset
            let r = ensemble.evaluate(x: input.x, labels: input.y, batchSize: batchSize)
            return Result(count: dataset.count, loss: r.loss, accuracy: r.accuracy)
        }
        let (model, norm) = try readModel(checkpoint) { try Checkpoint.loadModel(from: file, at: path, for: "evaluation on feature data") }
        try check(dataset, data: data, features: model.config.features, classes: model.config.classes)
        if model.config.moe?.router == .domain && dataset.domain == nil { throw RuntimeError.missingDomains(path: data) }
        let input = norm.map { $0.apply(dataset) } ?? dataset
        let r = model.evaluate(x: input.x, labels: input.y, domains: input.domain, batchSize: batchSize)
        return Result(count: dataset.count, loss: r.loss, accuracy: r.accuracy)
    }

    /// Opens the file `reference` names and finds the model group in it.
    static func openModel(_ reference: String) throws -> (H5File, String) {
        func bad(_ message: String) -> RuntimeError { .usage("\(reference): \(message)") }
        var (filePath, group) = (reference, String?.none)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: reference, isDirectory: &isDirectory) {
            if isDirectory.boolValue {
                filePath = (reference as NSString).appendingPathComponent("run.h5")
                guard FileManager.default.fileExists(atPath: filePath) else {
                    throw bad("is a directory without run.h5 (give a run directory, a model file, or FILE.h5:/checkpoints/STEP/model)")
                }
            }
        } else if let split = splitInnerPath(reference) {
            (filePath, group) = (split.file, split.group)
        } else {
            throw bad("no such file")
        }
        if let problem = H5Signature.problem(at: filePath) { throw RuntimeError.usage("\(filePath): \(problem)") }
        let file: H5File
        do {
            file = try H5File.open(filePath)
        } catch let error as HDF5Error {
            throw RuntimeError.usage(DataError(reading: error, source: filePath).description)
        }
        guard let group else {
            guard let path = modelGroup(in: file) else {
                throw bad("holds no model (expected a checkpoint group, /model or /models/final)")
            }
            return (file, path)
        }
        for candidate in [group, group + "/model"] where file.kind(of: candidate) == .group {
            let g = try? file.openGroup(candidate)
            if let kind = g.flatMap({ try? $0.stringAttribute("kind") }), kind == "model" || kind == "ensemble" {
                return (file, candidate)
            }
        }
        let steps = (try? file.openGroup("checkpoints").children()) ?? []
        let known = steps.isEmpty ? "" : "; its checkpoints: " + steps.map { "/checkpoints/\($0)/model" }.joined(separator: ", ")
        throw RuntimeError.usage("\(filePath): \(group) is not a model checkpoint group\(known)")
    }

    /// `FILE:/GROUP` split where FILE exists as a regular file (the rightmost such colon).
    static func splitInnerPath(_ reference: String) -> (file: String, group: String)? {
        var index = reference.endIndex
        while let colon = reference[..<index].lastIndex(of: ":") {
            let file = String(reference[..<colon])
            var group = String(reference[reference.index(after: colon)...])
            var isDirectory: ObjCBool = false
            if !file.isEmpty, FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), !isDirectory.boolValue {
                if !group.hasPrefix("/") { group = "/" + group }
                while group.count > 1 && group.hasSuffix("/") { group.removeLast() }
                return (file, group)
            }
            index = colon
        }
        return nil
    }

    /// Reads the model, turning a checkpoint that is not what it claims into bad input.
    static func readModel<T>(_ reference: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as Checkpoint.Error {
            throw RuntimeError.usage(error.description)
        } catch let error as HDF5Error {
            throw RuntimeError.usage(DataError(reading: error, source: reference).description)
        }
    }

    /// The data file (`.csv` by name, else HDF5), or bad input naming what is wrong in it.
    static func loadData(_ path: String) throws -> Dataset {
        do {
            return path.lowercased().hasSuffix(".csv") ? try Dataset.load(csv: path) : try Dataset.load(hdf5: path)
        } catch let error as DataError {
            throw RuntimeError.usage(error.description)
        }
    }

    /// The data fits the model: its width, and labels below the model's class count.
    static func check(_ data: Dataset, data path: String, features: Int, classes: Int) throws {
        guard data.features == features else {
            throw RuntimeError.usage("\(path): has \(data.features) features; the model expects \(features)")
        }
        if let i = data.y.firstIndex(where: { $0 >= classes }) {
            throw RuntimeError.usage("\(path): y[\(i)] is \(data.y[i]), but the model knows \(classes) classes (0…\(classes - 1)) (dataset 'y', row \(i))")
        }
    }
}
