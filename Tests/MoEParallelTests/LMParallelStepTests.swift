import MoEComm
import MoECore
import XCTest
@testable import MoENN
@testable import MoEParallel

/// The data- and expert-parallel step on a transformer LM (`TransformerLM: RowBatchedModel`), on an
/// in-process group (`ThreadGroup`), as ParallelStepTests checks it on the MLP: the batch is cut
/// by windows, each rank's mean loss is weighted by its share of the predicted tokens, and the
/// group takes the whole batch's step (exact where the maths is exact, else the end-to-end
/// tolerances: loss 1e-6, weights 1e-5, but for the key biases, whose true gradient is 0, see
/// LMParallelEndToEndTests). AdamW's first steps are about ±lr per weight whatever the gradient's
/// size, so a gradient element that nearly cancels over this tiny batch (36 tokens) turns its
/// rounding into a weight difference proportional to lr: at lr 0.003 (the end-to-end tests'
/// rate) the worst is 4e-6, a value weight of block 1; at lr 0.01 it is 1.4e-5.
final class LMParallelStepTests: XCTestCase {
    private let windows = 6, length = 7  // 6 windows of 6 read + 1 target tokens
    private lazy var tokens: [Int32] = {
        var rng = RNG(seed: 5, purpose: "lm-parallel-step-test")
        return (0..<(windows * length)).map { _ in Int32(rng.int(below: 13)) }
    }()
    private let domains = [0, 1, 0, 1, 1, 0]

    private func config(dropout: Float = 0.1, moe: Bool = false, sharedExperts: Int = 0) -> TransformerConfig {
        TransformerConfig(vocab: 13, context: 6, hidden: 8, heads: 2, blocks: 2, ffn: 12, dropout: dropout,
                          moe: moe ? MoEConfig(experts: 4, blocks: [1], router: .topk, k: 2, capacityFactor: nil,
                                               sharedExperts: sharedExperts, sharedFFN: sharedExperts > 0 ? 6 : nil) : nil)
    }

    private struct Outcome {
        var losses: [Double] = [], correct: [Int] = [], scored: [Int] = [], aux: [Double] = [], norms: [Double] = []
        var firstGradients: [[Float]] = [], weights: [[Float]] = [], names: [String] = []
    }

    private func record(_ r: StepReport, _ model: TransformerLM, _ s: Int, into o: inout Outcome) {
        o.losses.append(r.loss); o.correct.append(r.sums.correct); o.scored.append(r.sums.scored)
        o.aux.append(r.auxLoss); o.norms.append(r.gradNorm)
        if s == 0 { o.firstGradients = model.parameters.map(\.grad.array) }
    }

    /// Runs `body` on the whole batch of token windows.
    private func withBatch<T>(_ body: (TokenWindows) throws -> T) rethrows -> T {
        try tokens.withUnsafeBufferPointer { t in
            try domains.withUnsafeBufferPointer { d in
                try body(TokenWindows(tokens: t.baseAddress!, batch: windows, length: length, domains: d.baseAddress!))
            }
        }
    }

    private func oneProcess(_ config: TransformerConfig, _ opt: OptimizerConfig, steps: Int) -> Outcome {
        let trainer = Trainer(model: TransformerLM(config: config, seed: 9), config: opt, totalSteps: 10, seed: 3)
        var o = Outcome()
        withBatch { batch in
            for s in 0..<steps { record(trainer.trainStep(on: batch), trainer.model, s, into: &o) }
        }
        o.weights = trainer.model.parameters.map(\.value.array)
        return o
    }

    private func group(_ config: TransformerConfig, _ opt: OptimizerConfig, world: Int, steps: Int, shardExperts: Bool = false) throws -> [Outcome] {
        try ThreadGroup.run(world: world) { [self] comm in
            let trainer = Trainer(model: TransformerLM(config: config, seed: 9), config: opt, totalSteps: 10, seed: 3)
            let group = try DataParallelGroup(communicator: comm, parameters: trainer.model.parameters)
            group.attach(to: trainer.model, shardExperts: shardExperts)
            let step = DataParallelStep(trainer: trainer, group: group)
            var o = Outcome()
            try withBatch { batch in
                for s in 0..<steps { record(try step.trainStep(on: batch, stop: false), trainer.model, s, into: &o) }
            }
            try group.synchronizeExperts(trainer.optimizer)
            o.weights = trainer.model.parameters.map(\.value.array)
            o.names = trainer.model.parameters.map(\.name)
            return o
        }
    }

    private func maxDifference(_ a: [[Float]], _ b: [[Float]], names: [String], skipKeyBias: Bool) -> Float {
        var worst: Float = 0
        for (i, (x, y)) in zip(a, b).enumerated() {
            var d = zip(x, y).map { abs($0 - $1) }
            if skipKeyBias && names[i].hasSuffix("attn/qkv/bias") { d.removeSubrange(8..<16) }  // hidden 8
            worst = max(worst, d.max() ?? 0)
        }
        return worst
    }

    private func assertMatches(_ ranks: [Outcome], _ single: Outcome, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        for (r, o) in ranks.enumerated() {
            XCTAssertEqual(o.weights.map { $0.map(\.bitPattern) }, ranks[0].weights.map { $0.map(\.bitPattern) }, "\(what): rank \(r)'s replica",
                           file: file, line: line)
            XCTAssertEqual(o.losses.map(\.bitPattern), ranks[0].losses.map(\.bitPattern), "\(what): rank \(r)", file: file, line: line)
        }
        let o = ranks[0]
        XCTAssertEqual(o.scored, single.scored, "\(what): the report counts the whole batch's predicted tokens", file: file, line: line)
        XCTAssertEqual(o.scored.first, windows * (length - 1), file: file, line: line)
        XCTAssertEqual(o.correct, single.correct, what, file: file, line: line)
        for (a, b) in zip(o.losses, single.losses) { XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b)), "\(what): loss", file: file, line: line) }
        for (a, b) in zip(o.aux, single.aux) { XCTAssertEqual(a, b, accuracy: 1e-6, "\(what): aux loss of the global batch", file: file, line: line) }
        for (a, b) in zip(o.norms, single.norms) { XCTAssertEqual(a, b, accuracy: 1e-5 * b, "\(what): gradient norm", file: file, line: line) }
        let scale = single.firstGradients.flatMap { $0 }.map(abs).max() ?? 1
        XCTAssertLessThan(maxDifference(o.firstGradients, single.firstGradients, names: o.names, skipKeyBias: false), 1e-5 * scale,
                          "\(what): the group's gradient is the gradient of the whole batch's token mean", file: file, line: line)
        XCTAssertLessThan(maxDifference(o.weights, single.weights, names: o.names, skipKeyBias: true), 1e-5, "\(what): weights", file: file, line: line)
    }

    func testTokenWindowsAreCutByWindowsAndScoreTheirPredictedTokens() {
        let model = TransformerLM(config: config(), seed: 1)
        withBatch { batch in
            XCTAssertEqual(model.rowCount(of: batch), windows)
            XCTAssertEqual(model.scoredItems(of: batch), windows * (length - 1))
            let part = model.rows(2..<5, of: batch)
            XCTAssertEqual(part.batch, 3)
            XCTAssertEqual(part.tokens, batch.tokens + 2 * length)
            XCTAssertEqual(part.domains, batch.domains! + 2)
            XCTAssertEqual(model.scoredItems(of: part), 3 * (length - 1))
        }
    }

    func testDataParallelLMStepIsTheWholeBatchStep() throws {
        let opt = OptimizerConfig(lr: 0.003, gradClip: 0.5)
        for (config, name) in [(config(), "dense with dropout"), (config(moe: true), "MoE top-2 with dropout")] {
            let single = oneProcess(config, opt, steps: 3)
            for world in [2, 4] {  // 3 + 3 windows; 1 + 2 + 1 + 2
                assertMatches(try group(config, opt, world: world, steps: 3), single, "\(name), \(world) ranks")
            }
        }
    }

    /// Exact: the all-reduced gradient is, bit for bit, the rank-order sum of the ranks' own
    /// gradients (each rank's windows, its mean loss scaled by its share of the predicted tokens,
    /// its dropout draws offset by its first window's tokens).
    func testDataParallelLMGradientIsTheRankOrderSumOfTheRanksGradients() throws {
        let config = config(), world = 3
        let opt = OptimizerConfig(lr: 0.01, gradClip: nil)
        let reduced = try group(config, opt, world: world, steps: 1)[0].firstGradients
        let model = TransformerLM(config: config, seed: 9)
        var sum: [[Float]] = []
        withBatch { batch in
            for r in 0..<world {
                let rows = (r * windows / world)..<((r + 1) * windows / world)
                model.parameters.zeroGrad()
                var context = ForwardContext(training: true, step: 0, seed: 3)
                context.rowOffset = rows.lowerBound
                _ = model.forward(batch.windows(rows.lowerBound, count: rows.count), context: context)
                model.backward(lossScale: Float(Double(rows.count * (length - 1)) / Double(windows * (length - 1))))
                let g = model.parameters.map(\.grad.array)
                sum = r == 0 ? g : zip(sum, g).map { zip($0, $1).map { $0 + $1 } }
            }
        }
        XCTAssertEqual(reduced.map { $0.map(\.bitPattern) }, sum.map { $0.map(\.bitPattern) })
    }

    /// Each rank runs its experts of block 1 for every rank's tokens; after `synchronizeExperts`
    /// every rank holds the same bits, the whole batch's step.
    func testExpertParallelLMStepIsTheWholeBatchStep() throws {
        let opt = OptimizerConfig(lr: 0.003, gradClip: 0.5)
        let config = config(moe: true)
        let single = oneProcess(config, opt, steps: 3)
        for world in [2, 4] {
            var ranks = try group(config, opt, world: world, steps: 3, shardExperts: true)
            // An expert's gradient lives with its owner only: the whole gradient is the sum of the ranks' expert tensors.
            for (i, name) in ranks[0].names.enumerated() where name.contains("/moe/experts/") {
                ranks[0].firstGradients[i] = ranks.dropFirst().reduce(ranks[0].firstGradients[i]) { zip($0, $1.firstGradients[i]).map { $0 + $1 } }
            }
            assertMatches(ranks, single, "expert-parallel, \(world) ranks")
        }
    }

    /// Shared experts (DeepSeekMoE) are replicated on every rank, like the attention and norms:
    /// their gradients are all-reduced in data and in expert parallelism, and the group takes the
    /// whole batch's step.
    func testSharedExpertsInDataAndExpertParallelStepsAreTheWholeBatchStep() throws {
        let opt = OptimizerConfig(lr: 0.003, gradClip: 0.5)
        let config = config(moe: true, sharedExperts: 2)
        let single = oneProcess(config, opt, steps: 3)
        assertMatches(try group(config, opt, world: 2, steps: 3), single, "data-parallel with shared experts, 2 ranks")
        var ranks = try group(config, opt, world: 2, steps: 3, shardExperts: true)
        for (i, name) in ranks[0].names.enumerated() where name.contains("/moe/experts/") {
            ranks[0].firstGradients[i] = ranks.dropFirst().reduce(ranks[0].firstGradients[i]) { zip($0, $1.firstGradients[i]).map { $0 + $1 } }
        }
        let shared = ranks[0].names.indices.filter { ranks[0].names[$0].contains("/moe/shared/") }
        XCTAssertEqual(shared.count, 4)
        for i in shared {  // replicated: every rank holds the whole all-reduced gradient
            XCTAssertEqual(ranks[1].firstGradients[i].map(\.bitPattern), ranks[0].firstGradients[i].map(\.bitPattern), ranks[0].names[i])
        }
        assertMatches(ranks, single, "expert-parallel with shared experts, 2 ranks")
    }
}
