import MoECore
/// A model as the fusion methods see it: named float32 tensors in checkpoint order.
///
/// `names` keeps the order of the checkpoint the model came from (results of a fusion use the
/// order of the first model, or of the base for methods with one). `shapes[name]` is the tensor's
/// shape and `values[name]` its elements, contiguous in row-major order, so
/// `values[name]!.count == shapes[name]!.reduce(1, *)`.
public struct NamedTensors: Equatable, Sendable {
    public var names: [String]
    public var shapes: [String: [Int]]
    public var values: [String: [Float]]

    /// A model from parallel dictionaries; `names` gives the order. Call `checkConsistent()` (or
    /// any fusion method, which does) to verify that every name has a shape and matching values.
    public init(names: [String], shapes: [String: [Int]], values: [String: [Float]]) {
        self.names = names
        self.shapes = shapes
        self.values = values
    }

    /// A model from `(name, shape, values)` triples, in that order.
    public init(_ tensors: [(name: String, shape: [Int], values: [Float])]) {
        names = tensors.map(\.name)
        shapes = Dictionary(tensors.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        values = Dictionary(tensors.map { ($0.name, $0.values) }, uniquingKeysWith: { a, _ in a })
    }

    /// The elements of tensor `name`, or nil.
    public subscript(name: String) -> [Float]? {
        get { values[name] }
        set { values[name] = newValue }
    }

    /// Total number of elements over all tensors.
    public var parameterCount: Int { names.reduce(0) { $0 + (values[$1]?.count ?? 0) } }

    /// A model with the same names and shapes as this one and the given values.
    func with(values newValues: [String: [Float]]) -> NamedTensors {
        NamedTensors(names: names, shapes: shapes, values: newValues)
    }

    /// Checks that every name is unique and has a shape with non-negative sizes and exactly
    /// `∏ shape` values, all finite (a diverged expert is refused, not averaged into the fusion).
    /// `model` is the index used in the error.
    public func checkConsistent(model: Int) throws {
        var seen = Set<String>()
        for name in names {
            guard seen.insert(name).inserted else {
                throw FusionError.invalidParameter("tensor \(name) appears twice in \(FusionError.modelLabel(model))")
            }
            guard let shape = shapes[name], let v = values[name] else {
                throw FusionError.missingTensor(name: name, model: model)
            }
            let count = shape.reduce(1, *)
            guard shape.allSatisfy({ $0 >= 0 }), count == v.count else {
                throw FusionError.invalidParameter(
                    "tensor \(name) of \(FusionError.modelLabel(model)) has shape \(shape) but \(v.count) values")
            }
            // The SIMD scan first (a fusion checks every model's every value, ~2 ms per fuse task
            // element by element); the index only for the error.
            let finite = v.withUnsafeBufferPointer { $0.isEmpty || Kernels.allFinite($0.count, $0.baseAddress!) }
            if !finite, let j = v.firstIndex(where: { !$0.isFinite }) {
                throw FusionError.invalidParameter(
                    "tensor \(name) of \(FusionError.modelLabel(model)) has the non-finite value \(v[j]) at index \(j)")
            }
        }
        for name in values.keys.sorted() where !seen.contains(name) {
            throw FusionError.invalidParameter("tensor \(name) of \(FusionError.modelLabel(model)) has values but is not in its names")
        }
    }
}

extension Fusion {
    /// Checks that all `models` (and `base`, if given) are self-consistent and have exactly the same
    /// tensor names and shapes, in any order. The first model (or the base) is the reference.
    ///
    /// Errors name the tensor and the model: `missingTensor(name, model: i)` when model `i` lacks a
    /// tensor of the reference, `extraTensor(name, model: i)` when it has one the reference lacks,
    /// `shapeMismatch(name, expected: reference shape, got: model i's shape, model: i)`. Models
    /// are numbered from 0 in the order given; the base is `FusionError.baseModel` (−1). The checks
    /// run model by model, and within a model in the reference's name order, so the first
    /// problem found is reported.
    public static func validate(_ models: [NamedTensors], base: NamedTensors? = nil) throws {
        guard !models.isEmpty else { throw FusionError.invalidParameter("fusion needs at least one model") }
        let indexed: [(Int, NamedTensors)] = (base.map { [(FusionError.baseModel, $0)] } ?? [])
            + models.enumerated().map { ($0.offset, $0.element) }
        let reference = indexed[0].1
        for (index, model) in indexed {
            try model.checkConsistent(model: index)
            if index == indexed[0].0 { continue }
            for name in reference.names {
                guard let shape = model.shapes[name] else { throw FusionError.missingTensor(name: name, model: index) }
                let expected = reference.shapes[name]!
                if shape != expected {
                    throw FusionError.shapeMismatch(name: name, expected: expected, got: shape, model: index)
                }
            }
            if model.names.count != reference.names.count {
                let known = Set(reference.names)
                for name in model.names where !known.contains(name) {
                    throw FusionError.extraTensor(name: name, model: index)
                }
            }
        }
    }
}

/// Namespace of the fusion methods (issue 6). Every method validates its inputs with
/// `Fusion.validate` first and works tensor by tensor on contiguous arrays.
public enum Fusion {}
