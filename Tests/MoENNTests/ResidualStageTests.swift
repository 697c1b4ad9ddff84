import XCTest
import MoECore
@testable import MoENN

/// `ResidualStage` and `ClassifierHead`: the one walk of the residual MLP. Chained stages give the
/// whole model's bits; each backward agrees with finite differences.
final class ResidualStageTests: XCTestCase {
    let check = GradientCheck()
    let config = ModelConfig(features: 4, classes: 3, hidden: 6, ffn: 10, blocks: 5, activation: .gelu, dropout: 0.2)
    let labels = [0, 2, 1, 1, 0, 2, 1]
    var rows: Int { labels.count }
    let context = ForwardContext(training: true, step: 3, seed: 11)

    private func bits(_ p: UnsafePointer<Float>, _ count: Int) -> [UInt32] {
        (0..<count).map { p[$0].bitPattern }
    }

    /// The GPipe stages 0..<2, 2..<4, 4..<5 of one model, chained in one process (∂L/∂output handed
    /// back stage by stage), compute the whole model's loss, logits and gradients bit for bit: the
    /// stack of pipeline stages is the `ResidualMLP`.
    func testChainedStagesAreTheWholeModelBitForBit() {
        let whole = ResidualMLP(config: config, seed: 7), split = ResidualMLP(config: config, seed: 7)
        let x = randomTensor([rows, 4], seed: 1, purpose: "x", scale: 1.5)
        let ranges = LayerwiseModel.partition(blocks: 5, stages: 3)
        let stages = ranges.indices.map { split.stage(ranges[$0], embed: $0 == 0, head: $0 == ranges.count - 1) }
        XCTAssertEqual(stages.flatMap(\.parameters).map(\.name), split.parameters.map(\.name))
        labels.withUnsafeBufferPointer { lb in
            let y = lb.baseAddress!
            whole.parameters.zeroGrad()
            let expected = whole.forward(x.data, labels: y, rows: rows, context: context)
            whole.backward(lossScale: 0.75)

            split.parameters.zeroGrad()
            var h = UnsafePointer(x.data)
            for stage in stages { h = stage.forward(h, rows: rows, context: context) }
            let got = stages[2].loss(labels: y, rows: rows)
            var dy: UnsafePointer<Float>? = nil
            for stage in stages.reversed() { dy = stage.backward(gradOutput: dy, labels: y, lossScale: 0.75) }
            XCTAssertNil(dy, "the first stage's input is the data")

            XCTAssertEqual(got.loss.bitPattern, expected.loss.bitPattern)
            XCTAssertEqual(got.correct, expected.correct)
            XCTAssertEqual(bits(stages[2].head!.logits, rows * 3), bits(whole.logits, rows * 3))
            for (p, q) in zip(split.parameters, whole.parameters) {
                XCTAssertEqual(p.grad.array.map(\.bitPattern), q.grad.array.map(\.bitPattern), p.name)
            }
            XCTAssertTrue(whole.parameters.allSatisfy { $0.grad.array.contains { $0 != 0 } })
        }
    }

    /// A middle stage (no embedding, no head) under `L = Σ w ⊙ output`: the returned ∂L/∂input and
    /// every parameter gradient against central differences, dropout masks included.
    func testMiddleStageBackwardMatchesFiniteDifferences() {
        let model = ResidualMLP(config: config, seed: 2)
        let stage = model.stage(1..<3, embed: false, head: false)
        XCTAssertNil(stage.embed)
        XCTAssertNil(stage.head)
        XCTAssertEqual(stage.parameters.map(\.name).first, "blocks/1/norm/weight")
        let input = randomTensor([rows, 6], seed: 3, purpose: "h")
        let w = randomTensor([rows, 6], seed: 4, purpose: "w")
        let loss = { weightedSum(stage.forward(input.data, rows: self.rows, context: self.context), w) }
        model.parameters.zeroGrad()
        stage.forward(input.data, rows: rows, context: context)
        let dx = stage.backward(gradOutput: w.data, labels: nil, lossScale: 1)!
        let analytic = Tensor(shape: [rows, 6])
        analytic.data.update(from: dx, count: rows * 6)
        check.assertMatches("∂L/∂input", analytic: analytic, numeric: check.numerical(input, loss: loss))
        for p in stage.parameters {
            check.assertMatches(p.name, analytic: p.grad, numeric: check.numerical(p.value, loss: loss))
        }
        XCTAssertTrue(model.embed.weight.grad.array.allSatisfy { $0 == 0 }, "only the stage's own parameters move")
    }

    /// The head: ∂L/∂h and its parameters' gradients against central differences of the mean
    /// cross-entropy, and `lossScale` scales the whole gradient exactly.
    func testClassifierHeadBackwardMatchesFiniteDifferences() {
        let norm = LayerNorm("aux/0/norm", dim: 6), linear = Linear("aux/0/head", in: 6, out: 3)
        linear.initialize(seed: 5)
        let head = ClassifierHead(norm: norm, linear: linear)
        XCTAssertEqual(head.parameters.map(\.name), ["aux/0/norm/weight", "aux/0/norm/bias", "aux/0/head/weight", "aux/0/head/bias"])
        let h = randomTensor([rows, 6], seed: 6, purpose: "h", scale: 2)
        labels.withUnsafeBufferPointer { lb in
            let y = lb.baseAddress!
            let loss = { () -> Double in
                head.forward(h.data, rows: self.rows)
                return head.loss(labels: y, rows: self.rows).loss
            }
            let dh = Tensor(shape: [rows, 6])
            head.parameters.zeroGrad()
            _ = loss()
            head.backward(labels: y, lossScale: 1, dh: dh.data)
            check.assertMatches("∂L/∂h", analytic: dh, numeric: check.numerical(h, loss: loss))
            for p in head.parameters {
                check.assertMatches(p.name, analytic: p.grad, numeric: check.numerical(p.value, loss: loss))
            }
            let full = head.parameters.map(\.grad.array) + [dh.array]
            head.parameters.zeroGrad()
            _ = loss()
            head.backward(labels: y, lossScale: 0.5, dh: dh.data)
            let half = head.parameters.map(\.grad.array) + [dh.array]
            for (a, b) in zip(full, half) { XCTAssertEqual(a.map { ($0 * 0.5).bitPattern }, b.map(\.bitPattern)) }
        }
    }

    /// A stage of no block is the embedding followed by the head: its output is `embed(x)` and its
    /// logits are `head(LN(embed(x)))`, computed by the layers directly.
    func testStageWithoutBlocksIsTheEmbeddingThenTheHead() {
        let model = ResidualMLP(config: config, seed: 1)
        let stage = model.stage(0..<0, embed: true, head: true)
        XCTAssertEqual(stage.parameters.map(\.name), ["embed/weight", "embed/bias", "norm/weight", "norm/bias", "head/weight", "head/bias"])
        let x = randomTensor([rows, 4], seed: 2, purpose: "x")
        let out = stage.forward(x.data, rows: rows, context: context)
        let embedded = Tensor(shape: [rows, 6]), normed = Tensor(shape: [rows, 6]), logits = Tensor(shape: [rows, 3])
        let mean = Tensor(shape: [rows]), rstd = Tensor(shape: [rows])
        model.embed.forward(x.data, rows: rows, into: embedded.data)
        model.norm.forward(embedded.data, rows: rows, into: normed.data, mean: mean.data, rstd: rstd.data)
        model.head.forward(normed.data, rows: rows, into: logits.data)
        XCTAssertEqual(bits(out, rows * 6), embedded.array.map(\.bitPattern))
        XCTAssertEqual(out, stage.output)
        XCTAssertEqual(bits(stage.head!.logits, rows * 3), logits.array.map(\.bitPattern))
    }
}
