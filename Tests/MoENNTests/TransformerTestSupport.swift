import XCTest
import MoECore
@testable import MoENN

/// Tiny transformer configurations and batches shared by the transformer tests.
enum TinyTransformer {
    static func config(tie: Bool = false, dropout: Float = 0, moe: MoEConfig? = nil,
                       activation: Activation = .gelu) -> TransformerConfig {
        TransformerConfig(vocab: 11, context: 6, hidden: 8, heads: 2, blocks: 2, ffn: 12, activation: activation,
                          dropout: dropout, tieEmbeddings: tie, moe: moe)
    }

    /// `batch` windows of `length` token ids below `vocab`, seeded.
    static func tokens(batch: Int, length: Int, vocab: Int, seed: UInt64) -> [Int32] {
        var rng = RNG(seed: seed, purpose: "test/tokens")
        return (0..<(batch * length)).map { _ in Int32(rng.int(below: vocab)) }
    }

    /// Replaces every parameter by seeded values of order 0.4 (LayerNorm gains around 1), so
    /// that every gradient is sizeable: at GPT-2's N(0, 0.02) start most gradients are so
    /// small that a finite-difference check would prove little.
    static func randomize(_ parameters: [Parameter], seed: UInt64) {
        for p in parameters {
            var rng = RNG(seed: seed, purpose: "test/values/" + p.name)
            rng.fillNormal(p.value, std: 0.4)
            if p.name.hasSuffix("norm/weight") { for i in 0..<p.value.count { p.value.data[i] += 1 } }
        }
    }

    /// The routing of every MoE layer (to assert a perturbation did not change it).
    static func routing(_ model: TransformerLM) -> [[Int]] {
        model.moeLayers.map { $0.router.routing.token + $0.router.routing.offsets }
    }
}
