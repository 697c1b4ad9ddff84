import Foundation
import MoEHDF5
import MoENN
import XCTest

/// `split.strategy: branch` of a transformer LM through the built binary: two domain experts
/// (Branch-Train-Merge's branching) branched from the spec-seed initialisation, each trained on
/// its own domain with its own overrides, in two worker processes; their task files, their
/// per-domain summaries, `moe-run show`, and the numpy recomputation of each expert (check_run.py).
final class LMBranchEndToEndTests: XCTestCase {
    /// The tiny LM workspace (domains code and prose, seed 1, lr 0.003) as a 2-expert branch run;
    /// expert 1 trains with lr 0.001 and its own batch seed.
    private func branchWorkspace(steps: Int, split: String = "{strategy: branch, shard_by: domain, overrides: [{}, {lr: 0.001, seed: 5}]}") throws -> String {
        let dir = try CLI.lmWorkspace(steps: steps, logEvery: 1)
        let path = dir + "/spec.yaml"
        let yaml = try String(contentsOfFile: path, encoding: .utf8) + """

            experts: 2
            split: \(split)
            parallelism: {mode: branch, workers: 2}
            """
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return dir
    }

    func testDomainExpertsFromOneSeedModelAreTrainedApartAndRecomputedByNumpy() throws {
        let steps = 4
        let dir = try branchWorkspace(steps: steps)
        let plan = try CLI.run(["plan", "spec.yaml"], in: dir)
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertTrue(plan.stdout.contains("train a copy of the seed model (initialised from seed 1) on shard 1/2 of train (by domain)"), plan.stdout)

        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        CLI.assertNoProcesses(in: dir)
        let runDir = dir + "/" + r.lastLine
        let run = try H5File.open(runDir + "/run.h5")
        XCTAssertEqual(try run.openGroup("models").children(), ["expert-0", "expert-1"], "no fusion: the run delivers the experts")
        let data = try H5File.open(runDir + "/tasks/data.h5")
        XCTAssertEqual(try data.readStrings("data/domains"), ["code", "prose"])
        let domains = try data.read("data/train/domain", as: Int64.self).values
        var models: [[String: [UInt32]]] = []
        for (i, lr) in [(0, 0.003), (1, 0.001)] {
            let task = try H5File.open(runDir + "/tasks/expert-\(i).h5")
            let tokens = Int64(domains.filter { $0 == Int64(i) }.count)
            XCTAssertEqual(try task.attribute("train_tokens", as: Int64.self), tokens, "expert \(i) trains on domain \(i)'s train tokens")
            XCTAssertEqual(try task.attribute("train_samples", as: Int64.self), tokens, "the training items FuseTask weighs by")
            XCTAssertEqual(try task.attribute("shard", as: Int64.self), Int64(i))
            XCTAssertEqual(try task.stringAttribute("shard_by"), "domain")
            XCTAssertEqual(try task.attribute("steps", as: Int64.self), Int64(steps))
            XCTAssertEqual(try task.read("metrics/train_loss", as: Double.self).values.count, steps)
            let config = try task.openGroup("model").stringAttribute("config")
            XCTAssertTrue(config.contains("\"moe\":null"), "dense experts: \(config)")
            models.append(try CLI.modelBits(run, "expert-\(i)"))
            // Started from the spec-seed initialisation: Adam moves a parameter by at most about
            // lr per step (|m̂/√v̂| ≤ 1.003 for betas (0.9, 0.99) over 4 steps, plus weight decay),
            // while another initialisation differs by the init scale (0.02) almost everywhere.
            let seedModel = TransformerLM(config: try JSONDecoder().decode(TransformerConfig.self, from: Data(config.utf8)), seed: 1)
            var largest: Float = 0
            for p in seedModel.parameters {
                let trained = try XCTUnwrap(models[i][p.name], p.name)
                for (a, b) in zip(trained, p.value.array) { largest = max(largest, abs(Float(bitPattern: a) - b)) }
            }
            XCTAssertLessThanOrEqual(largest, Float(1.2 * Double(steps) * lr), "expert \(i) moved \(largest) from the seed model")
            XCTAssertGreaterThan(largest, 0, "expert \(i) trained")
            for metric in ["val_loss", "val_bits_per_byte", "test_loss"] {
                XCTAssertTrue(run.exists("summary/expert-\(i)/\(metric)"), "expert-\(i)/\(metric)")
                XCTAssertTrue(run.exists("summary/expert-\(i)/domains/code/\(metric)"), "expert-\(i) code/\(metric)")
            }
        }
        XCTAssertNotEqual(models[0], models[1], "the experts differ")
        let show = try CLI.run(["show", runDir + "/tasks/expert-1.h5"], in: dir)
        XCTAssertEqual(show.status, 0, show.stderr)
        let prose = domains.filter { $0 == 1 }.count
        XCTAssertTrue(show.stdout.contains("branch expert on shard 1 (by domain), \(prose) train tokens"), show.stdout)
        try CLI.assertNumpyReproduces(runDir, models: ["expert-0", "expert-1"])
    }

    /// The contrast that makes the seed-model check above meaningful: with `split.seed_model:
    /// independent` each expert starts from its own initialisation, far more than Adam's
    /// 1.2·steps·lr from the spec-seed one.
    func testIndependentExpertsStartElsewhere() throws {
        let steps = 4
        let dir = try branchWorkspace(steps: steps, split: "{strategy: branch, seed_model: independent}")
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let run = try H5File.open(dir + "/" + r.lastLine + "/run.h5")
        for (i, lr) in [(0, 0.003), (1, 0.003)] {
            let bits = try CLI.modelBits(run, "expert-\(i)")
            let config = try run.openGroup("models/expert-\(i)").stringAttribute("config")
            let seedModel = TransformerLM(config: try JSONDecoder().decode(TransformerConfig.self, from: Data(config.utf8)), seed: 1)
            var largest: Float = 0
            for p in seedModel.parameters {
                for (a, b) in zip(try XCTUnwrap(bits[p.name]), p.value.array) { largest = max(largest, abs(Float(bitPattern: a) - b)) }
            }
            XCTAssertGreaterThan(largest, Float(1.2 * Double(steps) * lr), "expert \(i) starts from its own initialisation")
        }
    }
}
