import Foundation
import XCTest
import MoECore
import MoEHDF5
@testable import MoENN

/// Causal self-attention against an independent PyTorch implementation of ARCHITECTURE §5.3's
/// formula (issue 13, item 4). For each case this builds a layer from random weights (larger than
/// GPT-2's 0.02, so the softmax rows are far from uniform, plus random biases), runs forward on a
/// seeded batch and backward with a seeded upstream gradient `dy` (loss = Σ dy ⊙ y), and writes
/// one HDF5 file with the shape, the parameters under their checkpoint names, `x`, `dy`, `y`,
/// `dx` and every parameter gradient. `Tests/python/torch_attention_reference.py` recomputes it
/// with torch autograd (and the forward with `F.scaled_dot_product_attention`) and compares each
/// tensor to 1e-4 relative (norm-based). Skips like the MoE-layer check when torch is absent.
final class AttentionTorchReferenceTests: XCTestCase {
    struct Case {
        var name: String
        var seed: UInt64
        var batch: Int, tokens: Int, hidden: Int, heads: Int
        var weightStd: Float = 0.3
    }

    static let cases: [Case] = [
        Case(name: "attn_b3_t16_h32_heads4", seed: 200, batch: 3, tokens: 16, hidden: 32, heads: 4),
        Case(name: "attn_lm_dense_b2_t64_h128_heads4", seed: 201, batch: 2, tokens: 64, hidden: 128, heads: 4, weightStd: 0.15),
        Case(name: "attn_one_head_b2_t9_h16", seed: 202, batch: 2, tokens: 9, hidden: 16, heads: 1),
        Case(name: "attn_one_token_b4_t1_h8_heads2", seed: 203, batch: 4, tokens: 1, hidden: 8, heads: 2),
        Case(name: "attn_gpt2_init_b2_t32_h64_heads8", seed: 204, batch: 2, tokens: 32, hidden: 64, heads: 8, weightStd: 0.02),
    ]

    func testAttentionMatchesTorch() throws {
        try TorchSupport.check(script: "torch_attention_reference.py", cases: Self.cases.map(\.name)) { name, path in
            try write(Self.cases.first { $0.name == name }!, to: path)
        }
    }

    private func write(_ c: Case, to path: String) throws {
        let prefix = "blocks/0/attn"
        let n = c.batch * c.tokens
        let layer = CausalSelfAttention(prefix, hidden: c.hidden, heads: c.heads, seed: c.seed,
                                        weightStd: c.weightStd, outStd: c.weightStd)
        var rng = RNG(seed: c.seed, purpose: "torch-reference/attention")
        rng.fillNormal(layer.qkv.bias.value, std: 0.1)
        rng.fillNormal(layer.out.bias.value, std: 0.1)
        let x = Tensor(shape: [n, c.hidden]), dy = Tensor(shape: [n, c.hidden])
        rng.fillNormal(x)
        rng.fillNormal(dy)
        let y = Tensor(shape: [n, c.hidden]), dx = Tensor(shape: [n, c.hidden])
        layer.forward(x.data, batch: c.batch, tokens: c.tokens, into: y.data)
        layer.parameters.zeroGrad()
        layer.backward(dy.data, dx: dx.data)
        try H5File.createAtomically(path) { file in
            try file.setAttribute("format", "moe-run/1")
            try file.setAttribute("kind", "attention-reference")
            try file.setAttribute("case", c.name)
            for (key, value) in [("batch", c.batch), ("tokens", c.tokens), ("hidden", c.hidden), ("heads", c.heads)] {
                try file.setAttribute(key, Int64(value))
            }
            try TorchSupport.putLayer(file, layer.parameters, prefix: prefix, x: x, dy: dy, y: y, dx: dx)
        }
    }
}
