import Foundation
import MoEHDF5
import XCTest

/// The shipped issue-15 LM study specs (experiments/lm-btm.yaml, lm-btm-average.yaml, lm-btx.yaml,
/// lm-switch.yaml, lm-seed-recipe.yaml, sweep-lm-fusion.yaml) run from the repository as written,
/// shortened by `--set` (a few pre-training, expert and fine-tuning steps; 0.05 % val and test
/// splits, so each evaluation reads about 4,400 tokens): the HDF5 files each writes, and
/// check_run.py's numpy recomputation of every model it links (and of the fused tensors).
final class LMStudyEndToEndTests: XCTestCase {
    static let tinySplit = "data.split={train: 0.999, val: 0.0005, test: 0.0005}"
    static let domains = ["bible", "jargon", "dictionary", "python"]

    /// Runs experiments/`name`.yaml with `sets` (plus the tiny split) into a fresh --out; the run directory.
    private func runShipped(_ name: String, _ sets: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let dir = try CLI.workspace("")
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let spec = CLI.repositoryRoot.appendingPathComponent("experiments/\(name).yaml").path
        let args = [spec] + (sets + [Self.tinySplit]).flatMap { ["--set", $0] } + ["--out", dir + "/out", "--quiet"]
        let r = try CLI.run(args, in: dir)
        XCTAssertEqual(r.status, 0, name + ": " + r.stderr, file: file, line: line)
        CLI.assertNoProcesses(in: dir, file: file, line: line)
        XCTAssertTrue(r.lastLine.hasPrefix(dir + "/out/\(name)/"), r.lastLine, file: file, line: line)
        return r.lastLine
    }

    /// Each branch expert trained `steps` steps on its own domain's train tokens only.
    private func assertDomainExperts(_ runDir: String, steps: Int64, file: StaticString = #filePath, line: UInt = #line) throws {
        let data = try H5File.open(runDir + "/tasks/data.h5")
        XCTAssertEqual(try data.readStrings("data/domains"), Self.domains, file: file, line: line)
        let domain = try data.read("data/train/domain", as: Int64.self).values
        for i in 0..<4 {
            let task = try H5File.open(runDir + "/tasks/expert-\(i).h5")
            XCTAssertEqual(try task.attribute("train_tokens", as: Int64.self), Int64(domain.filter { $0 == Int64(i) }.count),
                           "expert \(i) trains on domain \(i)'s train tokens", file: file, line: line)
            XCTAssertEqual(try task.attribute("shard", as: Int64.self), Int64(i), file: file, line: line)
            XCTAssertEqual(try task.stringAttribute("shard_by"), "domain", file: file, line: line)
            XCTAssertEqual(try task.attribute("steps", as: Int64.self), steps, file: file, line: line)
        }
    }

    /// BTM: 4 domain experts from the shared pre-trained seed, ensembled by the posterior on the
    /// prefix with the validation prior; Bayes' rule bounds the ensemble's val loss by
    /// min_j (loss_j − ln π_j / T), T = 64 scored tokens per window.
    func testShippedBTMEnsemble() throws {
        let runDir = try runShipped("lm-btm", ["split.pretrain_steps=6", "train.steps=6"])
        try assertDomainExperts(runDir, steps: 6)
        XCTAssertEqual(try H5File.open(runDir + "/tasks/pretrain.h5").attribute("steps", as: Int64.self), 6)
        let fuse = try H5File.open(runDir + "/tasks/fuse.h5")
        XCTAssertEqual(try fuse.openGroup("model").stringAttribute("kind"), "ensemble")
        XCTAssertEqual(try fuse.openGroup("model").stringAttribute("posterior"), "prefix")
        XCTAssertEqual(try fuse.openGroup("fusion").stringAttribute("method"), "ensemble")
        let prior = try fuse.read("model/posterior/prior", as: Double.self).values
        XCTAssertEqual(prior.count, 4)
        XCTAssertEqual(prior.reduce(0, +), 1, accuracy: 1e-9)
        XCTAssertTrue(prior.allSatisfy { $0 > 0 && $0 < 1 }, "\(prior)")
        let run = try H5File.open(runDir + "/run.h5")
        func valLoss(_ model: String) throws -> Double { try run.readScalar("summary/\(model)/val_loss", as: Double.self) }
        let bound = try (0..<4).map { try valLoss("expert-\($0)") - log(prior[$0]) / 64 }.min()!
        XCTAssertLessThanOrEqual(try valLoss("final"), bound + 1e-9)
        for domain in Self.domains {
            XCTAssertTrue(try run.readScalar("summary/final/domains/\(domain)/test_bits_per_byte", as: Double.self).isFinite, domain)
        }
        try FusionEndToEndTests.assertCheckRun(runDir, models: ["final", "expert-0", "expert-3"])
    }

    /// BTM averaging: the uniform average of the 4 experts (fused, evaluated before fine-tuning),
    /// fine-tuned `fusion.finetune.steps` steps into the final model.
    func testShippedBTMAverageIsFineTunedForItsSteps() throws {
        let runDir = try runShipped("lm-btm-average", ["split.pretrain_steps=6", "train.steps=6", "fusion.finetune.steps=5"])
        try assertDomainExperts(runDir, steps: 6)
        let run = try H5File.open(runDir + "/run.h5")
        XCTAssertEqual(try run.read("tasks/fuse/fusion/coefficients", as: Double.self).values, [0.25, 0.25, 0.25, 0.25])
        let finetune = try H5File.open(runDir + "/tasks/finetune.h5")
        XCTAssertEqual(try finetune.attribute("steps", as: Int64.self), 5, "fusion.finetune.steps")
        XCTAssertEqual(try finetune.read("metrics/step", as: Int64.self).values.last, 5)
        XCTAssertNotEqual(try CLI.modelBits(run, "fused"), try CLI.modelBits(run, "final"), "fine-tuning moved the fused model")
        for model in ["fused", "final"] { XCTAssertTrue(run.exists("summary/\(model)/val_bits_per_byte"), model) }
        try FusionEndToEndTests.assertCheckRun(runDir, models: ["fused", "final", "expert-1"], ["fused by average (", "tensors recomputed from the experts"])
    }

    /// BTX: the experts' FFNs become the 4 experts of every block's MoE (top-2), the router is
    /// learned while fine-tuning (its series in finetune.h5).
    func testShippedBTXLearnsItsRouterWhileFineTuning() throws {
        let runDir = try runShipped("lm-btx", ["split.pretrain_steps=6", "train.steps=6", "fusion.finetune.steps=5"])
        try assertDomainExperts(runDir, steps: 6)
        let run = try H5File.open(runDir + "/run.h5")
        for model in ["fused", "final"] {
            let config = try run.openGroup("models/\(model)").stringAttribute("config")
            XCTAssertTrue(config.contains("\"experts\":4") && config.contains("\"router\":\"topk\""), "\(model): \(config)")
        }
        let fused = try CLI.modelBits(run, "fused"), final = try CLI.modelBits(run, "final")
        for block in 0..<4 {
            XCTAssertEqual(try run.openDataset("models/final/blocks/\(block)/moe/experts/w1").shape, [4, 512, 128])
            let router = "blocks/\(block)/moe/router/weight"
            XCTAssertNotEqual(fused[router], final[router], "\(router) was learned while fine-tuning")
        }
        let finetune = try H5File.open(runDir + "/tasks/finetune.h5")
        XCTAssertEqual(try finetune.attribute("steps", as: Int64.self), 5)
        let rows = try finetune.read("metrics/step", as: Int64.self).values.count
        XCTAssertEqual(try finetune.openDataset("router/0/load").shape, [rows, 4])
        try FusionEndToEndTests.assertCheckRun(runDir, models: ["fused", "final"], ["fused by mix ("])
    }

    /// The Switch LM: 8 experts of width 512 per block, top-1.
    func testShippedSwitchLM() throws {
        let runDir = try runShipped("lm-switch", ["train.steps=6"])
        let run = try H5File.open(runDir + "/run.h5")
        let config = try run.openGroup("models/final").stringAttribute("config")
        XCTAssertTrue(config.contains("\"router\":\"switch\"") && config.contains("\"experts\":8"), config)
        XCTAssertEqual(try run.openDataset("models/final/blocks/3/moe/experts/w1").shape, [8, 512, 128])
        let train = try H5File.open(runDir + "/tasks/train.h5")
        XCTAssertEqual(try train.attribute("steps", as: Int64.self), 6)
        XCTAssertEqual(try train.openDataset("router/3/load").shape[1], 8)
        try FusionEndToEndTests.assertCheckRun(runDir, models: ["final"], ["MoE switch k=1, 8 experts"])
    }

    /// The seed recipe: 4 layer-wise stages trained locally, stacked, fine-tuned for its steps.
    func testShippedSeedRecipeStacksAndFineTunes() throws {
        let runDir = try runShipped("lm-seed-recipe", ["train.steps=6", "fusion.finetune.steps=5"])
        let train = try H5File.open(runDir + "/tasks/train.h5")
        XCTAssertEqual(try train.attribute("stages", as: Int64.self), 4)
        XCTAssertEqual(try train.attribute("steps", as: Int64.self), 6)
        let finetune = try H5File.open(runDir + "/tasks/finetune.h5")
        XCTAssertEqual(try finetune.attribute("steps", as: Int64.self), 5)
        XCTAssertEqual(try finetune.read("metrics/step", as: Int64.self).values.last, 5)
        let run = try H5File.open(runDir + "/run.h5")
        XCTAssertNotEqual(try CLI.modelBits(run, "fused"), try CLI.modelBits(run, "final"), "fine-tuning moved the stacked model")
        XCTAssertTrue(run.exists("models/final/head/weight"), "untied head")
        try FusionEndToEndTests.assertCheckRun(runDir, models: ["final"])
    }

    /// sweep-lm-fusion over 2 methods by --grid (each trial its own run of the same shortened
    /// experts): every trial's fused model recomputed from its experts by numpy, and the experts
    /// are the same bits in both trials. DARE-TIES's masks come from moe-run's RNG keyed by the
    /// recorded seed; Fisher merging weighs by the experts' Fisher stored in fuse.h5.
    func testShippedLMFusionSweepRecomputesEveryTrialsFusion() throws {
        let runs = try sweep(["fusion.method=dare_ties,fisher"])
        XCTAssertEqual(runs.count, 2)
        var experts: [[String: [UInt32]]] = []
        for runDir in runs {
            let run = try H5File.open(runDir + "/run.h5")
            let method = try run.openGroup("tasks/fuse/fusion").stringAttribute("method")
            XCTAssertTrue(["dare_ties", "fisher"].contains(method), method)
            try assertDomainExperts(runDir, steps: 6)
            experts.append(try CLI.modelBits(run, "expert-2"))
            if method == "fisher" {
                XCTAssertEqual(try run.openDataset("tasks/fuse/fusion/fisher/expert-3/blocks/0/ffn/w1").shape, [512, 128])
            }
            try FusionEndToEndTests.assertCheckRun(runDir, models: ["fused", "expert-0"], ["fused by \(method) (", "tensors recomputed from the experts"])
        }
        XCTAssertEqual(experts[0], experts[1], "every trial trains the same experts")
    }

    /// The other weight-space methods on the same shortened LM experts: TIES, DARE and the greedy
    /// soup (4 experts), and SLERP (2 experts, `--set experts=2`), recomputed by numpy.
    func testShippedLMFusionSweepOtherMethodsAreRecomputed() throws {
        for runDir in try sweep(["fusion.method=ties,dare,greedy_soup"]) + sweep(["fusion.method=slerp"], sets: ["experts=2"]) {
            let method = try H5File.open(runDir + "/run.h5").openGroup("tasks/fuse/fusion").stringAttribute("method")
            try FusionEndToEndTests.assertCheckRun(runDir, models: ["fused"], ["fused by \(method) (", "tensors recomputed from the experts"])
        }
    }

    /// `moe-run sweep experiments/sweep-lm-fusion.yaml` shortened, with `grid`: the trials' run directories.
    private func sweep(_ grid: [String], sets: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws -> [String] {
        let dir = try CLI.workspace("")
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let spec = CLI.repositoryRoot.appendingPathComponent("experiments/sweep-lm-fusion.yaml").path
        let overrides = (["split.pretrain_steps=6", "train.steps=6", Self.tinySplit] + sets).flatMap { ["--set", $0] }
        let args = ["sweep", spec] + overrides + grid.flatMap { ["--grid", $0] } + ["--out", dir + "/out", "--jobs", "1", "--quiet"]
        let r = try CLI.run(args, in: dir)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr, file: file, line: line)
        CLI.assertNoProcesses(in: dir, file: file, line: line)
        let root = dir + "/out/sweep-lm-fusion"
        return try FileManager.default.contentsOfDirectory(atPath: root).sorted().map { root + "/" + $0 }
            .filter { FileManager.default.fileExists(atPath: $0 + "/run.h5") }
    }
}
