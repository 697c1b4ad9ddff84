import MoECore

/// Sparse upcycling (Komatsuzaki et al. 2022): an MoE model initialised from a trained dense one.
///
/// Every parameter the two models share by name is copied (embedding, norms, head, and the dense
/// FFNs of blocks that stay dense). For each MoE block i, the dense `blocks/i/ffn/{w1, b1, w2, b2}`
/// is copied into every expert of `blocks/i/moe/experts/{w1, b1, w2, b2}` (`[E, …]`). The router
/// keeps its fresh random initialisation, as in the paper.
///
/// With identical experts, `y = Σ_e g_e · FFN(x) = (Σ_e g_e) · FFN(x)`: when the kept gates sum to
/// 1 (`normalize_topk` with k ≥ 2, or dropless top-k renormalised), the upcycled model computes
/// exactly the dense function at step 0, and training starts from the dense model's loss.
///
/// Shared experts (`MoEConfig.sharedExperts` S > 0) are copies of the same dense FFN too, and then
/// the output layer (`w2`, `b2`) of every expert, routed and shared, is scaled by 1/(S+1): with
/// routed gates that sum to 1, `y = (1/(S+1))·FFN(x) + S·(1/(S+1))·FFN(x) = FFN(x)`, so the
/// upcycled model still starts from the dense function (and each expert from the dense
/// features). The shared experts must be as wide as the dense FFN (`shared_ffn` = `ffn`).
public enum Upcycling {
    public struct Mismatch: Error, CustomStringConvertible, Equatable {
        public var tensor: String
        public var reason: String
        public var description: String { "\(tensor): \(reason)" }
    }

    /// Copies `dense` (name → values) into `moe`'s parameters as described above.
    /// Works on any model kind (`mlp`, `transformer`): the MoE blocks are the model's MoE layers.
    public static func upcycle(from dense: [String: Tensor], into moe: any TrainableModel) throws {
        let moeBlocks = Set(moe.moeLayers.map(\.router.index))
        let outputScale = [Int: Float](uniqueKeysWithValues: moe.moeLayers.map { ($0.router.index, 1 / Float(($0.shared?.count ?? 0) + 1)) })
        for p in moe.parameters {
            if let source = dense[p.name] {
                guard source.shape == p.shape else {
                    throw Mismatch(tensor: p.name, reason: "the dense checkpoint has shape \(source.shape), the MoE model \(p.shape)")
                }
                p.value.copy(from: source)
                continue
            }
            // blocks/<i>/moe/{experts,shared}/<name> ← blocks/<i>/ffn/<name>, once per expert.
            let path = ParameterPath(p.name)
            var copy: (block: Int, tensor: String)?
            switch path {
            case .experts(let i, let t), .shared(let i, let t): copy = moeBlocks.contains(i) ? (i, t) : nil
            default: copy = nil
            }
            if let (i, tensor) = copy {
                let name = ParameterPath.ffn(block: i, tensor: tensor).name
                guard let source = dense[name] else {
                    throw Mismatch(tensor: name, reason: "missing from the dense checkpoint (needed for \(p.name))")
                }
                let e = p.shape[0]
                guard Array(p.shape.dropFirst()) == source.shape else {
                    throw Mismatch(tensor: name, reason: "shape \(source.shape) does not match one expert of \(p.name) \(Array(p.shape.dropFirst()))")
                }
                for x in 0..<e { (p.value.data + x * source.count).update(from: source.data, count: source.count) }
                if let scale = outputScale[i], scale != 1, tensor == "w2" || tensor == "b2" { p.value.scale(by: scale) }
                continue
            }
            if case .router = path { continue }  // fresh router
            throw Mismatch(tensor: p.name, reason: "missing from the dense checkpoint")
        }
    }

    /// The parameters of a model by name (for `upcycle(from:into:)`).
    public static func parameters(of model: any TrainableModel) -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0.value) })
    }
}
