import Foundation
import XCTest
import MoECore
import MoEHDF5
@testable import MoENN

/// The MoE layer against an independent PyTorch implementation of its documented maths
/// (issue 4, item 7). For each case this builds a layer (hidden 16, ffn 32, 4 experts, 64 tokens),
/// runs forward on a seeded batch and backward with a seeded upstream gradient `dy`
/// (loss = Σ dy ⊙ y + auxiliaryLoss), and writes one HDF5 file with the configuration, the
/// parameters under their checkpoint names, the batch, the outputs, the losses and every
/// gradient. `Tests/python/torch_reference.py` recomputes all of it with torch autograd and
/// compares to 1e-4 relative (norm-based, per tensor).
///
/// Needs `MOE_RUN_TORCH_PYTHON` (a Python with torch, h5py and numpy; `make test` and
/// `make check-torch` set it); `MOE_RUN_SKIP_TORCH=1` skips with a visible message.
/// `MOE_RUN_TORCH_KEEP=DIR` writes the files to DIR and keeps them.
final class TorchReferenceTests: XCTestCase {
    struct Case {
        var name: String
        /// Seeds the parameters, the batch and `dy`; chosen so that capacity cases do drop.
        var seed: UInt64
        var router: RouterKind
        var k: Int
        var capacityFactor: Double?
        var dropPolicy: DropPolicy = .probs
        var normalize = true
        /// Number of MoE layers L the coefficients are divided by.
        var moeLayers = 1
        /// Scale of the upstream gradient; 0 leaves only the aux and z losses (checks their gradients alone).
        var dyScale: Float = 1
        var score: RouterScore = .softmax
        var balance: RouterBalance = .auxLoss
        /// Whether capacity must drop assignments for the case to mean what it says.
        var mustDrop: Bool { capacityFactor != nil && router.isTokenChoice }
    }

    static let (tokens, hidden, ffn, experts) = (64, 16, 32, 4)

    static let cases: [Case] = [
        Case(name: "topk2_renorm_dropless", seed: 100, router: .topk, k: 2, capacityFactor: nil),
        Case(name: "topk2_cap1.0_probs", seed: 101, router: .topk, k: 2, capacityFactor: 1.0, dropPolicy: .probs),
        Case(name: "topk2_cap1.0_position", seed: 102, router: .topk, k: 2, capacityFactor: 1.0, dropPolicy: .position, moeLayers: 3),
        Case(name: "switch_cap1.25", seed: 125, router: .switch, k: 1, capacityFactor: 1.25, dropPolicy: .probs),
        Case(name: "switch_cap1.25_position", seed: 104, router: .switch, k: 1, capacityFactor: 1.25, dropPolicy: .position),
        Case(name: "expert_choice_cap1.0", seed: 105, router: .expertChoice, k: 2, capacityFactor: 1.0),
        Case(name: "topk2_no_renorm_dropless", seed: 106, router: .topk, k: 2, capacityFactor: nil, normalize: false),
        Case(name: "topk2_cap1.0_losses_only", seed: 107, router: .topk, k: 2, capacityFactor: 1.0, dyScale: 0),
        // Sigmoid scores (DeepSeek-V3) and the selection-only expert bias (loss-free balancing).
        Case(name: "sigmoid_topk2_renorm_dropless", seed: 108, router: .topk, k: 2, capacityFactor: nil, score: .sigmoid),
        Case(name: "sigmoid_topk2_cap1.0_losses_only", seed: 109, router: .topk, k: 2, capacityFactor: 1.0, dyScale: 0, score: .sigmoid),
        Case(name: "sigmoid_switch_cap1.25_bias", seed: 110, router: .switch, k: 1, capacityFactor: 1.25, score: .sigmoid, balance: .bias),
        Case(name: "sigmoid_topk2_cap1.0_bias", seed: 111, router: .topk, k: 2, capacityFactor: 1.0, score: .sigmoid, balance: .bias),
        Case(name: "softmax_topk2_dropless_bias", seed: 112, router: .topk, k: 2, capacityFactor: nil, balance: .bias),
    ]

    func testMoELayerMatchesTorch() throws {
        try TorchSupport.check(script: "torch_reference.py", cases: Self.cases.map(\.name)) { name, path in
            try write(Self.cases.first { $0.name == name }!, to: path)
        }
    }

    /// Runs one case and writes its file.
    private func write(_ c: Case, to path: String) throws {
        let (n, h, f, e) = (Self.tokens, Self.hidden, Self.ffn, Self.experts)
        let seed = c.seed
        let config = MoEConfig(experts: e, blocks: [0], router: c.router, k: c.k, capacityFactor: c.capacityFactor,
                               minCapacity: 4, dropPolicy: c.dropPolicy, auxLoss: 0.1, zLoss: 0.05, jitter: 0,
                               normalizeTopk: c.normalize, score: c.score, balance: c.balance)
        let prefix = "moe"
        let layer = MoELayer(prefix, index: 0, hidden: h, ffn: f, activation: .gelu, config: config, moeLayers: c.moeLayers)
        layer.initialize(seed: seed)
        // A sharper router than at initialisation (as after some training): loads are uneven, so
        // capacity drops assignments, and the aux and z losses have sizeable gradients.
        layer.router.weight.value.scale(by: 3)
        if let b = layer.router.expertBias {
            // A seeded bias of the size loss-free balancing reaches, so it changes selections.
            var rngBias = RNG(seed: seed, purpose: "torch-reference/expert_bias")
            rngBias.fillNormal(b.value, std: 0.1)
        }
        let x = Tensor(shape: [n, h]), dy = Tensor(shape: [n, h])
        var rng = RNG(seed: seed, purpose: "torch-reference/x")
        rng.fillNormal(x)
        var rngDy = RNG(seed: seed, purpose: "torch-reference/dy")
        rngDy.fillNormal(dy, std: c.dyScale)
        if c.dyScale == 0 { dy.zero() }

        let y = Tensor(shape: [n, h]), dx = Tensor(shape: [n, h])
        layer.forward(x.data, rows: n, into: y.data, context: ForwardContext(training: true, step: 0, seed: seed))
        layer.parameters.zeroGrad()
        layer.backward(dy.data, rows: n, dx: dx.data)

        let r = layer.router.routing
        if c.mustDrop {
            XCTAssertLessThan(r.total, n * config.k, "\(c.name): capacity must drop assignments for the case to test dropping")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let configJSON = String(decoding: try encoder.encode(config), as: UTF8.self)
        try H5File.createAtomically(path) { file in
            try file.setAttribute("format", "moe-run/1")
            try file.setAttribute("kind", "moe-layer-reference")
            try file.setAttribute("case", c.name)
            try file.setAttribute("config", configJSON)
            try file.setAttribute("activation", layer.activation.rawValue)
            try file.setAttribute("moe_layers", Int64(c.moeLayers))
            try TorchSupport.putLayer(file, layer.parameters, prefix: prefix, x: x, dy: dy, y: y, dx: dx)
            if let b = layer.router.expertBias { try TorchSupport.put(file, "router/expert_bias", b.value) }
            try file.createScalar("aux", layer.router.auxLoss)
            try file.createScalar("z", layer.router.zLoss)
            try file.createScalar("aux_weighted", layer.auxiliaryLoss)
            // The assignments, grouped by expert (a diagnostic when routing differs).
            try file.createDataset("routing/offsets", r.offsets[0...e].map(Int64.init), storage: .contiguous)
            try file.createDataset("routing/token", r.token[0..<r.total].map(Int64.init), storage: .contiguous)
            try file.createDataset("routing/gate", Array(r.gate[0..<r.total]), storage: .contiguous)
        }
    }
}
