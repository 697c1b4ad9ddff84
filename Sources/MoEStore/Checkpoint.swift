import Foundation
import MoECore
import MoEHDF5
import MoENN
import MoEData

/// The self-describing checkpoint of ARCHITECTURE §5.3.
///
/// A checkpoint group has attributes `format = "moe-run/1"`, `kind = "model"` and `config` (the
/// model configuration as JSON), and one float32 dataset per parameter and buffer (the routers'
/// `expert_bias`, `TrainableModel.buffers`) under its PyTorch-style
/// name (`embed/weight [hidden, features]`, `blocks/<i>/ffn/w1 [ffn, hidden]`, …), plus
/// `input/mean` and `input/std` (float32 `[features]`) when the model expects standardised
/// inputs `x' = (x − mean) / std`, so raw data files can be fed to it. Optimizer state
/// lives in a sibling group with `kind = "optimizer"`, `optimizer` (its name) and `step`.
public enum Checkpoint {
    public static let format = "moe-run/1"

    /// Errors that are about a checkpoint's content rather than HDF5 itself.
    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case notACheckpoint(file: String, group: String, reason: String)
        case mismatch(file: String, tensor: String, reason: String)
        /// The checkpoint's `config.kind` is not in `ModelKinds.registry` (or not the kind a caller needs).
        case unknownKind(file: String, group: String, kind: String, known: [String])
        /// A checkpoint of a registered kind other than `mlp`, given to a use only an `mlp` has.
        case notAnMLP(file: String, group: String, kind: String, purpose: String)

        public var description: String {
            switch self {
            case let .unknownKind(file, group, kind, known):
                return "\(file):\(group): unknown model kind \"\(kind)\" in config (this moe-run reads: \(known.joined(separator: ", ")))"
            case let .notAnMLP(file, group, kind, purpose):
                return "\(file):\(group): a \"\(kind)\" model; \(purpose) needs a residual MLP (kind \"mlp\")"
            case let .notACheckpoint(file, group, reason): return "\(file):\(group): not a moe-run model checkpoint: \(reason)"
            case let .mismatch(file, tensor, reason): return "\(file):\(tensor): \(reason)"
            }
        }
    }

    /// The `config` attribute of an `mlp`: the model configuration as JSON with sorted keys.
    public static func configJSON(_ config: ModelConfig) -> String { config.json }

    /// Writes `model` (and `normalization`, if any) as a checkpoint group at `path` under `location`;
    /// its `config` carries the model's `kind`.
    public static func writeModel(_ model: any TrainableModel, normalization: Standardization?,
                                  to location: H5Location, at path: String) throws {
        let group = try location.createGroup(path)
        try group.setAttribute("format", format)
        try group.setAttribute("kind", "model")
        try group.setAttribute("config", model.configJSON)
        for p in model.parameters + model.buffers {
            try group.createDataset(p.name, from: UnsafeBufferPointer(p.value.buffer), shape: p.shape)
        }
        try normalization?.write(to: group, path: "input")
    }

    /// Writes the optimizer's state tensors and step count at `path`.
    public static func writeOptimizer(_ optimizer: Optimizer, kind: OptimizerConfig.Kind,
                                      to location: H5Location, at path: String) throws {
        let group = try location.createGroup(path)
        try group.setAttribute("format", format)
        try group.setAttribute("kind", "optimizer")
        try group.setAttribute("optimizer", kind.rawValue)
        try group.setAttribute("step", Int64(optimizer.stepCount))
        for (name, tensor) in optimizer.state {
            try group.createDataset(name, from: UnsafeBufferPointer(tensor.buffer), shape: tensor.shape)
        }
    }

    /// The `config` JSON and its model kind (`mlp` when the config has no `kind`, as in every
    /// checkpoint written before kinds existed) of the checkpoint group at `path`.
    public static func readKindAndConfig(from location: H5Location, at path: String) throws -> (kind: String, json: String) {
        let group = try location.openGroup(path)
        guard group.hasAttribute("format"), try group.stringAttribute("format") == format else {
            throw Error.notACheckpoint(file: location.filePath, group: group.path, reason: "no format=\"\(format)\" attribute")
        }
        guard group.hasAttribute("kind"), try group.stringAttribute("kind") == "model" else {
            throw Error.notACheckpoint(file: location.filePath, group: group.path, reason: "kind is not \"model\"")
        }
        let json = try group.stringAttribute("config")
        struct KindOnly: Decodable { var kind: String? }
        do {
            let kind = try JSONDecoder().decode(KindOnly.self, from: Data(json.utf8)).kind ?? ResidualMLP.checkpointKind
            return (kind, json)
        } catch {
            throw Error.notACheckpoint(file: location.filePath, group: group.path, reason: configProblem(error))
        }
    }

    /// Reads the `mlp` configuration of the checkpoint group at `path`.
    public static func readConfig(from location: H5Location, at path: String) throws -> ModelConfig {
        let (kind, json) = try readKindAndConfig(from: location, at: path)
        guard kind == ResidualMLP.checkpointKind else {
            throw Error.unknownKind(file: location.filePath, group: try location.openGroup(path).path, kind: kind,
                                    known: [ResidualMLP.checkpointKind])
        }
        do {
            return try JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8))
        } catch {
            throw Error.notACheckpoint(file: location.filePath, group: try location.openGroup(path).path,
                                       reason: configProblem(error))
        }
    }

    /// One line saying what is wrong with a checkpoint's `config` JSON (a missing or mistyped
    /// key by name, else invalid JSON), instead of a `DecodingError` dump.
    static func configProblem(_ error: Swift.Error) -> String {
        func key(_ path: [CodingKey], _ last: CodingKey? = nil) -> String {
            (path + (last.map { [$0] } ?? [])).map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error as? DecodingError {
        case let .keyNotFound(k, context)?: return "config has no \"\(key(context.codingPath, k))\""
        case let .typeMismatch(type, context)?: return "config.\(key(context.codingPath)) is not of type \(type)"
        case let .valueNotFound(type, context)?: return "config.\(key(context.codingPath)) is null, expected \(type)"
        case let .dataCorrupted(context)?:
            return context.codingPath.isEmpty ? "config is not valid JSON" : "config.\(key(context.codingPath)): \(context.debugDescription)"
        default: return "config is not valid: \(error)"
        }
    }

    /// Builds the model of any registered kind stored at `path` and returns it with its input
    /// normalisation.
    public static func loadAnyModel(from location: H5Location, at path: String) throws -> (any TrainableModel, Standardization?) {
        let (kind, json) = try readKindAndConfig(from: location, at: path)
        let group = try location.openGroup(path)
        guard let make = ModelKinds.registry[kind] else {
            throw Error.unknownKind(file: location.filePath, group: group.path, kind: kind, known: ModelKinds.known)
        }
        let model: any TrainableModel
        do {
            model = try make(json)
        } catch {
            throw Error.notACheckpoint(file: location.filePath, group: group.path, reason: configProblem(error))
        }
        try loadParameters(into: model.parameters + model.buffers, from: location, at: path)
        var norm: Standardization?
        if group.exists("input/mean") {
            norm = try Standardization.read(from: group, path: "input")
            guard let features = model.inputFeatures, norm!.mean.count == features else {
                throw Error.mismatch(file: location.filePath, tensor: group.absolutePath("input/mean"),
                                     reason: "normalisation has \(norm!.mean.count) features, the model \(model.inputFeatures.map(String.init) ?? "none")")
            }
        }
        return (model, norm)
    }

    /// Builds the `mlp` stored at `path` and returns it with its input normalisation; a
    /// checkpoint of another kind is an `unknownKind` error naming it.
    public static func loadModel(from location: H5Location, at path: String) throws -> (ResidualMLP, Standardization?) {
        let (kind, _) = try readKindAndConfig(from: location, at: path)
        guard kind == ResidualMLP.checkpointKind else {
            throw Error.unknownKind(file: location.filePath, group: try location.openGroup(path).path, kind: kind,
                                    known: [ResidualMLP.checkpointKind])
        }
        let (model, norm) = try loadAnyModel(from: location, at: path)
        return (model as! ResidualMLP, norm)
    }

    /// `loadModel` for a use that only a residual MLP has (`purpose`, e.g. "upcycling"): a
    /// checkpoint of another registered kind is a `notAnMLP` error naming the kind and the use.
    public static func loadModel(from location: H5Location, at path: String, for purpose: String) throws -> (ResidualMLP, Standardization?) {
        let (kind, _) = try readKindAndConfig(from: location, at: path)
        if kind != ResidualMLP.checkpointKind && ModelKinds.registry[kind] != nil {
            throw Error.notAnMLP(file: location.filePath, group: try location.openGroup(path).path, kind: kind, purpose: purpose)
        }
        return try loadModel(from: location, at: path)
    }

    /// Copies stored values into `parameters` by name; every parameter must exist with its shape.
    public static func loadParameters(into parameters: [Parameter], from location: H5Location, at path: String) throws {
        let group = try location.openGroup(path)
        for p in parameters {
            try read(p.value, name: p.name, from: group)
        }
    }

    /// Restores an optimizer's state and step count from the group at `path`.
    public static func loadOptimizer(into optimizer: Optimizer, from location: H5Location, at path: String) throws {
        let group = try location.openGroup(path)
        for (name, tensor) in optimizer.state { try read(tensor, name: name, from: group) }
        optimizer.stepCount = Int(try group.attribute("step", as: Int64.self))
    }

    private static func read(_ tensor: Tensor, name: String, from group: H5Group) throws {
        let object = group.absolutePath(name)
        guard group.exists(name) else {
            throw Error.mismatch(file: group.filePath, tensor: object, reason: "missing")
        }
        let dataset = try group.openDataset(name)
        let shape = try dataset.shape
        guard shape == tensor.shape else {
            throw Error.mismatch(file: group.filePath, tensor: object,
                                 reason: "shape \(shape) does not match the model's \(tensor.shape)")
        }
        try dataset.read(into: tensor.buffer)
    }
}

/// The model kinds MoEStore can rebuild from a checkpoint, keyed by `config.kind`. A new model
/// kind conforms to `TrainableModel` and adds one entry here: a function from the `config`
/// JSON to a freshly built model (its parameters are then read by name).
public enum ModelKinds {
    public typealias Make = @Sendable (_ configJSON: String) throws -> any TrainableModel

    public static let registry: [String: Make] = [
        ResidualMLP.checkpointKind: { json in
            ResidualMLP(config: try JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8)), seed: 0)
        },
        TransformerLM.checkpointKind: { json in
            TransformerLM(config: try JSONDecoder().decode(TransformerConfig.self, from: Data(json.utf8)), seed: 0)
        },
    ]

    /// The registered kinds, sorted (for error messages).
    public static var known: [String] { registry.keys.sorted() }
}
