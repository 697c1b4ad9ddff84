import Foundation
import MoECore
import MoEHDF5
import XCTest

/// `fusion.method: mix` (Branch-Train-MiX) and expert merging of a replicate MoE through the CLI
/// (issue 6): the stored checkpoints are checked against the experts read back from run.h5.
final class BTXEndToEndTests: XCTestCase {
    private func run(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) throws -> (dir: String, runDir: String, run: H5File) {
        let dir = try CLI.workspace(yaml)
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        let runDir = dir + "/" + r.lastLine
        return (dir, runDir, try H5File.open(runDir + "/run.h5"))
    }

    private func floats(_ run: H5File, _ path: String) throws -> [Float] { try run.read(path, as: Float.self).values }

    /// Expert i's `blocks/b/ffn/*` is index i of the fused MoE's `blocks/b/moe/experts/*`, bit for
    /// bit; the embedding, norms and head are the uniform mean (1e-6); the router starts as the
    /// documented scaled random initialisation; fine-tuning trains the MoE (router loads logged).
    func testMixPutsEachExpertsFFNAtItsIndexAndAveragesTheRest() throws {
        let yaml = tinySpec(name: "mix").replacingOccurrences(of: "  dropout: 0.1", with: """
              dropout: 0.1
            experts: 3
            split:
              strategy: branch
              shard_by: domain
              pretrain_epochs: 1
            router: {type: topk, k: 2}
            fusion:
              method: mix
              finetune: {epochs: 1}
            """)
        let (dir, runDir, run) = try run(yaml)
        for b in 0..<2 {
            for t in ["w1", "b1", "w2", "b2"] {
                let stacked = try run.read("models/fused/blocks/\(b)/moe/experts/\(t)", as: Float.self)
                let experts = try (0..<3).map { try floats(run, "models/expert-\($0)/blocks/\(b)/ffn/\(t)") }
                XCTAssertEqual(stacked.shape.first, 3)
                let size = experts[0].count
                XCTAssertEqual(stacked.values.count, 3 * size)
                for i in 0..<3 {
                    XCTAssertEqual(stacked.values[(i * size)..<((i + 1) * size)].map(\.bitPattern), experts[i].map(\.bitPattern), "block \(b) \(t) expert \(i)")
                }
            }
        }
        for name in ["embed/weight", "embed/bias", "blocks/0/norm/weight", "blocks/1/norm/bias", "norm/weight", "head/weight", "head/bias"] {
            let experts = try (0..<3).map { try floats(run, "models/expert-\($0)/\(name)") }
            let fused = try floats(run, "models/fused/\(name)")
            for (j, x) in fused.enumerated() {
                let mean = (Double(experts[0][j]) + Double(experts[1][j]) + Double(experts[2][j])) / 3
                XCTAssertEqual(Double(x), mean, accuracy: 1e-6, "\(name)[\(j)]")
            }
        }
        let fusion = try run.openGroup("tasks/fuse/fusion")
        XCTAssertEqual(try fusion.stringAttribute("method"), "mix")
        XCTAssertEqual(try fusion.stringAttribute("router_init"), "scaled_random")
        XCTAssertEqual(try fusion.attribute("router_init_scale", as: Double.self), 0.01, accuracy: 1e-9)
        for b in 0..<2 {
            let router = try run.read("models/fused/blocks/\(b)/moe/router/weight", as: Float.self)
            XCTAssertEqual(router.shape, [3, 16])
            let bound = 0.01 / Float(16).squareRoot()
            XCTAssertLessThanOrEqual(router.values.map(abs).max()!, bound * (1 + 1e-6), "router \(b) within 0.01 × U(±1/√hidden)")
            XCTAssertGreaterThan(Set(router.values).count, 1, "router \(b) is random, not constant (ties would route by index)")
            // Exactly 0.01 × the fresh router initialisation U(±1/√hidden) from the spec seed (7).
            let fresh = Tensor(shape: [3, 16])
            var rng = RNG(seed: 7, purpose: "init/blocks/\(b)/moe/router/weight")
            rng.fillUniform(fresh, low: -1 / Float(16).squareRoot(), high: 1 / Float(16).squareRoot())
            XCTAssertEqual(router.values.map(\.bitPattern), (0..<fresh.count).map { (fresh.data[$0] * 0.01).bitPattern }, "router \(b) init")
        }
        XCTAssertNotEqual(try floats(run, "models/final/blocks/0/moe/router/weight"), try floats(run, "models/fused/blocks/0/moe/router/weight"),
                          "the router is learned during fine-tuning")
        XCTAssertTrue(run.exists("tasks/finetune/router/0/load"))
        for model in ["expert-0", "fused", "final"] { XCTAssertTrue(run.exists("summary/\(model)/test_accuracy"), model) }
        let show = try CLI.run(["show", runDir], in: dir)
        XCTAssertEqual(show.status, 0, show.stderr)
        XCTAssertTrue(show.stdout.contains("fusion: mix"), show.stdout)
        // numpy re-computes every model of the run (the MoE before and after fine-tuning, the
        // seed and the experts) from the file alone.
        try CLI.assertNumpyReproduces(runDir, models: ["final", "fused", "seed", "expert-0", "expert-1"])
        CLI.assertNoProcesses(in: dir)
    }

    /// `model.moe_blocks: [1]` with `weights: data_size`: block 0 stays dense with the experts' FFNs
    /// averaged by their shard sizes (1e-6); block 1 holds the experts; the router is a switch router.
    func testMixOfSomeBlocksAveragesTheOthers() throws {
        let yaml = tinySpec(name: "mix1", epochs: 1).replacingOccurrences(of: "  dropout: 0.1", with: """
              dropout: 0.1
              moe_blocks: [1]
            experts: 3
            split:
              strategy: branch
              shard_by: domain
            router: {type: switch}
            fusion:
              method: mix
              weights: data_size
              finetune: {epochs: 1}
            """)
        let (dir, _, run) = try run(yaml)
        let samples = try (0..<3).map { Double(try run.openGroup("tasks/expert-\($0)").attribute("train_samples", as: Int64.self)) }
        let w = samples.map { $0 / samples.reduce(0, +) }
        let coefficients = try run.read("tasks/fuse/fusion/coefficients", as: Double.self).values
        for (c, e) in zip(coefficients, w) { XCTAssertEqual(c, e, accuracy: 1e-12) }
        for t in ["w1", "b2"] {
            let experts = try (0..<3).map { try floats(run, "models/expert-\($0)/blocks/0/ffn/\(t)") }
            for (j, x) in try floats(run, "models/fused/blocks/0/ffn/\(t)").enumerated() {
                let expected = (0..<3).reduce(0.0) { $0 + w[$1] * Double(experts[$1][j]) }
                XCTAssertEqual(Double(x), expected, accuracy: 1e-6, "blocks/0/ffn/\(t)[\(j)]")
            }
        }
        XCTAssertFalse(run.exists("models/fused/blocks/0/moe"))
        XCTAssertEqual(try run.read("models/fused/blocks/1/moe/experts/w2", as: Float.self).shape, [3, 16, 32])
        XCTAssertFalse(run.exists("models/fused/blocks/1/ffn"))
        XCTAssertTrue(try run.openGroup("models/final").stringAttribute("config").contains("\"router\":\"switch\""))
        CLI.assertNoProcesses(in: dir)
    }

    /// A tiny top-1 MoE of 4 experts (`replicate`) whose experts are merged by `fusion`.
    private func mergeSpec(name: String, fusion: String) -> String {
        tinySpec(name: name).replacingOccurrences(of: "  dropout: 0.1", with: """
              dropout: 0.1
            experts: 4
            split: {strategy: replicate}
            router: {type: topk, k: 1}
            fusion: \(fusion)
            """)
    }

    /// `replicate` + `fusion.method: average` with `weights: data_size`: the dense FFN of each MoE
    /// block is Σ_e (L_e / Σ L) · expert_e with L_e the column sum of `/router/<b>/load` (1e-6);
    /// every other tensor is copied bit for bit; the MoE and the merged model are both evaluated.
    func testReplicateMergeIsTheLoadWeightedSumOfTheExperts() throws {
        let yaml = mergeSpec(name: "merge", fusion: "{method: average, weights: data_size}")
        let (dir, runDir, run) = try run(yaml)
        for b in 0..<2 {
            let (load, shape) = try run.read("tasks/train/router/\(b)/load", as: Double.self)
            XCTAssertEqual(shape.last, 4)
            let sums = (0..<4).map { e in stride(from: e, to: load.count, by: 4).reduce(0.0) { $0 + load[$1] } }
            let w = sums.map { $0 / sums.reduce(0, +) }
            let stored = try run.read("tasks/fuse/fusion/coefficients", as: Double.self)
            XCTAssertEqual(stored.shape, [2, 4])
            for e in 0..<4 { XCTAssertEqual(stored.values[b * 4 + e], w[e], accuracy: 1e-12) }
            for t in ["w1", "b1", "w2", "b2"] {
                let experts = try floats(run, "tasks/train/model/blocks/\(b)/moe/experts/\(t)")
                let merged = try floats(run, "models/fused/blocks/\(b)/ffn/\(t)")
                let size = merged.count
                XCTAssertEqual(experts.count, 4 * size)
                for j in 0..<size {
                    let expected = (0..<4).reduce(0.0) { $0 + w[$1] * Double(experts[$1 * size + j]) }
                    XCTAssertEqual(Double(merged[j]), expected, accuracy: 1e-6 * max(1, abs(expected)), "block \(b) \(t)[\(j)]")
                }
            }
        }
        for name in ["embed/weight", "blocks/1/norm/weight", "head/bias"] {
            XCTAssertEqual(try floats(run, "models/fused/\(name)").map(\.bitPattern), try floats(run, "tasks/train/model/\(name)").map(\.bitPattern), name)
        }
        XCTAssertFalse(run.exists("models/fused/blocks/0/moe"))
        XCTAssertEqual(try CLI.modelBits(run, "final"), try CLI.modelBits(run, "fused"))
        for model in ["moe", "fused", "final"] { XCTAssertTrue(run.exists("summary/\(model)/test_accuracy"), model) }
        let show = try CLI.run(["show", runDir], in: dir)
        XCTAssertEqual(show.status, 0, show.stderr)
        XCTAssertTrue(show.stdout.contains("expert merging"), show.stdout)
        CLI.assertNoProcesses(in: dir)
    }

    /// `fusion.finetune` after expert merging: the merged dense model is fine-tuned on all of
    /// train; `/models/fused` stays the merge, `/models/final` is the fine-tuned dense model.
    func testReplicateMergeCanBeFinetuned() throws {
        let yaml = mergeSpec(name: "mergeft", fusion: "{method: average, finetune: {epochs: 1, lr: 0.001}}")
        let (dir, _, run) = try run(yaml)
        XCTAssertTrue(run.exists("tasks/finetune/model/blocks/0/ffn/w1"), "the fine-tuned model is dense")
        XCTAssertNotEqual(try CLI.modelBits(run, "final"), try CLI.modelBits(run, "fused"))
        XCTAssertEqual(try floats(run, "models/final/blocks/0/ffn/w1"), try floats(run, "tasks/finetune/model/blocks/0/ffn/w1"))
        let samples = try run.openDataset("data/train/y").shape[0]
        XCTAssertEqual(try run.openGroup("tasks/finetune").attribute("steps", as: Int64.self), Int64((samples + 31) / 32), "1 epoch in batches of 32")
        for model in ["moe", "fused", "final"] { XCTAssertTrue(run.exists("summary/\(model)/test_accuracy"), model) }
        CLI.assertNoProcesses(in: dir)
    }

    /// `fusion.method: ensemble`: `/models/final` is the ensemble checkpoint; `moe-run eval` on it
    /// and the evaluate task's `final` test metrics equal an independent numpy computation of the
    /// mixture NLL (Tests/python/ensemble_reference.py, from the stored experts and posterior).
    func testEnsembleEvalIsTheMixtureNLLOfTheStoredExperts() throws {
        let yaml = tinySpec(name: "ensemble").replacingOccurrences(of: "  dropout: 0.1", with: """
              dropout: 0.1
            experts: 3
            split:
              strategy: branch
              shard_by: domain
              pretrain_epochs: 1
            fusion:
              method: ensemble
            """)
        let (dir, runDir, run) = try run(yaml)
        let final = try run.openGroup("models/final")
        XCTAssertEqual(try final.stringAttribute("kind"), "ensemble")
        XCTAssertEqual(try final.attribute("experts", as: Int64.self), 3)
        XCTAssertEqual(try final.stringAttribute("assignment"), "domain")
        for i in 0..<3 {
            XCTAssertEqual(try floats(run, "models/final/experts/\(i)/head/weight").map(\.bitPattern),
                           try floats(run, "models/expert-\(i)/head/weight").map(\.bitPattern), "expert \(i) is stored as trained")
        }
        let prior = try run.read("models/final/posterior/prior", as: Double.self).values
        XCTAssertEqual(prior.reduce(0, +), 1, accuracy: 1e-12)
        XCTAssertEqual(try run.read("models/final/posterior/mean", as: Double.self).shape, [3, 8])

        let (x, shape) = try run.read("data/test/x", as: Float.self)
        try H5File.createAtomically(dir + "/test.h5") { f in
            try f.createDataset("x", x, shape: shape)
            try f.createDataset("y", try run.read("data/test/y", as: Int64.self).values)
        }
        let e = try CLI.run(["eval", runDir + "/run.h5", dir + "/test.h5", "--batch-size", "64"], in: dir)
        XCTAssertEqual(e.status, 0, e.stderr)
        let fields = e.stdout.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" })
        let loss = Double(fields[fields.firstIndex(of: "loss")! + 1])!
        let accuracy = Double(fields[fields.firstIndex(of: "accuracy")! + 1])!
        XCTAssertEqual(loss, try run.readScalar("summary/final/test_loss", as: Double.self), accuracy: 1e-6)
        XCTAssertEqual(accuracy, try run.readScalar("summary/final/test_accuracy", as: Double.self), accuracy: 1e-4)
        XCTAssertEqual(try run.readScalar("tasks/fuse/fusion/metrics/fused/test_loss", as: Double.self),
                       try run.readScalar("summary/final/test_loss", as: Double.self), accuracy: 1e-9)

        let python = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"] ?? (NSHomeDirectory() + "/.cache/moe-run/venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python) else { throw XCTSkip("no Python with numpy: set MOE_RUN_PYTHON") }
        let script = CLI.repositoryRoot.appendingPathComponent("Tests/python/ensemble_reference.py").path
        let py = try CLI.tool(python, [script, runDir + "/tasks/fuse.h5", "model", dir + "/test.h5"])
        XCTAssertEqual(py.status, 0, py.stdout + py.stderr)
        let words = py.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" })
        let reference = Double(words[words.firstIndex(of: "loss")! + 1])!
        XCTAssertEqual(loss, reference, accuracy: 1e-5 * max(1, reference), "moe-run eval vs numpy mixture NLL")
        XCTAssertEqual(accuracy, Double(words[words.firstIndex(of: "accuracy")! + 1])!, accuracy: 1e-4)
        let show = try CLI.run(["show", runDir], in: dir)
        XCTAssertEqual(show.status, 0, show.stderr)
        CLI.assertNoProcesses(in: dir)
    }
}
