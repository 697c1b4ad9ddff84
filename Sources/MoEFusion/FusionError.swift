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
        case .missingTensor(let n, let m): return "tensor \(n) is missing from model \(m)"
        case .shapeMismatch(let n, let e, let g, let m):
            return "tensor \(n) has shape \(g) in model \(m), expected \(e)"
        case .extraTensor(let n, let m): return "tensor \(n) of model \(m) is not in the other models"
        case .invalidParameter(let s): return s
        }
    }
}
