import Foundation
import XCTest
import MoECore
import MoEHDF5
import MoEStore
@testable import MoENN

/// The transformer LM against an independent PyTorch implementation in the style of nanoGPT's
/// model.py (`Tests/python/torch_transformer_reference.py`), dense and MoE (top-k router), tied
/// and untied. For each case this builds a tiny model with seeded parameters, writes it with
/// `Checkpoint.writeModel` (the §5.3 layout the script loads with strict=True) together with a
/// seeded batch of token windows, runs forward and backward of loss = mean next-token
/// cross-entropy + MoE auxiliary losses, and compares with the script's autograd results:
///
/// - the cross-entropy to 1e-5 relative, and the weighted auxiliary loss to 1e-5 absolute;
/// - every parameter's gradient per tensor: ‖a − b‖ ≤ 1e-4 · max(‖b‖, 1e-3 · ‖g‖), a = moe-run,
///   b = torch, ‖g‖ the norm of torch's whole gradient. Relative per tensor, except for tensors
///   whose true gradient is below a thousandth of the whole (the key bias's gradient is 0 in exact
///   arithmetic: softmax ignores a shift of every score), where the floor keeps Float32 noise
///   from deciding.
///
/// Runs with `MOE_RUN_TORCH_PYTHON` like `TorchReferenceTests` (skips only when it is unset or
/// `MOE_RUN_SKIP_TORCH=1`); `MOE_RUN_TORCH_KEEP=DIR` keeps the files.
final class TorchTransformerReferenceTests: XCTestCase {
    struct Case {
        var name: String
        var seed: UInt64
        var tie = false
        var activation: Activation = .gelu
        var moe: MoEConfig? = nil
    }

    static let cases: [Case] = [
        Case(name: "dense_untied_gelu", seed: 200),
        Case(name: "dense_tied_silu", seed: 201, tie: true, activation: .silu),
        Case(name: "moe_top2_untied", seed: 202, moe: MoEConfig(experts: 4, blocks: [1], router: .topk, k: 2, auxLoss: 0.1, zLoss: 0.01)),
        Case(name: "moe_top1_tied_all_blocks", seed: 203, tie: true,
             moe: MoEConfig(experts: 3, blocks: [0, 1], router: .topk, k: 1, auxLoss: 0.1, zLoss: 0.01)),
    ]

    func testTransformerMatchesTorch() throws {
        let python = try TorchSupport.python()
        let fm = FileManager.default
        let keep = ProcessInfo.processInfo.environment["MOE_RUN_TORCH_KEEP"]
        let dir = keep.map { URL(fileURLWithPath: $0) }
            ?? fm.temporaryDirectory.appendingPathComponent("moe-torch-transformer-\(getpid())")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { if keep == nil { try? fm.removeItem(at: dir) } }

        var models: [(Case, TransformerLM, ce: Double, aux: Double, out: String)] = []
        var arguments = [TorchSupport.script("torch_transformer_reference.py").path]
        for c in Self.cases {
            let input = dir.appendingPathComponent("\(c.name).h5").path, out = dir.appendingPathComponent("\(c.name).torch.h5").path
            let (model, ce, aux) = try run(c, writingTo: input)
            models.append((c, model, ce, aux, out))
            arguments += [input, out]
        }
        guard let (status, output) = TorchSupport.run(python, arguments) else { return XCTFail("could not start \(python)") }
        print(output, terminator: "")
        XCTAssertEqual(status, 0, "torch_transformer_reference.py failed:\n\(output)")
        guard status == 0 else { return }

        for (c, model, ce, aux, out) in models {
            let file = try H5File.open(out)
            let torchCE = try file.readScalar("loss", as: Double.self), torchAux = try file.readScalar("aux", as: Double.self)
            XCTAssertEqual(ce, torchCE, accuracy: 1e-5 * torchCE, "\(c.name): loss")
            XCTAssertEqual(aux, torchAux, accuracy: 1e-5, "\(c.name): aux")
            if c.moe != nil { XCTAssertGreaterThan(torchAux, 1e-3, "\(c.name): the aux losses must count") }
            var torchGrads: [String: [Float]] = [:]
            var total: Double = 0
            for p in model.parameters {
                let g = try file.read("grad/" + p.name, as: Float.self)
                XCTAssertEqual(g.shape, p.shape, "\(c.name): \(p.name) shape")
                torchGrads[p.name] = g.values
                total += g.values.reduce(0) { $0 + Double($1) * Double($1) }
            }
            let floor = 1e-3 * total.squareRoot()
            var worst = (name: "", error: 0.0)
            for p in model.parameters {
                let b = torchGrads[p.name]!, a = p.grad.array
                var diff: Double = 0, norm: Double = 0
                for i in b.indices {
                    diff += (Double(a[i]) - Double(b[i])) * (Double(a[i]) - Double(b[i]))
                    norm += Double(b[i]) * Double(b[i])
                }
                let error = diff.squareRoot() / max(norm.squareRoot(), floor)
                if error > worst.error { worst = (p.name, error) }
                XCTAssertLessThanOrEqual(error, 1e-4, "\(c.name): grad \(p.name): ‖a − b‖ = \(diff.squareRoot()), ‖b‖ = \(norm.squareRoot())")
            }
            print("torch transformer reference: case \(c.name): loss \(ce) vs \(torchCE), worst gradient \(worst.name) \(worst.error)")
        }
    }

    /// Builds, runs and writes one case; returns the model (with its gradients) and its losses.
    private func run(_ c: Case, writingTo path: String) throws -> (TransformerLM, Double, Double) {
        let config = TransformerConfig(vocab: 13, context: 8, hidden: 16, heads: 4, blocks: 2, ffn: 24,
                                       activation: c.activation, tieEmbeddings: c.tie, moe: c.moe)
        let model = TransformerLM(config: config, seed: c.seed)
        // Values well away from GPT-2's small start, so every gradient is sizeable.
        for p in model.parameters {
            var rng = RNG(seed: c.seed, purpose: "torch-transformer/" + p.name)
            rng.fillNormal(p.value, std: 0.3)
            if p.name.hasSuffix("norm/weight") { for i in 0..<p.value.count { p.value.data[i] += 1 } }
        }
        let (batch, length) = (4, config.context + 1)
        var rng = RNG(seed: c.seed, purpose: "torch-transformer/tokens")
        let tokens = (0..<(batch * length)).map { _ in Int32(rng.int(below: config.vocab)) }
        model.parameters.zeroGrad()
        let sums = tokens.withUnsafeBufferPointer { tb -> ObjectiveSums in
            let s = model.forward(TokenWindows(tokens: tb.baseAddress!, batch: batch, length: length),
                                  context: ForwardContext(training: true, step: 0, seed: c.seed))
            model.backward()
            return s
        }
        try H5File.createAtomically(path) { file in
            try Checkpoint.writeModel(model, normalization: nil, to: file, at: "model")
            try file.createDataset("tokens", tokens, shape: [batch, length])
        }
        return (model, sums.meanLoss, model.auxiliaryLoss)
    }
}
