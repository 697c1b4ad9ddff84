import Foundation
import MoEHDF5
import XCTest

/// Fusion of branch experts through the CLI (issue 6): the fused model equals an independent
/// computation of the method on the expert weights read back from run.h5; the coefficients,
/// every model's metrics and the interpolation curves (11 points) are stored; fine-tuning gives a
/// `final` model different from `fused`; independent initialisations are flagged as collapsed.
final class FusionEndToEndTests: XCTestCase {
    /// 3 experts, one per synthetic domain, with `split` and `fusion` sections as given.
    private func fusionSpec(split: String = "  pretrain_epochs: 1", fusion: String, epochs: Int = 3, samples: Int = 600) -> String {
        tinySpec(name: "fuse", epochs: epochs).replacingOccurrences(of: "samples: 600", with: "samples: \(samples)")
            .replacingOccurrences(of: "  dropout: 0.1", with: """
              dropout: 0.1
            experts: 3
            split:
              strategy: branch
              shard_by: domain
            \(split)
            parallelism:
              mode: branch
              workers: 2
            fusion:
            \(fusion)
            """)
    }

    private func run(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) throws -> (dir: String, runDir: String, run: H5File, stdout: String) {
        let dir = try CLI.workspace(yaml)
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        let runDir = dir + "/" + r.lastLine
        return (dir, runDir, try H5File.open(runDir + "/run.h5"), r.stdout)
    }

    /// check_run.py passes on `runDir` and its output names `models` and contains `needles`.
    static func assertCheckRun(_ runDir: String, models: [String], _ needles: [String] = [],
                               file: StaticString = #filePath, line: UInt = #line) throws {
        try CLI.assertNumpyReproduces(runDir, models: models, file: file, line: line)
        let python = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"] ?? (NSHomeDirectory() + "/.cache/moe-run/venv/bin/python")
        let py = try CLI.tool(python, [CLI.repositoryRoot.appendingPathComponent("Tests/python/check_run.py").path, runDir])
        for needle in needles { XCTAssertTrue(py.stdout.contains(needle), "\(needle): \(py.stdout)", file: file, line: line) }
    }

    /// Every parameter of `/models/<model>` as float32 values, by checkpoint path.
    private func model(_ run: H5File, _ name: String) throws -> [String: [Float]] {
        try CLI.modelBits(run, name).filter { !$0.key.hasPrefix("input/") }.mapValues { $0.map(Float.init(bitPattern:)) }
    }

    private func assertClose(_ a: [String: [Float]], _ b: [String: [Double]], tolerance: Double = 1e-6,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Set(a.keys), Set(b.keys), file: file, line: line)
        for (name, x) in a {
            let y = b[name]!
            let worst = zip(x, y).map { abs(Double($0) - $1) / max(1, abs($1)) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, tolerance, "tensor \(name)", file: file, line: line)
        }
    }

    func testAverageWithExplicitWeightsIsTheWeightedSumWithItsEvidence() throws {
        let (dir, runDir, run, stdout) = try run(fusionSpec(fusion: "  method: average\n  weights: [1, 2, 3]"))
        let w = [1.0 / 6, 2.0 / 6, 3.0 / 6]
        let experts = try (0..<3).map { try model(run, "expert-\($0)") }
        var expected: [String: [Double]] = [:]
        for name in experts[0].keys {
            expected[name] = (0..<experts[0][name]!.count).map { j in (0..<3).reduce(0.0) { $0 + w[$1] * Double(experts[$1][name]![j]) } }
        }
        assertClose(try model(run, "fused"), expected)
        XCTAssertEqual(try CLI.modelBits(run, "final"), try CLI.modelBits(run, "fused"), "no fine-tuning: final is the fused model")
        XCTAssertEqual(try run.openGroup("models/seed").stringAttribute("kind"), "model")

        let fusion = try run.openGroup("tasks/fuse/fusion")
        XCTAssertEqual(try fusion.stringAttribute("method"), "average")
        XCTAssertEqual(try fusion.stringAttribute("weights"), "explicit")
        let coefficients = try fusion.read("coefficients", as: Double.self).values
        for (c, e) in zip(coefficients, w) { XCTAssertEqual(c, e, accuracy: 1e-12) }
        for model in ["expert-0", "expert-1", "expert-2", "fused"] {
            for metric in ["val_loss", "val_accuracy", "test_loss", "test_accuracy"] {
                XCTAssertTrue(fusion.exists("metrics/\(model)/\(metric)"), "\(model)/\(metric)")
            }
        }
        let paths = try fusion.openGroup("barrier").children().sorted()
        XCTAssertEqual(paths, ["expert-0--expert-1", "expert-0--expert-2", "expert-1--expert-2",
                               "fused--expert-0", "fused--expert-1", "fused--expert-2"])
        for path in paths {
            let alpha = try fusion.read("barrier/\(path)/alpha", as: Double.self).values
            let loss = try fusion.read("barrier/\(path)/val_loss", as: Double.self).values
            XCTAssertEqual(alpha.count, 11)
            XCTAssertEqual(loss.count, 11)
            XCTAssertEqual(alpha[5], 0.5, accuracy: 1e-12)
            let chord = zip(alpha, loss).map { a, l in l - ((1 - a) * loss[0] + a * loss[10]) }.max()!
            XCTAssertEqual(try fusion.readScalar("barrier/\(path)/barrier", as: Double.self), chord, accuracy: 1e-12, path)
        }
        // fused--expert-i ends at expert i: its curve's last point is expert i's loss on its own domain.
        XCTAssertEqual(try fusion.readScalar("metrics/fused/val_loss", as: Double.self),
                       try run.readScalar("summary/fused/val_loss", as: Double.self), accuracy: 1e-9)
        XCTAssertTrue(run.exists("summary/final/test_accuracy"))
        XCTAssertTrue(stdout.contains("fuse: average (weights [1.0, 2.0, 3.0]), coefficients [0.167, 0.333, 0.500]"), stdout)

        let show = try CLI.run(["show", runDir], in: dir)
        XCTAssertEqual(show.status, 0, show.stderr)
        XCTAssertTrue(show.stdout.contains("fusion: average (weights explicit)"), show.stdout)
        XCTAssertTrue(show.stdout.contains("    fused   "), show.stdout)
        XCTAssertTrue(show.stdout.contains("0.5000"), show.stdout)
        XCTAssertTrue(show.stdout.contains("barriers, loss / error (val, 11 points): expert-0--expert-1"), show.stdout)
        let task = try CLI.run(["show", runDir + "/tasks/fuse.h5"], in: dir)
        XCTAssertEqual(task.status, 0, task.stderr)
        XCTAssertTrue(task.stdout.contains("  fused model at /model"), task.stdout)
        try CLI.assertNumpyReproduces(runDir, models: ["final", "expert-0", "expert-2"])
        CLI.assertNoProcesses(in: dir)
    }

    /// Task arithmetic from the seed initialisation (no pre-training): θ₀ is stored as /models/seed
    /// and θ = θ₀ + λ Σ w_i (θ_i − θ₀).
    /// The evaluate task takes the experts' and the fused model's numbers from fuse.h5 (each
    /// recorded with the checkpoint it measured, attribute `model`) instead of forwarding them a
    /// second time: the numbers are equal to a fresh evaluation (numpy recomputes them from the
    /// HDF5 in check_run), and a doctored fuse.h5 value shows up in evaluate.h5, so it is read;
    /// the seed model, which the fuse task does not measure, is still evaluated.
    func testEvaluateTakesTheFuseTasksMetricsOfTheSameCheckpoints() throws {
        let (dir, runDir, run, _) = try run(fusionSpec(fusion: "  method: average"))
        run.close()
        var fuse = try H5File.open(runDir + "/tasks/fuse.h5")
        XCTAssertEqual(try fuse.openGroup("fusion/metrics/expert-1").stringAttribute("model"), "expert-1/model")
        XCTAssertEqual(try fuse.openGroup("fusion/metrics/fused").stringAttribute("model"), "fuse/model")
        let seedLoss = try H5File.open(runDir + "/tasks/evaluate.h5").readScalar("summary/seed/val_loss", as: Double.self)
        fuse.close()
        try Self.assertCheckRun(runDir, models: ["final", "fused", "expert-0"])

        fuse = try H5File.open(runDir + "/tasks/fuse.h5", mode: .readWrite)
        let loss = try fuse.readScalar("fusion/metrics/expert-0/val_loss", as: Double.self)
        try fuse.deleteLink("fusion/metrics/expert-0/val_loss")
        _ = try fuse.createScalar("fusion/metrics/expert-0/val_loss", 2 * loss)
        fuse.close()
        try FileManager.default.removeItem(atPath: runDir + "/tasks/evaluate.h5")
        let r = try CLI.run(["worker", "--run-dir", runDir, "--task", "evaluate"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let evaluate = try H5File.open(runDir + "/tasks/evaluate.h5")
        XCTAssertEqual(try evaluate.readScalar("summary/expert-0/val_loss", as: Double.self), 2 * loss, "read from fuse.h5")
        XCTAssertEqual(try evaluate.readScalar("summary/seed/val_loss", as: Double.self), seedLoss, "the seed is evaluated")
    }

    func testTaskArithmeticStartsFromTheStoredSeed() throws {
        let (dir, _, run, _) = try run(fusionSpec(split: "", fusion: "  method: task_arithmetic\n  lambda: 0.7\n  weights: [2, 1, 1]"))
        let base = try model(run, "seed"), experts = try (0..<3).map { try model(run, "expert-\($0)") }
        let w = [0.5, 0.25, 0.25]
        var expected: [String: [Double]] = [:]
        for (name, b) in base {
            expected[name] = b.indices.map { j in
                Double(b[j]) + 0.7 * (0..<3).reduce(0.0) { $0 + w[$1] * (Double(experts[$1][name]![j]) - Double(b[j])) }
            }
        }
        assertClose(try model(run, "fused"), expected, tolerance: 1e-5)
        XCTAssertEqual(try run.openGroup("tasks/fuse/fusion").attribute("lambda", as: Double.self), 0.7)
        XCTAssertTrue(run.exists("tasks/fuse/fusion/tensors/task_vector_norm"))
        CLI.assertNoProcesses(in: dir)
    }

    func testFinetuneTrainsTheFusedModelOnAllOfTrain() throws {
        let (dir, runDir, run, stdout) = try run(fusionSpec(fusion: "  method: average\n  weights: val_loss\n  finetune: {epochs: 2, lr: 0.001}"))
        XCTAssertNotEqual(try CLI.modelBits(run, "final"), try CLI.modelBits(run, "fused"))
        let task = try run.openGroup("tasks/finetune")
        XCTAssertEqual(try task.attribute("train_samples", as: Int64.self), Int64(try run.openDataset("data/train/y").shape[0]))
        XCTAssertEqual(try task.read("metrics/lr", as: Double.self).values.first ?? 0, 0.001, accuracy: 1e-4, "fusion.finetune.lr")
        XCTAssertTrue(stdout.contains("finetune: fine-tuning the fused model"), stdout)
        for name in ["fused", "final", "expert-0", "seed"] { XCTAssertTrue(run.exists("summary/\(name)/val_accuracy"), name) }
        let coefficients = try run.read("tasks/fuse/fusion/coefficients", as: Double.self).values
        XCTAssertEqual(coefficients.reduce(0, +), 1, accuracy: 1e-9)
        let show = try CLI.run(["show", runDir], in: dir)
        XCTAssertTrue(show.stdout.contains("    finetuned "), show.stdout)
        CLI.assertNoProcesses(in: dir)
    }

    /// The contrast of issue 6: experts from independent random inits average into a collapsed
    /// model (stored flag, warning line, `show`); the same experts from a shared pre-trained seed do not.
    func testIndependentInitsCollapseAndASharedPretrainedSeedDoesNot() throws {
        let independent = try run(fusionSpec(split: "  seed_model: independent", fusion: "  method: average", epochs: 12, samples: 3000))
        let flag = try independent.run.openGroup("tasks/fuse/fusion").attribute("collapsed", as: Int64.self)
        XCTAssertEqual(flag, 1)
        XCTAssertTrue(independent.stdout.contains("fuse: warning: fusion collapsed: "), independent.stdout)
        let show = try CLI.run(["show", independent.runDir], in: independent.dir)
        XCTAssertTrue(show.stdout.contains("  warning: fusion collapsed: "), show.stdout)

        let shared = try run(fusionSpec(split: "  pretrain_epochs: 6", fusion: "  method: average", epochs: 6, samples: 3000))
        XCTAssertEqual(try shared.run.openGroup("tasks/fuse/fusion").attribute("collapsed", as: Int64.self), 0)
        XCTAssertFalse(shared.stdout.contains("fuse: warning"), shared.stdout)
        let barrier = { (r: H5File) in try r.openGroup("tasks/fuse/fusion").attribute("max_expert_error_barrier", as: Double.self) }
        XCTAssertGreaterThan(try barrier(independent.run), try barrier(shared.run))
        CLI.assertNoProcesses(in: independent.dir)
        CLI.assertNoProcesses(in: shared.dir)
    }

    /// `shard_by: none` gives every expert all of train; greedy soup keeps at least the best
    /// ingredient's validation accuracy.
    func testGreedySoupOfExpertsOnAllTheData() throws {
        let yaml = fusionSpec(split: "  pretrain_epochs: 1\n  overrides: [{lr: 0.001}, {lr: 0.003, seed: 1}, {lr: 0.01, seed: 2}]",
                              fusion: "  method: greedy_soup").replacingOccurrences(of: "shard_by: domain", with: "shard_by: none")
        let (dir, runDir, run, _) = try run(yaml)
        let n = Int64(try run.openDataset("data/train/y").shape[0])
        for i in 0..<3 { XCTAssertEqual(try run.openGroup("tasks/expert-\(i)").attribute("train_samples", as: Int64.self), n) }
        let fusion = try run.openGroup("tasks/fuse/fusion")
        let best = try (0..<3).map { try fusion.readScalar("metrics/expert-\($0)/val_accuracy", as: Double.self) }.max()!
        XCTAssertGreaterThanOrEqual(try fusion.readScalar("metrics/fused/val_accuracy", as: Double.self), best)
        let c = try fusion.read("coefficients", as: Double.self).values
        XCTAssertEqual(c.reduce(0, +), 1, accuracy: 1e-9)
        XCTAssertFalse(try fusion.stringAttribute("soup_chosen").isEmpty)
        try Self.assertCheckRun(runDir, models: ["fused"], ["fused by greedy_soup (", "tensors recomputed from the experts"])
        CLI.assertNoProcesses(in: dir)
    }

    /// Layer-wise stages stacked, then fine-tuned: /models/fused is the stacked model, /models/final the fine-tuned one.
    func testStackedLayerwiseModelIsFinetuned() throws {
        let yaml = tinySpec(name: "stack").replacingOccurrences(of: "  dropout: 0.1", with: """
              dropout: 0.1
            experts: 2
            split: {strategy: layerwise}
            fusion: {method: stack, finetune: {epochs: 1}}
            """).replacingOccurrences(of: "  log_every: 5", with: "  log_every: 5\n  local: true")
        let (dir, _, run, _) = try run(yaml)
        XCTAssertNotEqual(try CLI.modelBits(run, "final"), try CLI.modelBits(run, "fused"))
        for name in ["head/weight", "blocks/1/ffn/w2"] {
            XCTAssertEqual(try run.read("models/fused/" + name, as: Float.self).values, try run.read("tasks/train/model/" + name, as: Float.self).values, name)
        }
        XCTAssertTrue(run.exists("summary/fused/test_accuracy") && run.exists("summary/final/test_accuracy"))
        CLI.assertNoProcesses(in: dir)
    }

    /// The stacked model of a pipeline-trained layer-wise run (GPipe over 2 workers) fine-tuned
    /// like any other: `fused` is the pipeline's model, `final` the fine-tuned one.
    func testPipelineTrainedStackIsFinetuned() throws {
        let yaml = tinySpec(name: "pipestack").replacingOccurrences(of: "  dropout: 0.1", with: """
              dropout: 0.1
            experts: 2
            split: {strategy: layerwise}
            parallelism: {mode: pipeline, workers: 2, microbatches: 2}
            fusion: {method: stack, finetune: {epochs: 1}}
            """)
        let (dir, _, run, _) = try run(yaml)
        XCTAssertNotEqual(try CLI.modelBits(run, "final"), try CLI.modelBits(run, "fused"))
        XCTAssertEqual(try run.read("models/fused/head/weight", as: Float.self).values, try run.read("tasks/train/model/head/weight", as: Float.self).values)
        XCTAssertEqual(try run.read("models/final/head/weight", as: Float.self).values, try run.read("tasks/finetune/model/head/weight", as: Float.self).values)
        XCTAssertTrue(run.exists("summary/fused/test_accuracy") && run.exists("summary/final/test_accuracy"))
        CLI.assertNoProcesses(in: dir)
    }

    /// TIES, DARE, DARE-TIES, Fisher merging (3 experts from a pre-trained seed) and SLERP (2
    /// experts) of MLP experts: check_run.py recomputes every fused tensor from /models/seed and the
    /// experts with numpy (fusion_recompute.py: DARE's masks from moe-run's Philox RNG re-implemented
    /// and keyed by the recorded seed; Fisher merging from the Fisher diagonals in fuse.h5).
    func testEveryWeightSpaceMethodIsRecomputedByNumpy() throws {
        let cases = [("ties", "  method: ties\n  density: 0.3"), ("dare", "  method: dare\n  density: 0.4\n  lambda: 0.9"),
                     ("dare_ties", "  method: dare_ties\n  density: 0.5"), ("fisher", "  method: fisher"),
                     ("slerp", "  method: slerp\n  t: 0.3")]
        for (method, fusion) in cases {
            var yaml = fusionSpec(fusion: fusion)
            if method == "slerp" { yaml = yaml.replacingOccurrences(of: "experts: 3", with: "experts: 2") }
            let (dir, runDir, run, _) = try run(yaml)
            XCTAssertEqual(try run.openGroup("tasks/fuse/fusion").stringAttribute("method"), method)
            try Self.assertCheckRun(runDir, models: ["final", "fused", "expert-0"],
                                                    ["fused by \(method) (", "tensors recomputed from the experts"])
            CLI.assertNoProcesses(in: dir)
        }
    }
}
