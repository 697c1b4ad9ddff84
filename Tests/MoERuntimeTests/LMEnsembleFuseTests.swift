import Foundation
import MoECore
import MoEData
import MoEHDF5
import MoENN
@testable import MoERuntime
import MoESpec
import MoEStore
import XCTest

/// The fuse task's `fusion.method: ensemble` on transformer LM experts (BTM): two tiny LMs
/// written as `tasks/expert-<i>.h5:/model` into a run layout with a two-domain corpus; the fused
/// checkpoint is the LM ensemble with the `fusion.prior` the spec asks for, and its stored metrics
/// are the §5.4 scores of that ensemble.
final class LMEnsembleFuseTests: XCTestCase {
    private var dir = ""
    private var layout: RunLayout!
    private var corpus: TextCorpus!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("lmensemble-fuse-\(UUID().uuidString)").path
        layout = RunLayout(directory: dir)
        try layout.create()
        corpus = try TextCorpus.writeTwoDomains(to: layout, train: 0.7, val: 0.15)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    private func spec(_ fusion: String) throws -> ExperimentSpec {
        try SpecLoader.load(yaml: """
            name: lmensemble
            seed: 3
            data: {source: text, path: tasks/data.h5, split: {train: 0.7, val: 0.15, test: 0.15}}
            model: {kind: transformer, context: 8, hidden: 16, heads: 2, blocks: 2, ffn: 32}
            experts: 2
            split: {strategy: branch, shard_by: domain}
            train: {steps: 4, batch_size: 3, lr: 0.003}
            eval: {batch_size: 5}
            fusion: \(fusion)
            """, file: "lmensemble.yaml", baseDirectory: dir)
    }

    /// Expert i: the seed initialisation plus N(0, 0.3²) noise of its own stream (different experts).
    private func writeExperts(_ config: TransformerConfig) throws -> [TransformerLM] {
        try (0..<2).map { i in
            let model = TransformerLM(config: config, seed: 3)
            var rng = RNG(seed: 9, purpose: "test/expert", stream: UInt64(i))
            for p in model.parameters { for j in 0..<p.value.count { p.value.data[j] += 0.3 * rng.normal() } }
            try H5File.createAtomically(layout.taskFile("expert-\(i)")) { file in
                try file.setAttribute("train_tokens", Int64(100))
                try Checkpoint.writeModel(model, normalization: nil, to: file, at: "model")
            }
            return model
        }
    }

    func testFusedModelIsTheEnsembleWithTheSpecsPriorAndItsScores() throws {
        let validation = try spec("{method: ensemble}")
        XCTAssertEqual(validation.fusion.prior, .validation)
        let experts = try writeExperts(try XCTUnwrap(validation.lmSetup).model)
        for (fusion, expectedPrior) in [("{method: ensemble}", LMEnsembleCheckpoint.validationPrior(experts: experts, corpus: corpus, batchSize: 5)!),
                                         ("{method: ensemble, prior: uniform}", [0.5, 0.5])] {
            let s = try spec(fusion)
            try FuseTask(spec: s, layout: layout, log: RunLog(path: nil, quiet: true)).run()
            let file = try H5File.open(layout.taskFile("fuse"))
            XCTAssertTrue(LMEnsembleCheckpoint.isLMEnsemble(file, at: "model"))
            XCTAssertEqual(try file.openGroup("model").stringAttribute("prior"), s.fusion.prior.rawValue)
            let g = try file.openGroup("fusion")
            XCTAssertEqual(try g.stringAttribute("method"), "ensemble")
            XCTAssertEqual(try g.stringAttribute("posterior"), "prefix")
            // π as the ensemble stores it (normalised to sum 1: equal up to rounding).
            let stored = try file.read("fusion/coefficients", as: Double.self).values
            XCTAssertEqual(stored.count, 2)
            for (a, b) in zip(stored, expectedPrior) { XCTAssertEqual(a, b, accuracy: 1e-14, fusion) }
            let ensemble = try LMEnsembleCheckpoint.load(from: file, at: "model")
            XCTAssertEqual(ensemble.prior, stored)
            for (a, b) in zip(ensemble.experts, experts) {
                for (p, q) in zip(a.parameters, b.parameters) { XCTAssertTrue(p.value.bitwiseEqual(q.value), p.name) }
            }
            let v = LMScores.score(ensemble, corpus, split: .val, batchSize: 5).overall
            XCTAssertGreaterThan(v.scored, 0)
            XCTAssertEqual(try file.read("fusion/metrics/fused/val_loss", as: Double.self).values, [v.meanLoss])
            XCTAssertEqual(try file.read("fusion/metrics/fused/val_accuracy", as: Double.self).values, [v.accuracy])
            for (i, m) in experts.enumerated() {
                let e = LMScores.score(m, corpus, split: .val, batchSize: 5).overall
                XCTAssertEqual(try file.read("fusion/metrics/expert-\(i)/val_loss", as: Double.self).values, [e.meanLoss])
            }
            // Bayes: the ensemble's val NLL is below the better expert's plus −log π_best per window.
            let best = experts.map { LMScores.score($0, corpus, split: .val, batchSize: 5).overall.meanLoss }.min()!
            XCTAssertLessThan(v.meanLoss, best + log(1 / expectedPrior.min()!) / 8 + 1e-9)
        }
        XCTAssertNotEqual(try LMEnsembleCheckpoint.validationPrior(experts: experts, corpus: corpus, batchSize: 5).map { $0[0] }, 0.5)
    }
}
