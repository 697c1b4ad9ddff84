import Foundation
import MoEData
import MoEHDF5
import MoENN
@testable import MoERuntime
import MoESpec
import MoEStore
import XCTest

/// The language-model tasks on a tiny corpus: `LMTrainTask` through the one `TrainingLoop`
/// (step budget, metrics, router series, the final model), `LMEvaluateTask` (§5.4 summary,
/// overall and per domain, recomputed here from the model and the windows), and `moe-run show`'s
/// per-domain table.
final class LMTrainTaskTests: XCTestCase {
    private var dir = ""
    private var layout: RunLayout!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("lmtask-\(UUID().uuidString)").path
        layout = RunLayout(directory: dir)
        try layout.create()
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Two domains of different text, split 0.8 / 0.1 / the rest, in tasks/data.h5.
    private func writeCorpus() throws -> TextCorpus { try TextCorpus.writeTwoDomains(to: layout, train: 0.8, val: 0.1) }

    private func spec(_ extra: String = "") throws -> ExperimentSpec {
        try SpecLoader.load(yaml: """
            name: lm
            seed: 3
            train: {epochs: 1, batch_size: 4, lr: 0.003, log_every: 2, eval_every: 3, checkpoint_every: 3, betas: [0.9, 0.99]}
            eval: {batch_size: 5}
            \(extra)
            """, file: "lm.yaml", baseDirectory: dir)
    }

    private func setup(moe: MoEConfig? = nil, steps: Int = 6) -> LMSetup {
        LMSetup(model: TransformerConfig(context: 8, hidden: 16, heads: 2, blocks: 2, ffn: 32, moe: moe),
                corpusPath: layout.taskFile("data"), corpusSource: "test", train: 0.8, val: 0.1, steps: steps)
    }

    func testTrainsForTheStepBudgetAndWritesTheSeries() throws {
        _ = try writeCorpus()
        let log = RunLog(path: nil, quiet: true)
        try LMTrainTask(spec: try spec(), setup: setup(), layout: layout, log: log).run()
        let file = try H5File.open(layout.taskFile("train"))
        XCTAssertEqual(try file.attribute("steps", as: Int64.self), 6)
        XCTAssertEqual(try file.read("metrics/step", as: Int64.self).values, [2, 4, 6])
        let loss = try file.read("metrics/train_loss", as: Double.self).values
        XCTAssertEqual(loss.count, 3)
        XCTAssertTrue(loss.allSatisfy { $0.isFinite && $0 > 0 && $0 < 7 }, "\(loss)")
        // Throughput in tokens (issue 13 item 5); no epoch or samples_per_second for sampled windows.
        XCTAssertEqual(try file.children(of: "metrics"), ["eval", "grad_norm", "lr", "step", "tokens_per_second", "train_accuracy", "train_loss"])
        XCTAssertEqual(try file.read("metrics/tokens_per_second", as: Double.self).values.count, 3)
        XCTAssertTrue(try file.read("metrics/tokens_per_second", as: Double.self).values.allSatisfy { $0 > 0 })
        XCTAssertEqual(try file.read("metrics/eval/step", as: Int64.self).values, [3, 6])
        XCTAssertEqual(try Checkpoint.readKindAndConfig(from: file, at: "model").kind, "transformer")
        XCTAssertFalse(file.exists("router"), "a dense model has no router series")
    }

    func testMoERouterSeriesPerBlock() throws {
        _ = try writeCorpus()
        let moe = MoEConfig(experts: 4, blocks: [1], router: .topk, k: 2)
        try LMTrainTask(spec: try spec(), setup: setup(moe: moe), layout: layout, log: RunLog(path: nil, quiet: true)).run()
        let file = try H5File.open(layout.taskFile("train"))
        XCTAssertEqual(try file.openGroup("router").children(), ["1"])
        let (load, shape) = try file.read("router/1/load", as: Double.self)
        XCTAssertEqual(shape, [3, 4])
        // Every one of the batch·context tokens is routed to k = 2 experts.
        XCTAssertEqual(load[0 ..< 4].reduce(0, +), Double(4 * 8 * 2), accuracy: 1e-9)
        XCTAssertEqual(try file.read("metrics/aux_loss", as: Double.self).values.count, 3)
        let model = try LMEvaluateTask.loadLM(from: file, at: "model", file: "train.h5")
        XCTAssertLessThan(model.activeParameterCount, model.parameters.scalarCount)
    }

    func testEvaluationFollowsTheProtocolOverallAndPerDomain() throws {
        let corpus = try writeCorpus()
        let log = RunLog(path: nil, quiet: true)
        try LMTrainTask(spec: try spec(), setup: setup(), layout: layout, log: log).run()
        try LMEvaluateTask.run(splits: [.val, .test], batchSize: 5, layout: layout, log: log)
        let eval = try H5File.open(layout.taskFile("evaluate"))
        let model = try LMEvaluateTask.loadLM(from: try H5File.open(layout.taskFile("train")), at: "model", file: "train.h5")
        // Recompute by hand: windows of 9 tokens at stride 8, scored on tokens 1...8, one forward per domain.
        var total = ObjectiveSums()
        for windows in corpus.evaluationWindows(.val, context: 8) {
            var tokens = [Int32](repeating: 0, count: windows.count * 9)
            tokens.withUnsafeMutableBufferPointer { windows.fill($0.baseAddress!, windows: 0 ..< windows.count) }
            let sums = tokens.withUnsafeBufferPointer {
                model.evaluationSums(TokenWindows(tokens: $0.baseAddress!, batch: windows.count, length: 9), batchSize: 5)
            }
            XCTAssertEqual(sums.scored, windows.count * 8)
            let base = "summary/final/domains/\(windows.name)/"
            XCTAssertEqual(try eval.readScalar(base + "val_loss", as: Double.self), sums.meanLoss, accuracy: 1e-9)
            XCTAssertEqual(try eval.readScalar(base + "val_accuracy", as: Double.self), sums.accuracy, accuracy: 1e-12)
            XCTAssertEqual(try eval.readScalar(base + "val_bits_per_byte", as: Double.self), sums.meanLoss / M_LN2, accuracy: 1e-9)
            total += sums
        }
        XCTAssertEqual(try eval.readScalar("summary/final/val_loss", as: Double.self), total.meanLoss, accuracy: 1e-9)
        XCTAssertEqual(try eval.readScalar("summary/final/val_bits_per_byte", as: Double.self), total.meanLoss / M_LN2, accuracy: 1e-9)
        XCTAssertTrue(eval.exists("summary/final/test_loss"))
        XCTAssertTrue(eval.exists("summary/final/domains/code/test_accuracy"))
        let table = try RunSummary(path: layout.taskFile("evaluate")).text()
        XCTAssertTrue(table.contains("per domain:"), table)
        XCTAssertTrue(table.contains("test_bits_per_byte"), table)
        XCTAssertTrue(table.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces).hasPrefix("prose ") }, table)
    }

    /// The evaluate task scores a model once: a second name for the same weights (`final` =
    /// `fused`, `best` at the last step) reuses the scores only when every bit matches.
    func testSameWeightsNeedsEveryBitOfParametersAndBuffers() throws {
        let config = TransformerConfig(context: 8, hidden: 16, heads: 2, blocks: 1, ffn: 32)
        let a = TransformerLM(config: config, seed: 1), b = TransformerLM(config: config, seed: 1)
        XCTAssertTrue(LMEvaluateTask.sameWeights(a, b))
        XCTAssertFalse(LMEvaluateTask.sameWeights(a, TransformerLM(config: config, seed: 2)))
        b.parameters.last!.value.data[0] = b.parameters.last!.value.data[0].nextUp
        XCTAssertFalse(LMEvaluateTask.sameWeights(a, b))
        var wider = config
        wider.ffn = 48
        XCTAssertFalse(LMEvaluateTask.sameWeights(a, TransformerLM(config: wider, seed: 1)))
        let moe = MoEConfig(experts: 2, blocks: [0], router: .topk, k: 1, balance: .bias)
        let c = TransformerLM(config: TransformerConfig(context: 8, hidden: 16, heads: 2, blocks: 1, ffn: 32, moe: moe), seed: 1)
        let d = TransformerLM(config: c.config, seed: 1)
        XCTAssertTrue(LMEvaluateTask.sameWeights(c, d))
        let bias = try XCTUnwrap(d.buffers.first)
        bias.value.data[0] += 0.5
        XCTAssertFalse(LMEvaluateTask.sameWeights(c, d), "the routing bias changes the scores")
    }

    func testEvalCommandScoresATransformerCheckpointOnText() throws {
        _ = try writeCorpus()
        try LMTrainTask(spec: try spec(), setup: setup(), layout: layout, log: RunLog(path: nil, quiet: true)).run()
        let r = try XCTUnwrap(try Evaluation.evaluateText(checkpoint: layout.taskFile("train"), data: layout.taskFile("data"), batchSize: 5))
        XCTAssertEqual(r.parts.map(\.name), ["train", "val", "test"])
        for p in r.parts { XCTAssertEqual(p.bitsPerByte, p.loss / M_LN2, accuracy: 1e-12) }
        XCTAssertThrowsError(try Evaluation.evaluateText(checkpoint: layout.taskFile("train"), data: dir + "/none", batchSize: 5)) { error in
            XCTAssertEqual("\(error)", "\(dir)/none: no such text corpus (give a folder with one .txt file or sub-folder per domain, or an HDF5 corpus file)")
        }
    }
}
