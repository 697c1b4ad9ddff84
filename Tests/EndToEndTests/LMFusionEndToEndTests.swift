import Foundation
import MoEHDF5
import MoENN
import XCTest

/// Fusion of transformer LM branch experts through the built binary (issue 15 item 2): two domain
/// experts branched from the spec-seed initialisation, fused by a weight-space method (then
/// fine-tuned) or mixed into an MoE LM (BTX, router learned while fine-tuning); `tasks/fuse.h5`,
/// the linked models, and check_run.py's numpy recomputation of every model (experts, seed,
/// fused, final) and of the fused tensors from the experts (lm_fusion_check.py).
final class LMFusionEndToEndTests: XCTestCase {
    /// The tiny LM workspace (domains code and prose, seed 1, 4 steps per expert) as a 2-expert
    /// branch run by domain in two worker processes, with `fusion`.
    private func fusionRun(_ fusion: String, extra: String = "") throws -> (dir: String, runDir: String) {
        let dir = try CLI.lmWorkspace(steps: 4, logEvery: 2)
        let path = dir + "/spec.yaml"
        let yaml = try String(contentsOfFile: path, encoding: .utf8) + """

            experts: 2
            split: {strategy: branch, shard_by: domain}
            parallelism: {mode: branch, workers: 2}
            fusion: \(fusion)
            \(extra)
            """
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        CLI.assertNoProcesses(in: dir)
        return (dir, dir + "/" + r.lastLine)
    }

    /// `average`, then fine-tuning: fuse.h5 holds the dense transformer that is the mean of the
    /// experts (numpy), with curves and barriers on the LM val loss; the final model is the
    /// fine-tuned one, started from the fused model.
    func testAveragedLMExpertsAreFineTunedAndRecomputedByNumpy() throws {
        let (_, runDir) = try fusionRun("{method: average, weights: uniform, finetune: {epochs: 1, lr: 0.001}}")
        let run = try H5File.open(runDir + "/run.h5")
        XCTAssertEqual(try run.openGroup("models").children(), ["expert-0", "expert-1", "final", "fused", "seed"])
        let fuse = try H5File.open(runDir + "/tasks/fuse.h5")
        let config = try fuse.openGroup("model").stringAttribute("config")
        XCTAssertTrue(config.contains("\"kind\":\"transformer\"") && config.contains("\"moe\":null"), config)
        XCTAssertEqual(try fuse.openGroup("fusion").stringAttribute("method"), "average")
        XCTAssertEqual(try fuse.read("fusion/coefficients", as: Double.self).values, [0.5, 0.5])
        for curve in ["expert-0--expert-1", "fused--expert-0", "fused--expert-1"] {
            let losses = try fuse.read("fusion/barrier/\(curve)/val_loss", as: Double.self).values
            XCTAssertEqual(losses.count, 11, curve)
            XCTAssertTrue(losses.allSatisfy { $0.isFinite && $0 > 0 && $0 < 7 }, "\(curve): \(losses)")
            XCTAssertTrue(fuse.exists("fusion/barrier/\(curve)/error_barrier"), curve)
        }
        // The fused model's val loss is the evaluate task's (both the §5.4 protocol).
        XCTAssertEqual(try fuse.read("fusion/metrics/fused/val_loss", as: Double.self).values,
                       try run.read("summary/fused/val_loss", as: Double.self).values)
        let finetune = try H5File.open(runDir + "/tasks/finetune.h5")
        XCTAssertTrue(try finetune.openGroup("model").stringAttribute("config").contains("\"moe\":null"))
        XCTAssertNotEqual(try CLI.modelBits(run, "final"), try CLI.modelBits(run, "fused"), "fine-tuning changed the fused model")
        try CLI.assertNumpyReproduces(runDir, models: ["expert-0", "expert-1", "fused", "final"])
        try assertFusionRecomputed(runDir, "fused by average (")
    }

    /// `task_arithmetic` without fine-tuning: the fused model is the final one and numpy
    /// recomputes θ₀ + λ Σ w_i τ_i from /models/seed and the experts.
    func testTaskArithmeticOfLMExpertsIsTheFinalModel() throws {
        let (_, runDir) = try fusionRun("{method: task_arithmetic, lambda: 0.8}")
        let run = try H5File.open(runDir + "/run.h5")
        XCTAssertEqual(try CLI.modelBits(run, "final"), try CLI.modelBits(run, "fused"))
        try CLI.assertNumpyReproduces(runDir, models: ["expert-0", "expert-1", "final"])
        try assertFusionRecomputed(runDir, "fused by task_arithmetic (")
    }

    /// A second fusion method on the same LM experts (the task cache links them) takes the
    /// experts' metrics, §5.4 sums and curves from the first run's fuse.h5 instead of scoring the
    /// experts again, and its evaluate task still gets the experts' scores bit for bit (numpy
    /// recomputes them from the HDF5).
    func testAnotherMethodOnTheSameLMExpertsReusesTheirEvidence() throws {
        let (dir, first) = try fusionRun("{method: average, weights: uniform}")
        let r = try CLI.run(["spec.yaml", "--set", "fusion.method=task_arithmetic"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let second = dir + "/" + r.lastLine
        let firstID = (first as NSString).lastPathComponent
        XCTAssertTrue(r.stdout.contains("fuse: the experts' metrics and curves reused from run \(firstID) (same experts)"), r.stdout)
        let a = try H5File.open(first + "/tasks/fuse.h5"), b = try H5File.open(second + "/tasks/fuse.h5")
        XCTAssertEqual(try b.openGroup("fusion").stringAttribute("expert_evidence_from"), firstID)
        for name in ["metrics/expert-1/sums/val", "metrics/expert-1/sums/test", "metrics/expert-0/val_loss",
                     "barrier/expert-0--expert-1/val_loss", "barrier/expert-0--expert-1/val_accuracy"] {
            XCTAssertEqual(try b.read("fusion/" + name, as: Double.self).values.map(\.bitPattern),
                           try a.read("fusion/" + name, as: Double.self).values.map(\.bitPattern), name)
        }
        let ea = try H5File.open(first + "/tasks/evaluate.h5"), eb = try H5File.open(second + "/tasks/evaluate.h5")
        XCTAssertEqual(try eb.readScalar("summary/expert-1/val_loss", as: Double.self), try ea.readScalar("summary/expert-1/val_loss", as: Double.self))
        try CLI.assertNumpyReproduces(second, models: ["expert-0", "expert-1", "final"])
    }

    /// BTX: fuse.h5 holds the MoE transformer (each expert's FFNs in the MoE blocks, the rest
    /// averaged, router fresh), the finetune task trains it with its router, and numpy recomputes
    /// both MoE LMs' losses and the mixed tensors.
    func testMixedLMExpertsBecomeAnMoELMWhoseRouterIsFineTuned() throws {
        let (_, runDir) = try fusionRun("{method: mix, weights: uniform, finetune: {epochs: 1, lr: 0.001}}",
                                        extra: "router: {type: topk, k: 1, capacity_factor: null, aux_loss: 0.01}")
        let run = try H5File.open(runDir + "/run.h5")
        let fuse = try H5File.open(runDir + "/tasks/fuse.h5")
        XCTAssertEqual(try fuse.openGroup("fusion").stringAttribute("method"), "mix")
        for name in ["fused", "final"] {
            let config = try run.openGroup("models/\(name)").stringAttribute("config")
            XCTAssertTrue(config.contains("\"experts\":2") && config.contains("\"router\":\"topk\""), "\(name): \(config)")
        }
        let fused = try CLI.modelBits(run, "fused"), final = try CLI.modelBits(run, "final")
        let routers = fused.keys.filter { $0.hasSuffix("moe/router/weight") }
        XCTAssertFalse(routers.isEmpty)
        for r in routers { XCTAssertNotEqual(fused[r], final[r], "\(r) was learned while fine-tuning") }
        XCTAssertTrue(FileManager.default.fileExists(atPath: runDir + "/tasks/finetune.h5"))
        try CLI.assertNumpyReproduces(runDir, models: ["expert-0", "expert-1", "fused", "final"])
        try assertFusionRecomputed(runDir, "fused by mix (")
    }

    /// BTM: `fusion.method: ensemble` keeps the experts apart; fuse.h5 holds the ensemble
    /// (experts, prior), the evaluate task scores it by the posterior-weighted mixture, and numpy
    /// recomputes its scores. Bayes' rule bounds its val loss: per window of T scored tokens,
    /// −ln Σ_j π_j L_j ≤ −ln π_j − ln L_j for every expert j, so the mean loss is at most
    /// min_j (loss_j − ln π_j / T); a mixture with fixed weights or the wrong posterior breaks it.
    func testBTMEnsembleOfLMExpertsIsScoredByThePosteriorMixture() throws {
        let (_, runDir) = try fusionRun("{method: ensemble, prior: validation}")
        let run = try H5File.open(runDir + "/run.h5")
        let fuse = try H5File.open(runDir + "/tasks/fuse.h5")
        let model = try fuse.openGroup("model")
        XCTAssertEqual(try model.stringAttribute("kind"), "ensemble")
        XCTAssertEqual(try model.stringAttribute("posterior"), "prefix")
        let prior = try fuse.read("model/posterior/prior", as: Double.self).values
        XCTAssertEqual(prior.count, 2)
        XCTAssertEqual(prior.reduce(0, +), 1, accuracy: 1e-9)
        XCTAssertTrue(prior.allSatisfy { $0 > 0 && $0 < 1 }, "\(prior)")
        func valLoss(_ name: String) throws -> Double { try run.read("summary/\(name)/val_loss", as: Double.self).values[0] }
        let ensemble = try valLoss("final")
        let bound = try (0..<2).map { try valLoss("expert-\($0)") - log(prior[$0]) / 16 }.min()!
        XCTAssertLessThanOrEqual(ensemble, bound + 1e-9, "Bayes' rule bounds the ensemble by its best expert")
        XCTAssertNotEqual(ensemble, try valLoss("expert-0"))
        XCTAssertNotEqual(ensemble, try valLoss("expert-1"))
        let python = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"] ?? (NSHomeDirectory() + "/.cache/moe-run/venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python) else { throw XCTSkip("no Python venv with h5py at \(python)") }
        let py = try CLI.tool(python, [CLI.repositoryRoot.appendingPathComponent("Tests/python/check_run.py").path, runDir])
        XCTAssertEqual(py.status, 0, py.stdout + py.stderr)
        XCTAssertTrue(py.stdout.contains("final"), py.stdout)
    }

    /// check_run.py's output names the recomputation of the fused tensors (`needle`).
    private func assertFusionRecomputed(_ runDir: String, _ needle: String) throws {
        let python = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"] ?? (NSHomeDirectory() + "/.cache/moe-run/venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python) else { throw XCTSkip("no Python venv with h5py at \(python)") }
        let py = try CLI.tool(python, [CLI.repositoryRoot.appendingPathComponent("Tests/python/check_run.py").path, runDir])
        XCTAssertEqual(py.status, 0, py.stdout + py.stderr)
        XCTAssertTrue(py.stdout.contains(needle), py.stdout)
    }
}
