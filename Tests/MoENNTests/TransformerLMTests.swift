import XCTest
import MoECore
@testable import MoENN

/// The transformer LM's layout, initialisation, tied head, per-token routing, evaluation in
/// chunks, dropout streams and learning.
final class TransformerLMTests: XCTestCase {
    private func withWindows<R>(_ tokens: [Int32], batch: Int, length: Int, domains: [Int]? = nil,
                                _ body: (TokenWindows) -> R) -> R {
        tokens.withUnsafeBufferPointer { tb in
            (domains ?? []).withUnsafeBufferPointer { db in
                body(TokenWindows(tokens: tb.baseAddress!, batch: batch, length: length,
                                  domains: domains == nil ? nil : db.baseAddress!))
            }
        }
    }

    func testParameterNamesFollowCheckpointLayout() {
        let moe = MoEConfig(experts: 2, blocks: [1])
        let dense = TransformerLM(config: TransformerConfig(vocab: 7, context: 4, hidden: 4, heads: 2, blocks: 2, ffn: 8, moe: moe), seed: 0)
        let block = { (i: Int) in ["norm/weight", "norm/bias", "qkv/weight", "qkv/bias", "out/weight", "out/bias"].map { "blocks/\(i)/attn/\($0)" }
            + ["blocks/\(i)/norm/weight", "blocks/\(i)/norm/bias"] }
        XCTAssertEqual(dense.parameters.map(\.name),
                       ["embed/weight", "pos/weight"]
                       + block(0) + ["w1", "b1", "w2", "b2"].map { "blocks/0/ffn/\($0)" }
                       + block(1) + ["router/weight", "experts/w1", "experts/b1", "experts/w2", "experts/b2"].map { "blocks/1/moe/\($0)" }
                       + ["norm/weight", "norm/bias", "head/weight"])
        let shapes = Dictionary(uniqueKeysWithValues: dense.parameters.map { ($0.name, $0.shape) })
        XCTAssertEqual(shapes["embed/weight"], [7, 4])
        XCTAssertEqual(shapes["pos/weight"], [4, 4])
        XCTAssertEqual(shapes["blocks/0/attn/qkv/weight"], [12, 4])
        XCTAssertEqual(shapes["blocks/0/attn/qkv/bias"], [12])
        XCTAssertEqual(shapes["blocks/0/attn/out/weight"], [4, 4])
        XCTAssertEqual(shapes["blocks/1/moe/experts/w1"], [2, 8, 4])
        XCTAssertEqual(shapes["head/weight"], [7, 4])
        let tied = TransformerLM(config: TransformerConfig(vocab: 7, context: 4, hidden: 4, heads: 2, blocks: 1, ffn: 8, tieEmbeddings: true), seed: 0)
        XCTAssertNil(tied.parameters["head/weight"])
        XCTAssertTrue(tied.outputWeight === tied.embed)
    }

    /// GPT-2: weights N(0, 0.02²), residual output projections N(0, (0.02/√(2·blocks))²),
    /// biases 0, LayerNorm 1 and 0; the same seed gives the same bits, another seed other values.
    func testGPT2Initialisation() {
        let config = TransformerConfig(vocab: 256, context: 64, hidden: 64, heads: 4, blocks: 8, ffn: 256,
                                       moe: MoEConfig(experts: 4, blocks: [3]))
        let model = TransformerLM(config: config, seed: 21)
        func std(_ t: Tensor) -> Double {
            let n = Double(t.count)
            let mean = t.array.reduce(0) { $0 + Double($1) } / n
            return (t.array.reduce(0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n).squareRoot()
        }
        let residual = 0.02 / 4.0  // 1/√(2·8) = 1/4
        for p in model.parameters {
            let name = p.name
            if name.hasSuffix("norm/weight") {
                XCTAssertTrue(p.value.array.allSatisfy { $0 == 1 }, name)
            } else if name.hasSuffix("bias") || name.hasSuffix("/b1") || name.hasSuffix("/b2") {
                XCTAssertTrue(p.value.array.allSatisfy { $0 == 0 }, name)
            } else {
                let expected = name.hasSuffix("attn/out/weight") || name.hasSuffix("/w2") ? residual : 0.02
                XCTAssertEqual(std(p.value), expected, accuracy: expected * 0.1, name)
            }
        }
        let again = TransformerLM(config: config, seed: 21), other = TransformerLM(config: config, seed: 22)
        for (a, b) in zip(model.parameters, again.parameters) { XCTAssertTrue(a.value.bitwiseEqual(b.value), a.name) }
        XCTAssertFalse(model.parameters["blocks/0/attn/qkv/weight"]!.value.bitwiseEqual(other.parameters["blocks/0/attn/qkv/weight"]!.value))
    }

    /// A tied model is the untied model whose head is the embedding: the same loss, and the tied
    /// embedding's gradient is the sum of the untied embedding's and head's gradients.
    func testTiedHeadIsTheUntiedModelWithHeadEqualToEmbedding() {
        let tied = TransformerLM(config: TinyTransformer.config(tie: true), seed: 4)
        let untied = TransformerLM(config: TinyTransformer.config(tie: false), seed: 4)
        TinyTransformer.randomize(tied.parameters, seed: 8)
        for p in tied.parameters { untied.parameters[p.name]!.value.copy(from: p.value) }
        untied.head!.value.copy(from: tied.embed.value)
        let tokens = TinyTransformer.tokens(batch: 3, length: 7, vocab: 11, seed: 1)
        let ctx = ForwardContext(training: true, step: 0, seed: 0)
        withWindows(tokens, batch: 3, length: 7) { w in
            tied.parameters.zeroGrad(); untied.parameters.zeroGrad()
            let a = tied.forward(w, context: ctx), b = untied.forward(w, context: ctx)
            XCTAssertEqual(a, b)
            tied.backward(); untied.backward()
        }
        let sum = untied.embed.grad.copy()
        sum.add(untied.head!.grad)
        XCTAssertLessThan(sum.maxAbsDifference(tied.embed.grad), 1e-6)
        XCTAssertGreaterThan(untied.head!.grad.array.map(abs).max()!, 1e-3)
        for p in tied.parameters where p.name != "embed/weight" {
            XCTAssertLessThan(p.grad.maxAbsDifference(untied.parameters[p.name]!.grad), 1e-6, p.name)
        }
    }

    /// The hash router keys each token by its id (Roller et al. 2021): equal ids go to the same
    /// experts wherever they are, and changing the hidden states (here the positions) changes nothing.
    func testHashRouterRoutesByTokenID() {
        let model = TransformerLM(config: TinyTransformer.config(moe: MoEConfig(experts: 4, blocks: [0, 1], router: .hash, k: 1)), seed: 2)
        let (batch, length) = (4, 7)
        let tokens = TinyTransformer.tokens(batch: batch, length: length, vocab: 11, seed: 3)
        func expertOfRow() -> [[Int]] {
            model.moeLayers.map { layer in
                let r = layer.router.routing
                var expert = [Int](repeating: -1, count: r.tokens)
                for e in 0..<r.experts { for i in r.offsets[e]..<r.offsets[e + 1] { expert[r.token[i]] = e } }
                return expert
            }
        }
        let ids = (0..<batch).flatMap { b in (0..<(length - 1)).map { Int(tokens[b * length + $0]) } }
        withWindows(tokens, batch: batch, length: length) { w in
            _ = model.forward(w, context: ForwardContext(training: false, step: 0, seed: 0))
            let first = expertOfRow()
            for layer in first {
                XCTAssertFalse(layer.contains(-1))
                var byID: [Int: Int] = [:]
                for (row, e) in layer.enumerated() { XCTAssertEqual(byID[ids[row], default: e], e, "token \(ids[row])"); byID[ids[row]] = e }
                XCTAssertGreaterThan(Set(layer).count, 1, "every token went to one expert: the test proves nothing")
            }
            model.pos.value.scale(by: 5)
            _ = model.forward(w, context: ForwardContext(training: false, step: 0, seed: 0))
            XCTAssertEqual(expertOfRow(), first)
        }
    }

    /// The domain router sends every token of a window to the window's domain's expert.
    func testDomainRouterRoutesByWindowDomain() {
        let model = TransformerLM(config: TinyTransformer.config(moe: MoEConfig(experts: 3, blocks: [1], router: .domain)), seed: 2)
        let tokens = TinyTransformer.tokens(batch: 3, length: 7, vocab: 11, seed: 3)
        let domains = [2, 0, 4]
        withWindows(tokens, batch: 3, length: 7, domains: domains) { w in
            _ = model.forward(w, context: ForwardContext(training: false, step: 0, seed: 0))
        }
        let r = model.moeLayers[0].router.routing
        for e in 0..<3 {
            for i in r.offsets[e]..<r.offsets[e + 1] { XCTAssertEqual(domains[r.token[i] / 6] % 3, e) }
        }
        XCTAssertEqual(r.total, 18)
    }

    /// Evaluation in chunks of windows gives the sums of one forward over all of them.
    func testEvaluationSumsInChunksEqualOneForward() {
        let model = TransformerLM(config: TinyTransformer.config(dropout: 0.3), seed: 6)
        TinyTransformer.randomize(model.parameters, seed: 1)
        let tokens = TinyTransformer.tokens(batch: 7, length: 5, vocab: 11, seed: 4)
        withWindows(tokens, batch: 7, length: 5) { w in
            let whole = model.evaluationSums(w, batchSize: 100)
            let chunked = model.evaluationSums(w, batchSize: 3)
            XCTAssertEqual(whole.scored, 28)
            XCTAssertEqual(chunked.scored, 28)
            XCTAssertEqual(whole.correct, chunked.correct)
            XCTAssertEqual(whole.lossSum, chunked.lossSum, accuracy: 1e-9 * whole.lossSum)
            XCTAssertGreaterThan(whole.correct, 0)
            // Without dropout: the evaluation forward is the training forward at p = 0.
            let evalForward = model.forward(w, context: ForwardContext(training: false, step: 9, seed: 9))
            XCTAssertEqual(evalForward, whole)
        }
    }

    /// A rank holding windows [2, 4) of a batch with `rowOffset: 2` draws the same dropout masks
    /// for them as one process holding the whole batch (data parallelism keeps the bits).
    func testRowOffsetGivesTheWholeBatchsDropout() {
        let model = TransformerLM(config: TinyTransformer.config(dropout: 0.3), seed: 6)
        let tokens = TinyTransformer.tokens(batch: 4, length: 7, vocab: 11, seed: 4)
        let (T, v) = (6, 11)
        let whole: [Float] = withWindows(tokens, batch: 4, length: 7) { w in
            _ = model.forward(w, context: ForwardContext(training: true, step: 3, seed: 5))
            return Array(UnsafeBufferPointer(start: model.logits + 2 * T * v, count: 2 * T * v))
        }
        let part: [Float] = withWindows(Array(tokens[14...]), batch: 2, length: 7) { w in
            var ctx = ForwardContext(training: true, step: 3, seed: 5)
            ctx.rowOffset = 2
            _ = model.forward(w, context: ctx)
            return Array(UnsafeBufferPointer(start: model.logits, count: 2 * T * v))
        }
        XCTAssertEqual(whole, part)
        let noOffset: [Float] = withWindows(Array(tokens[14...]), batch: 2, length: 7) { w in
            _ = model.forward(w, context: ForwardContext(training: true, step: 3, seed: 5))
            return Array(UnsafeBufferPointer(start: model.logits, count: 2 * T * v))
        }
        XCTAssertNotEqual(whole, noOffset, "the offset must matter for the test to mean anything")
    }

    /// AdamW on a small repeating text learns it: the loss falls far below ln(vocab), and no
    /// step after the first moves an activation buffer.
    func testLearnsARepeatingSequence() {
        let model = TransformerLM(config: TransformerConfig(vocab: 11, context: 8, hidden: 16, heads: 2, blocks: 2, ffn: 32,
                                                            moe: MoEConfig(experts: 2, blocks: [1])), seed: 1)
        let optimizer = AdamW(parameters: model.parameters)
        let text: [Int32] = (0..<(4 * 9)).map { Int32(($0 * 3) % 11) }
        var first = 0.0, last = 0.0, logitsAddress: UnsafeMutablePointer<Float>?
        withWindows(text, batch: 4, length: 9) { w in
            for step in 0..<60 {
                model.parameters.zeroGrad()
                let sums = model.forward(w, context: ForwardContext(training: true, step: step, seed: 1))
                model.backward()
                optimizer.step(lr: 1e-2)
                if step == 0 { first = sums.meanLoss; logitsAddress = model.logits }
                last = sums.meanLoss
                XCTAssertEqual(model.logits, logitsAddress)
            }
        }
        XCTAssertEqual(first, log(11), accuracy: 0.2)
        XCTAssertLessThan(last, 0.1)
    }
}
