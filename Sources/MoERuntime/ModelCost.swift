import Foundation
import MoEHDF5

/// Parameters and forward FLOPs of a checkpoint (a `model` group with its `config`), for
/// `moe-run show`. Read from the stored tensors' shapes (ARCHITECTURE §5.3), so every model kind
/// and every MoE layout counts the same way.
///
/// - **total**: every stored tensor of the model except `input/{mean, std}` (buffers).
/// - **active** per sample (mlp) or per token (transformer): total, with each MoE layer's routed
///   experts (`moe/experts/*`, leading dimension E) counted k/E times: the router's budget of k
///   experts per row (expert choice: each expert takes ⌈k·n/E⌉ rows, k per row on average; with
///   `capacity_factor` c, c·k). Dropped assignments are not subtracted: active is the budget.
///   Shared experts (`moe/shared/*`) are always active.
/// - **forward FLOPs** per sample or token: `2 · N_matmul` (one multiply and one add per weight of
///   every matrix product, active share for experts: Kaplan et al. 2020 §2.1), plus for a
///   transformer the attention scores and weighted sum `4 · L · T · d` (L blocks, context T,
///   width d; PaLM (Chowdhery et al. 2022) appendix B and nanoGPT's `estimate_mfu`, without
///   halving for the causal mask). `N_matmul` counts the weight matrices (`*/weight` of rank 2,
///   `w1`, `w2`, the router's `weight`); biases, norms, activations and softmax are left out; the
///   token and position embeddings are look-ups, not products, but the output head is one
///   (the tied embedding matrix when `tie_embeddings`). A training step costs about 3× forward.
struct ModelCost: Equatable {
    var total: Int
    var active: Double
    var forwardFLOPs: Double
    /// "sample" (mlp) or "token" (transformer).
    var unit: String

    static func of(_ model: H5Group) throws -> ModelCost {
        let config = (try? model.stringAttribute("config")).flatMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        } ?? [:]
        let transformer = config["kind"] as? String == "transformer"
        let moe = config["moe"] as? [String: Any]
        let experts = (moe?["experts"] as? NSNumber)?.doubleValue ?? 1
        var k = (moe?["k"] as? NSNumber)?.doubleValue ?? 1
        if moe?["router"] as? String == "expert_choice", let c = (moe?["capacity_factor"] as? NSNumber)?.doubleValue { k *= c }
        let expertShare = min(1, k / max(experts, 1))

        var total = 0, active = 0.0, matmul = 0.0
        func walk(_ path: String) throws {
            for name in try model.children(of: path.isEmpty ? "." : path) {
                let p = path.isEmpty ? name : path + "/" + name
                switch model.kind(of: p) {
                case .group?: if p != "input" { try walk(p) }
                case .dataset?:
                    let shape = try model.openDataset(p).shape
                    let size = shape.reduce(1, *)
                    let routed = p.contains("moe/experts/")
                    let share = routed ? expertShare : 1
                    total += size
                    active += Double(size) * share
                    let isMatrix = (name == "weight" && shape.count == 2) || ((name == "w1" || name == "w2") && shape.count >= 2)
                    let lookup = transformer && (p == "embed/weight" || p == "pos/weight")
                    if isMatrix && !lookup { matmul += Double(size) * share }
                default: break
                }
            }
        }
        try walk("")
        var flops = 2 * matmul
        if transformer {
            let vocab = (config["vocab"] as? NSNumber)?.doubleValue ?? 0, d = (config["hidden"] as? NSNumber)?.doubleValue ?? 0
            let blocks = (config["blocks"] as? NSNumber)?.doubleValue ?? 0, context = (config["context"] as? NSNumber)?.doubleValue ?? 0
            if config["tie_embeddings"] as? Bool == true { flops += 2 * vocab * d }
            flops += 4 * blocks * context * d
        }
        return ModelCost(total: total, active: active, forwardFLOPs: flops, unit: transformer ? "token" : "sample")
    }

    /// `parameters 12,345 total, 6,789 active per sample; forward 13.6 kFLOP per sample (training ≈ 3×)`.
    var text: String {
        let a = active == active.rounded() ? Self.grouped(Int(active)) : Self.grouped(Int(active.rounded())) + " (mean)"
        return "parameters \(Self.grouped(total)) total, \(a) active per \(unit); forward \(Self.si(forwardFLOPs))FLOP per \(unit) (a training step ≈ 3×)"
    }

    static func grouped(_ n: Int) -> String {
        let s = String(n)
        var out = ""
        for (i, c) in s.reversed().enumerated() {
            if i > 0 && i % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return String(out.reversed())
    }

    /// 1.36 k, 2.05 M, 3.1 G…
    static func si(_ x: Double) -> String {
        for (p, u) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] where x >= p {
            return String(format: "%.3g", x / p) + " " + u
        }
        return String(format: "%.0f ", x)
    }
}
