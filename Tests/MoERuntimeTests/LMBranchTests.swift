import Foundation
import MoEData
import MoEHDF5
import MoENN
@testable import MoERuntime
import MoESpec
import MoEStore
import XCTest

/// Branch experts of a transformer LM (LMTrainTask+Branch.swift): the domains each expert
/// samples, its batch source (only its domains, a pure function of seed and step, refilled
/// identically on resume), the train-token counts and the task-file attributes.
final class LMBranchTests: XCTestCase {
    private var dir = ""
    private var layout: RunLayout!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("lmbranch-\(UUID().uuidString)").path
        layout = RunLayout(directory: dir)
        try layout.create()
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Three domains whose bytes identify them (domain d's token at i is d·80 + i % 80), in tasks/data.h5.
    private func writeCorpus(lengths: [Int] = [1000, 400, 2000]) throws -> TextCorpus {
        let texts = lengths.enumerated().map { d, n in (0..<n).map { UInt8(d * 80 + $0 % 80) } }
        let corpus = try TextCorpus.split(TextDomains(names: ["a", "b", "c"], texts: texts), train: 0.8, val: 0.1, source: "test")
        try corpus.write(hdf5: layout.taskFile("data"))
        return corpus
    }

    private func spec(experts: Int = 2, shardBy: String = "domain", extra: String = "") throws -> ExperimentSpec {
        try SpecLoader.load(yaml: """
            name: lm
            seed: 3
            data: {source: text, path: \(layout.taskFile("data"))}
            model: {kind: transformer, context: 16, hidden: 16, heads: 2, blocks: 1, ffn: 32}
            experts: \(experts)
            split: {strategy: branch, shard_by: \(shardBy)}
            train: {steps: 10, batch_size: 6}
            \(extra)
            """, file: "lm.yaml", baseDirectory: dir)
    }

    /// The batch source expert `i` of `spec` trains on, as `LMTrainTask.run` builds it.
    private func source(_ spec: ExperimentSpec, _ corpus: TextCorpus, expert i: Int, steps: Int = 40) throws -> TextBatchSource {
        let s = spec.expertSpec(i)
        let domains = try LMTrainTask.trainingDomains(s, role: .expert(i), corpus: corpus, dataFile: layout.taskFile("data"))
        return TextBatchSource(try TextBatches(corpus: corpus, context: 16, batchSize: s.train.batchSize, seed: s.seed64, domains: domains), steps: steps)
    }

    /// Every (step, row)'s domain and tokens of a source's epoch 0.
    private func drain(_ source: TextBatchSource, from skip: Int = 0) -> [[Int32]] {
        source.start(epoch: 0)
        for _ in 0..<skip { _ = source.next() }
        var rows: [[Int32]] = []
        while source.next() {
            let b = source.batch
            for r in 0..<b.batch { rows.append(Array(UnsafeBufferPointer(start: b.tokens + r * b.length, count: b.length))) }
        }
        return rows
    }

    func testEachExpertSamplesOnlyItsDomains() throws {
        let corpus = try writeCorpus()
        let spec = try spec()
        XCTAssertEqual(try LMTrainTask.trainingDomains(spec, role: .expert(0), corpus: corpus, dataFile: "d.h5"), [0, 2])
        XCTAssertEqual(try LMTrainTask.trainingDomains(spec, role: .expert(1), corpus: corpus, dataFile: "d.h5"), [1])
        XCTAssertNil(try LMTrainTask.trainingDomains(spec, role: .finetune, corpus: corpus, dataFile: "d.h5"), "finetune reads all of train")
        for (i, expected) in [(0, Set([0, 2])), (1, Set([1]))] {
            let batches = try source(spec, corpus, expert: i).batches
            var seen = Set<Int>()
            for step in 0..<40 {
                batches.fill(step: step)
                for row in 0..<6 {
                    let d = batches.domains[row]
                    seen.insert(d)
                    // The window is the domain's own train text (its bytes name the domain).
                    let window = (0...16).map { batches.tokens[row * 17 + $0] }
                    XCTAssertEqual(window, corpus.streams(.train)[d][batches.offsets[row]...(batches.offsets[row] + 16)].map(Int32.init))
                    XCTAssertTrue(window.allSatisfy { Int($0) / 80 == d })
                }
            }
            XCTAssertEqual(seen, expected, "expert \(i) sees exactly its domains")
        }
        XCTAssertEqual(LMTrainTask.trainTokens(corpus, domains: [0, 2]), 800 + 1600)
        XCTAssertEqual(LMTrainTask.trainTokens(corpus, domains: nil), 800 + 320 + 1600)
    }

    func testShardByNoneGivesEveryExpertEveryDomain() throws {
        let corpus = try writeCorpus()
        let spec = try spec(shardBy: "none")
        for i in 0..<2 { XCTAssertNil(try LMTrainTask.trainingDomains(spec, role: .expert(i), corpus: corpus, dataFile: "d.h5")) }
        // Same seed, same domains: both experts read the same batches (a soup over overrides).
        XCTAssertEqual(drain(try source(spec, corpus, expert: 0)), drain(try source(spec, corpus, expert: 1)))
    }

    /// The batches are a pure function of (seed, step): a second source gives the same ones, a
    /// source resumed at step k (the loop skips k batches) refills exactly batches k…, and an
    /// expert's `seed` override changes them.
    func testBatchesAreDeterministicAndResumable() throws {
        let corpus = try writeCorpus()
        let spec = try spec()
        let all = drain(try source(spec, corpus, expert: 0))
        XCTAssertEqual(all.count, 40 * 6)
        XCTAssertEqual(drain(try source(spec, corpus, expert: 0)), all)
        for k in [1, 17, 39] {
            XCTAssertEqual(drain(try source(spec, corpus, expert: 0), from: k), Array(all[(k * 6)...]), "resumed at step \(k)")
        }
        let reseeded = try SpecLoader.load(yaml: """
            name: lm
            seed: 3
            data: {source: text, path: \(layout.taskFile("data"))}
            model: {kind: transformer, context: 16, hidden: 16, heads: 2, blocks: 1, ffn: 32}
            experts: 2
            split: {strategy: branch, overrides: [{seed: 9}, {batch_size: 3}]}
            train: {steps: 10, batch_size: 6}
            """, file: "lm.yaml", baseDirectory: dir)
        XCTAssertNotEqual(drain(try source(reseeded, corpus, expert: 0)), all, "expert 0's seed override draws other windows")
        XCTAssertEqual(try source(reseeded, corpus, expert: 1).batches.batchSize, 3, "expert 1's batch_size override")
    }

    /// `finetune` builds the model `tasks/fuse.h5` holds from its own config (here an MoE LM, as
    /// BTX's mix writes, though the spec's model is dense), starts from its parameters and trains
    /// it on all of train for `fusion.finetune.epochs` epochs at its lr.
    func testFinetuneTrainsTheModelFuseHoldsOnAllOfTrain() throws {
        let corpus = try writeCorpus()
        let spec = try spec(extra: "fusion: {method: average, finetune: {epochs: 1, lr: 0.0001}}\n")
        let config = TransformerConfig(context: 16, hidden: 16, heads: 2, blocks: 1, ffn: 32,
                                       moe: MoEConfig(experts: 2, blocks: [0], router: .topk, k: 1))
        let fused = TransformerLM(config: config, seed: 77)
        try H5File.createAtomically(layout.taskFile("fuse")) { file in
            try Checkpoint.writeModel(fused, normalization: nil, to: file, at: "model")
        }
        try LMTrainTask(spec: spec, setup: try XCTUnwrap(spec.lmSetup), layout: layout, log: RunLog(path: nil, quiet: true), role: .finetune).run()
        let file = try H5File.open(layout.taskFile("finetune"))
        let tokens = LMTrainTask.trainTokens(corpus, domains: nil)
        XCTAssertEqual(try file.attribute("train_tokens", as: Int64.self), Int64(tokens))
        XCTAssertFalse(file.hasAttribute("shard"), "finetune is not a branch expert")
        let steps = tokens / (6 * 16)
        XCTAssertEqual(try file.attribute("steps", as: Int64.self), Int64(steps), "one epoch over all of train")
        let tuned = try LMEvaluateTask.loadLM(from: file, at: "model", file: "finetune.h5")
        XCTAssertEqual(tuned.config, config, "the fused model's own config, MoE blocks included")
        XCTAssertTrue(file.exists("router/0/load"), "the MoE model's router series")
        // Started from the fused parameters: Adam moves each by at most about lr per step.
        var largest: Float = 0
        for (a, b) in zip(tuned.parameters, fused.parameters) {
            for (x, y) in zip(a.value.array, b.value.array) { largest = max(largest, abs(x - y)) }
        }
        XCTAssertGreaterThan(largest, 0)
        XCTAssertLessThanOrEqual(largest, Float(1.2 * Double(steps) * 0.0001))
    }

    /// `fusion.finetune.steps` trains the fused LM for exactly that many steps (not an epoch of
    /// thousands), and `split.overrides[i].steps` gives one expert its own step count.
    func testFinetuneAndExpertStepsAreStepCounts() throws {
        _ = try writeCorpus()
        let spec = try spec(extra: "fusion: {method: average, finetune: {steps: 7, lr: 0.0001}}\n")
        XCTAssertEqual(spec.finetuneSpec.train.steps, 7)
        try H5File.createAtomically(layout.taskFile("fuse")) { file in
            try Checkpoint.writeModel(TransformerLM(config: TransformerConfig(context: 16, hidden: 16, heads: 2, blocks: 1, ffn: 32), seed: 3),
                                      normalization: nil, to: file, at: "model")
        }
        try LMTrainTask(spec: spec, setup: try XCTUnwrap(spec.lmSetup), layout: layout, log: RunLog(path: nil, quiet: true), role: .finetune).run()
        XCTAssertEqual(try H5File.open(layout.taskFile("finetune")).attribute("steps", as: Int64.self), 7)
        var overridden = spec
        overridden.train.steps = 5
        overridden.split.overrides = [SplitSpec.ExpertOverride(steps: 3), SplitSpec.ExpertOverride()]
        XCTAssertEqual(overridden.expertSpec(0).train.steps, 3)
        XCTAssertEqual(overridden.expertSpec(1).train.steps, 5)
    }

    func testFinetuneWithoutAFusedModelIsOneLine() throws {
        _ = try writeCorpus()
        let spec = try spec(extra: "fusion: {method: average, finetune: {epochs: 1, lr: 0.0001}}\n")
        XCTAssertThrowsError(try LMTrainTask(spec: spec, setup: try XCTUnwrap(spec.lmSetup), layout: layout, log: RunLog(path: nil, quiet: true), role: .finetune).run()) { error in
            XCTAssertTrue("\(error)".hasPrefix(layout.taskFile("fuse") + ": cannot load the model to fine-tune: "), "\(error)")
        }
    }

    func testMoreExpertsThanDomainsIsOneLine() throws {
        let corpus = try writeCorpus()
        XCTAssertThrowsError(try LMTrainTask.trainingDomains(try spec(experts: 4), role: .expert(3), corpus: corpus, dataFile: "tasks/data.h5")) { error in
            XCTAssertEqual("\(error)", "tasks/data.h5: cannot shard the corpus by domain: shards: count: shard 3 has no domain: 4 shards but 3 domains in test")
        }
    }
}
