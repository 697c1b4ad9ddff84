import XCTest
import MoECore
@testable import MoENN

/// Finite-difference checks of the transformer: one whole block (attention and FFN or MoE
/// halves, with dropout), and the whole LM's next-token loss with respect to every element of
/// every parameter tensor (dense, tied, MoE with top-k, hash and domain routers).
final class TransformerGradientTests: XCTestCase {
    /// The block's loss `Σ w ⊙ y` sums 80 Float32 outputs of O(1): the project's default
    /// tolerances (h = 1e-2, atol 1e-3, see `GradientCheck`).
    let blockCheck = GradientCheck()
    /// The model's loss is a mean of cross-entropies, far less noisy: a smaller step (smaller
    /// truncation error with these O(0.4) weights) and a 5× tighter absolute tolerance.
    let check = GradientCheck(h: 3e-3, atol: 2e-4, rtol: 2e-2)

    private func checkBlock(moe: MoEConfig?, dropout: Float, file: StaticString = #filePath, line: UInt = #line) {
        let (batch, T, h, f) = (2, 5, 8, 12)
        let ffn: FeedForwardLayer = moe.map {
            MoELayer("blocks/0/moe", index: 0, hidden: h, ffn: f, activation: .gelu, config: $0, moeLayers: 1)
        } ?? DenseFFN("blocks/0/ffn", hidden: h, ffn: f, activation: .gelu)
        let attention = CausalSelfAttention("blocks/0/attn", hidden: h, heads: 2, seed: 1, weightStd: 0.02, outStd: 0.02)
        let block = TransformerBlock(index: 0, hidden: h, attention: attention, feedForward: ffn, dropout: dropout, normEps: 1e-5)
        TinyTransformer.randomize(block.parameters, seed: 4)
        if let m = ffn as? MoELayer { m.router.weight.value.scale(by: 4) }  // wide routing margins
        let x = randomTensor([batch * T, h], seed: 2, purpose: "x")
        let w = randomTensor([batch * T, h], seed: 3, purpose: "w")
        let y = Tensor(shape: [batch * T, h])
        let ctx = ForwardContext(training: true, step: 5, seed: 7)
        let run = { () -> Double in
            block.forward(x.data, batch: batch, tokens: T, into: y.data, context: ctx)
            return weightedSum(y.data, w) + Double((ffn as? MoELayer)?.auxiliaryLoss ?? 0)
        }
        _ = run()
        let base = (ffn as? MoELayer).map { $0.router.routing.token + $0.router.routing.offsets }
        var stable = true
        let loss = { () -> Double in
            let v = run()
            if let m = ffn as? MoELayer, m.router.routing.token + m.router.routing.offsets != base { stable = false }
            return v
        }
        _ = loss()
        block.parameters.zeroGrad()
        let dx = Tensor(shape: [batch * T, h])
        block.backward(w.data, dx: dx.data)
        blockCheck.assertMatches("block dx", analytic: dx, numeric: blockCheck.numerical(x, loss: loss), file: file, line: line)
        for p in block.parameters {
            blockCheck.assertMatches("block \(p.name)", analytic: p.grad, numeric: blockCheck.numerical(p.value, loss: loss), file: file, line: line)
        }
        XCTAssertTrue(stable, "a perturbation changed the routing; pick inputs further from ties", file: file, line: line)
    }

    func testDenseBlockBackward() { checkBlock(moe: nil, dropout: 0) }
    func testDenseBlockBackwardWithDropout() { checkBlock(moe: nil, dropout: 0.25) }
    func testMoEBlockBackward() { checkBlock(moe: MoEConfig(experts: 3, blocks: [0], router: .topk, k: 2), dropout: 0.1) }

    /// The whole model's loss (mean next-token cross-entropy + MoE auxiliary losses) with
    /// respect to every element of every parameter.
    private func checkModel(_ config: TransformerConfig, withDomains: Bool = false, prepare: (TransformerLM) -> Void = { _ in },
                            file: StaticString = #filePath, line: UInt = #line) {
        let model = Self.model(config, prepare: prepare)
        let (batch, length) = (3, config.context + 1)
        let tokens = TinyTransformer.tokens(batch: batch, length: length, vocab: config.vocab, seed: 5)
        let domains = [2, 0, 1]
        let ctx = ForwardContext(training: true, step: 2, seed: 11)
        tokens.withUnsafeBufferPointer { tb in
            domains.withUnsafeBufferPointer { db in
                let windows = TokenWindows(tokens: tb.baseAddress!, batch: batch, length: length,
                                           domains: withDomains ? db.baseAddress! : nil)
                let run = { () -> Double in
                    let s = model.forward(windows, context: ctx)
                    return s.meanLoss + model.auxiliaryLoss
                }
                _ = run()
                let base = TinyTransformer.routing(model)
                var stable = true
                let loss = { () -> Double in let v = run(); if TinyTransformer.routing(model) != base { stable = false }; return v }
                model.parameters.zeroGrad()
                _ = model.forward(windows, context: ctx)
                model.backward()
                for p in model.parameters {
                    check.assertMatches("\(p.name)", analytic: p.grad, numeric: check.numerical(p.value, loss: loss), file: file, line: line)
                }
                XCTAssertTrue(stable, "a perturbation changed the routing", file: file, line: line)
            }
        }
    }

    /// The model `checkModel` differentiates: seed 3, randomised, routers scaled by 4, then `prepare`.
    private static func model(_ config: TransformerConfig, prepare: (TransformerLM) -> Void) -> TransformerLM {
        let model = TransformerLM(config: config, seed: 3)
        TinyTransformer.randomize(model.parameters, seed: 9)
        for layer in model.moeLayers { layer.router.weight.value.scale(by: 4) }
        prepare(model)
        return model
    }

    /// The experts each token of `checkModel`'s batch is routed to.
    private func routing(_ config: TransformerConfig, prepare: (TransformerLM) -> Void) -> [[Int]] {
        let model = Self.model(config, prepare: prepare)
        let tokens = TinyTransformer.tokens(batch: 3, length: config.context + 1, vocab: config.vocab, seed: 5)
        return tokens.withUnsafeBufferPointer { tb in
            _ = model.forward(TokenWindows(tokens: tb.baseAddress!, batch: 3, length: config.context + 1),
                              context: ForwardContext(training: true, step: 2, seed: 11))
            return TinyTransformer.routing(model)
        }
    }

    func testDenseModelEveryParameter() { checkModel(TinyTransformer.config()) }
    func testTiedDenseModelWithDropoutEveryParameter() { checkModel(TinyTransformer.config(tie: true, dropout: 0.2)) }
    func testMoEModelTopKEveryParameter() {
        checkModel(TinyTransformer.config(moe: MoEConfig(experts: 3, blocks: [1], router: .topk, k: 2)))
    }
    /// Two shared experts (DeepSeekMoE, `blocks/1/moe/shared/*`) beside the routed ones.
    func testMoEModelWithSharedExpertsEveryParameter() {
        checkModel(TinyTransformer.config(moe: MoEConfig(experts: 3, blocks: [1], router: .topk, k: 2, sharedExperts: 2, sharedFFN: 6)))
    }
    /// DeepSeek-V3's routing in the whole model: sigmoid scores, the expert bias in selection
    /// (set away from 0, so it changes which experts are chosen) and a shared expert.
    func testMoEModelSigmoidBiasAndSharedExpertEveryParameter() {
        let config = TinyTransformer.config(moe: MoEConfig(experts: 3, blocks: [1], router: .topk, k: 2, sharedExperts: 1, sharedFFN: 6,
                                                           score: .sigmoid, balance: .bias))
        let setBias = { (model: TransformerLM) in
            let bias = model.buffers[0].value
            for e in 0..<bias.count { bias.data[e] = [0.3, -0.2, 0.05][e] }
        }
        XCTAssertNotEqual(routing(config, prepare: { _ in }), routing(config, prepare: setBias), "the bias changes the selection")
        checkModel(config, prepare: setBias)
    }
    func testMoEModelHashRouterEveryParameter() {
        checkModel(TinyTransformer.config(tie: true, moe: MoEConfig(experts: 3, blocks: [0, 1], router: .hash, k: 1)))
    }
    func testMoEModelDomainRouterEveryParameter() {
        checkModel(TinyTransformer.config(moe: MoEConfig(experts: 3, blocks: [0], router: .domain)), withDomains: true)
    }
}
