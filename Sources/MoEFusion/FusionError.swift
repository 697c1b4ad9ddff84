/// Why a fusion cannot be computed. Every case names the tensor (or expert) at fault, so
/// nothing is skipped silently (issue 6: "shape or architecture mismatches are refused with a
/// message naming the tensor").
public enum FusionError: Error, Equatable, CustomStringConvertible {
    /// A tensor present in one model is missing from another.
    case missingTensor(name: String, model: Int)
    /// The same tensor has different shapes in two models.
    case shapeMismatch(name: String, expected: [Int], got: [Int], model: Int)
    /// The models do not have the same set of tensors.
    case extraTensor(name: String, model: Int)
    /// A parameter of the method is out of range (`density` outside (0, 1], negative weights, ...).
    case invalidParameter(String)

    public var description: String {
        switch self {
        case .missingTensor(let n, let m): return "tensor \(n) is missing from \(FusionError.modelLabel(m))"
        case .shapeMismatch(let n, let e, let g, let m):
            return "tensor \(n) has shape \(g) in \(FusionError.modelLabel(m)), expected \(e)"
        case .extraTensor(let n, let m): return "tensor \(n) of \(FusionError.modelLabel(m)) is not in the other models"
        case .invalidParameter(let s): return s
        }
    }

    /// The model index that stands for the base model θ₀ of task arithmetic, TIES and DARE.
    public static let baseModel = -1

    /// "model i", or "the base model" for `baseModel`.
    public static func modelLabel(_ model: Int) -> String {
        model == baseModel ? "the base model" : "model \(model)"
    }

    /// The same error about model `index` of a list checked pairwise against a reference (model 1
    /// of the pair becomes `index`); `invalidParameter` messages get "`what` model `index`".
    func renumbered(_ index: Int, what: String) -> FusionError {
        switch self {
        case .missingTensor(let n, _): return .invalidParameter("tensor \(n) is missing from \(what) model \(index)")
        case .extraTensor(let n, _): return .invalidParameter("tensor \(n) of \(what) model \(index) is not in the models")
        case .shapeMismatch(let n, let e, let g, _):
            return .invalidParameter("tensor \(n) has shape \(g) in \(what) model \(index), expected \(e)")
        case .invalidParameter(let s): return .invalidParameter("\(what) model \(index): \(s)")
        }
    }
}
