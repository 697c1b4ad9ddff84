import XCTest
import MoECore
@testable import MoENN

/// `TransformerStage` and `LMHead`: the one walk of the transformer LM, cut into GPipe stages and
/// into layer-local stages with auxiliary LM heads. Chained stages give the whole model's bits;
/// every layer-local stage gets exactly its own loss's gradient (finite differences), the
/// auxiliary LM heads' included.
final class TransformerStageTests: XCTestCase {
    /// As the whole-model check of `TransformerGradientTests`: a mean of cross-entropies.
    let check = GradientCheck(h: 3e-3, atol: 2e-4, rtol: 2e-2)
    let (windows, length) = (3, 7)

    private func config(blocks: Int, dropout: Float = 0) -> TransformerConfig {
        TransformerConfig(vocab: 11, context: 6, hidden: 8, heads: 2, blocks: blocks, ffn: 12, activation: .gelu,
                          dropout: dropout, tieEmbeddings: false, moe: nil)
    }

    private func bits(_ p: UnsafePointer<Float>, _ count: Int) -> [UInt32] { (0..<count).map { p[$0].bitPattern } }

    /// GPipe stages 0..<2, 2..<4, 4..<5 of one LM chained in one process (∂L/∂output handed back
    /// stage by stage) compute the whole model's loss, logits and gradients bit for bit, dropout
    /// included: the stack of pipeline stages is the `TransformerLM`.
    func testChainedStagesAreTheWholeModelBitForBit() {
        let c = config(blocks: 5, dropout: 0.2)
        let whole = TransformerLM(config: c, seed: 7), split = TransformerLM(config: c, seed: 7)
        let tokens = TinyTransformer.tokens(batch: windows, length: length, vocab: 11, seed: 2)
        let ranges = StagePartition.ranges(blocks: 5, stages: 3)
        let stages = ranges.indices.map { split.stage(ranges[$0], embed: $0 == 0, head: $0 == 2) }
        XCTAssertEqual(stages.flatMap(\.parameters).map(\.name), split.parameters.map(\.name))
        XCTAssertEqual((0..<3).flatMap { split.stageParameters($0, of: ranges) }.map(\.name), split.parameters.map(\.name))
        var context = ForwardContext(training: true, step: 3, seed: 11)
        context.rowOffset = 2
        tokens.withUnsafeBufferPointer { tb in
            let batch = TokenWindows(tokens: tb.baseAddress!, batch: windows, length: length)
            whole.parameters.zeroGrad()
            let expected = whole.forward(batch, context: context)
            whole.backward(lossScale: 0.75)

            split.parameters.zeroGrad()
            var h: UnsafePointer<Float>? = nil
            for stage in stages { h = stage.forward(batch, input: h, context: context) }
            let got = stages[2].loss(batch)
            var dy: UnsafePointer<Float>? = nil
            for stage in stages.reversed() { dy = stage.backward(batch, gradOutput: dy, lossScale: 0.75) }
            XCTAssertNil(dy, "the first stage's input is the tokens")

            XCTAssertEqual(got.lossSum.bitPattern, expected.lossSum.bitPattern)
            XCTAssertEqual(got, expected)
            XCTAssertEqual(bits(stages[2].head!.logits, batch.scoredTokens * 11), bits(whole.logits, batch.scoredTokens * 11))
            for (p, q) in zip(split.parameters, whole.parameters) {
                XCTAssertEqual(p.grad.array.map(\.bitPattern), q.grad.array.map(\.bitPattern), p.name)
            }
            XCTAssertTrue(whole.parameters.allSatisfy { $0.grad.array.contains { $0 != 0 } })
        }
    }

    /// The layer-local stages of an LM: stage 0 (embeddings, blocks 0-1, auxiliary LM head
    /// `aux/0/{norm, head}`) and stage 1 (block 2, the model's final norm and head).
    func testLayerwiseStagesOwnDisjointParametersWithAuxiliaryLMHeads() {
        let net = LayerwiseModel(model: TransformerLM(config: config(blocks: 3), seed: 1), stages: 2, seed: 1)
        XCTAssertEqual(net.stages, [0..<2, 2..<3])
        let names = net.stageParameters.map { $0.map(\.name) }
        XCTAssertEqual(Array(names[0].prefix(2)), ["embed/weight", "pos/weight"])
        XCTAssertEqual(Array(names[0].suffix(3)), ["aux/0/norm/weight", "aux/0/norm/bias", "aux/0/head/weight"])
        XCTAssertEqual(Array(names[1].suffix(3)), ["norm/weight", "norm/bias", "head/weight"])
        XCTAssertEqual(net.auxParameters.map(\.name), ["aux/0/norm/weight", "aux/0/norm/bias", "aux/0/head/weight"])
        XCTAssertEqual(net.auxParameters[2].shape, [11, 8])
        XCTAssertEqual(Set(names.joined()).count, net.parameters.count, "stages share no parameter")
        XCTAssertEqual(net.parameters.map(\.name), net.model.parameters.map(\.name) + net.auxParameters.map(\.name))
        XCTAssertEqual(LayerwiseModel<TransformerLM>.checkpointKind, "transformer")
        // GPT-2 start of the auxiliary head: N(0, 0.02²) from its own named stream.
        var rng = RNG(seed: 1, purpose: "init/aux/0/head/weight")
        let expected = Tensor(shape: [11, 8])
        rng.fillNormal(expected, std: 0.02)
        XCTAssertEqual(net.auxParameters[2].value.array, expected.array)
    }

    /// Finite differences of each stage's loss against the analytic gradient of every element of
    /// every parameter, the auxiliary LM head's included; a stage-0 parameter moves the stage-1
    /// loss, but that derivative is not in its gradient (the stage input is detached).
    func testEachStageGetsOnlyItsOwnLossGradient() {
        let net = LayerwiseModel(model: TransformerLM(config: config(blocks: 3), seed: 3), stages: 2, seed: 3)
        TinyTransformer.randomize(net.parameters, seed: 5)
        let tokens = TinyTransformer.tokens(batch: 2, length: 5, vocab: 11, seed: 4)
        let ctx = ForwardContext(training: true, step: 0, seed: 9)
        tokens.withUnsafeBufferPointer { tb in
            let batch = TokenWindows(tokens: tb.baseAddress!, batch: 2, length: 5)
            func stageLoss(_ s: Int) -> () -> Double { { net.forwardStages(batch, context: ctx)[s].meanLoss } }
            net.parameters.zeroGrad()
            net.forwardStages(batch, context: ctx)
            net.backward()
            for (s, params) in net.stageParameters.enumerated() {
                for p in params {
                    check.assertMatches("stage \(s) \(p.name)", analytic: p.grad, numeric: check.numerical(p.value, loss: stageLoss(s)))
                }
            }
            let w = net.model.parameters["blocks/1/ffn/w2"]!
            let later = check.numerical(w.value, loss: stageLoss(1))
            let own = check.numerical(w.value, loss: stageLoss(0))
            XCTAssertGreaterThan(later.map(abs).max()!, 1e-2, "the later stage depends on the earlier one")
            XCTAssertFalse(check.mismatches(analytic: w.grad.array.map(Double.init), numeric: zip(own, later).map { $0 + $1 }).isEmpty,
                           "the gradient must not include the later stage's loss")
            let aux = net.auxParameters.first { $0.name == "aux/0/head/weight" }!
            XCTAssertEqual(check.numerical(aux.value, loss: stageLoss(1)).map(abs).max()!, 0, "the auxiliary head does not touch stage 1")
        }
    }

    /// The stack is the model: the last stage's sums are the `TransformerLM`'s own, bit for bit,
    /// and as a `TrainableModel` the stack evaluates what the model evaluates.
    func testStackedModelIsTheLastStage() {
        let net = LayerwiseModel(model: TransformerLM(config: config(blocks: 3), seed: 6), stages: 3, seed: 6)
        let plain = TransformerLM(config: config(blocks: 3), seed: 6)
        let tokens = TinyTransformer.tokens(batch: 5, length: 7, vocab: 11, seed: 8)
        tokens.withUnsafeBufferPointer { tb in
            let batch = TokenWindows(tokens: tb.baseAddress!, batch: 5, length: 7)
            let ctx = ForwardContext(training: false, step: 0, seed: 0)
            let stages = net.forwardStages(batch, context: ctx)
            XCTAssertEqual(stages.count, 3)
            XCTAssertEqual(stages[2], plain.forward(batch, context: ctx))
            XCTAssertNotEqual(stages[0].lossSum, stages[2].lossSum)
            XCTAssertEqual(net.evaluationSums(batch, batchSize: 2), plain.evaluationSums(batch, batchSize: 2))
            let chunked = net.stageEvaluationSums(batch, batchSize: 2)
            XCTAssertEqual(chunked.map(\.scored), [30, 30, 30])
        }
    }
}
