import Foundation
import MoEHDF5
import XCTest

/// `split.strategy: branch` through the CLI: a seed model branched into experts, each trained on
/// its own shard of the training split with its own overrides, in parallel worker processes;
/// every expert evaluated and stored; the same bits whatever the worker count.
final class BranchEndToEndTests: XCTestCase {
    /// 3 experts, one per synthetic domain (constant learning rate); expert 1 trains 1 epoch
    /// instead of 3, expert 2 with lr 0.01 and its own batch-order seed.
    private func branchSpec(workers: Int = 2, split: String = "  shard_by: domain\n  overrides: [{}, {epochs: 1}, {lr: 0.01, seed: 11}]") -> String {
        tinySpec(name: "btm").replacingOccurrences(of: "  lr: 0.003", with: "  lr: 0.003\n  schedule: constant")
            .replacingOccurrences(of: "  dropout: 0.1", with: """
              dropout: 0.1
            experts: 3
            split:
              strategy: branch
            \(split)
            parallelism:
              mode: branch
              workers: \(workers)
            """)
    }

    func testExpertsTrainOnTheirShardsWithTheirOverridesAndAreEvaluated() throws {
        let dir = try CLI.workspace(branchSpec())
        let plan = try CLI.run(["plan", "spec.yaml"], in: dir)
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertTrue(plan.stdout.hasPrefix("plan for btm: 5 tasks"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("train a copy of the seed model (initialised from seed 7) on shard 1/3 of train (by domain) for 1 epoch,"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("lr 0.01, batch 32, seed 11"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("after expert-0, expert-1, expert-2"), plan.stdout)

        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let runDir = dir + "/" + r.lastLine
        let run = try H5File.open(runDir + "/run.h5")
        XCTAssertFalse(run.exists("models/final"), "no fusion: no final model")
        XCTAssertFalse(run.exists("models/seed"), "no pre-trained seed")
        let domains = try run.read("data/train/domain", as: Int64.self).values
        var models: [[String: [UInt32]]] = []
        var steps: [Int64] = []
        for i in 0..<3 {
            let task = try run.openGroup("tasks/expert-\(i)")
            let shard = domains.filter { $0 == Int64(i) }.count
            XCTAssertEqual(try task.attribute("train_samples", as: Int64.self), Int64(shard), "expert \(i) trains on domain \(i) only")
            XCTAssertEqual(try task.attribute("shard", as: Int64.self), Int64(i))
            XCTAssertEqual(try task.stringAttribute("shard_by"), "domain")
            let epochs = i == 1 ? 1 : 3
            steps.append(try task.attribute("steps", as: Int64.self))
            XCTAssertEqual(steps[i], Int64(epochs * ((shard + 31) / 32)), "expert \(i): \(epochs) epochs of its shard")
            XCTAssertEqual(try run.openGroup("models/expert-\(i)").stringAttribute("kind"), "model")
            XCTAssertTrue(try run.openGroup("models/expert-\(i)").stringAttribute("config").contains("\"moe\":null"), "dense experts")
            models.append(try CLI.modelBits(run, "expert-\(i)"))
            let accuracy = try run.readScalar("summary/expert-\(i)/test_accuracy", as: Double.self)
            XCTAssertTrue(accuracy > 0 && accuracy <= 1, "expert \(i) test accuracy \(accuracy)")
            XCTAssertTrue(run.exists("summary/expert-\(i)/val_loss"))
        }
        XCTAssertNotEqual(models[0], models[1])
        XCTAssertNotEqual(models[1], models[2])
        XCTAssertNotEqual(models[0], models[2])
        let lr = try run.read("tasks/expert-2/metrics/lr", as: Double.self).values
        XCTAssertEqual(lr.first ?? 0, 0.01, accuracy: 1e-6, "expert 2's lr override (constant schedule)")
        XCTAssertEqual(try run.read("tasks/expert-0/metrics/lr", as: Double.self).values.first ?? 0, 0.003, accuracy: 1e-6)

        let show = try CLI.run(["show", runDir], in: dir)
        XCTAssertEqual(show.status, 0, show.stderr)
        XCTAssertTrue(show.stdout.contains("models: expert-0, expert-1, expert-2"), show.stdout)
        XCTAssertTrue(show.stdout.contains("delivers the 3 branch experts"), show.stdout)
        XCTAssertTrue(show.stdout.contains("summary/expert-1: test_accuracy"), show.stdout)
        let task = try CLI.run(["show", runDir + "/tasks/expert-1.h5"], in: dir)
        XCTAssertTrue(task.stdout.contains("branch expert on shard 1 (by domain), \(domains.filter { $0 == 1 }.count) training samples"), task.stdout)
        CLI.assertNoProcesses(in: dir)
    }

    /// A pre-trained seed, random shards: 1 and 2 workers give bit-identical experts.
    /// Issue 5 item 6: 1, 2 and 4 workers (4 > the 3 experts + the machine's cores) give the same bits.
    func testPretrainedSeedAndTheWorkerCountDoesNotChangeABit() throws {
        let split = "  shard_by: random\n  pretrain_epochs: 1"
        var results: [[[String: [UInt32]]]] = []
        for workers in [1, 2, 4] {
            let dir = try CLI.workspace(branchSpec(workers: workers, split: split))
            let r = try CLI.run(["spec.yaml"], in: dir)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("expert-2: branched from the pre-trained seed model"), r.stdout)
            let run = try H5File.open(dir + "/" + r.lastLine + "/run.h5")
            XCTAssertEqual(try run.openGroup("models/seed").stringAttribute("kind"), "model")
            XCTAssertTrue(run.exists("summary/seed/test_accuracy"))
            let sizes = try (0..<3).map { try run.openGroup("tasks/expert-\($0)").attribute("train_samples", as: Int64.self) }
            XCTAssertEqual(sizes.reduce(0, +), Int64(try run.openDataset("data/train/y").shape[0]), "the shards partition train")
            results.append(try (0..<3).map { try CLI.modelBits(run, "expert-\($0)") })
            CLI.assertNoProcesses(in: dir)
        }
        XCTAssertEqual(results[0], results[1], "1 and 2 workers give the same bits")
        XCTAssertEqual(results[0], results[2], "1 and 4 workers give the same bits (issue 5 item 6)")
    }

    /// Issue 5 item 6: an expert's worker killed with SIGKILL mid-training is retried from its
    /// checkpoint, and every expert ends with the same bits as in an undisturbed run.
    func testKilledExpertWorkerIsRetriedToBitIdenticalExperts() throws {
        let split = "  shard_by: index"
        let long = { (yaml: String) in
            yaml.replacingOccurrences(of: "epochs: 3", with: "epochs: 60").replacingOccurrences(of: "samples: 600", with: "samples: 3000")
                .replacingOccurrences(of: "log_every: 5", with: "log_every: 5\n  checkpoint_every: 20")
        }
        let reference = try CLI.workspace(long(branchSpec(workers: 2, split: split)))
        let r = try CLI.run(["spec.yaml", "--quiet"], in: reference)
        XCTAssertEqual(r.status, 0, r.stderr)
        let expected = try (0..<3).map { try CLI.modelBits(try H5File.open(reference + "/" + r.lastLine + "/run.h5"), "expert-\($0)") }

        let dir = try CLI.workspace(long(branchSpec(workers: 2, split: split)))
        let p = try CLI.start(["spec.yaml", "--quiet"], in: dir)
        var victim: Int32?
        let deadline = Date().addingTimeInterval(60)
        while victim == nil && Date() < deadline && p.isRunning {
            if CLI.hasCheckpoint(dir, task: "expert-") {
                victim = CLI.children(of: p.processIdentifier).first
            }
            usleep(20_000)
        }
        let worker = try XCTUnwrap(victim, "no expert worker with a checkpoint appeared")
        usleep(100_000)
        XCTAssertEqual(kill(worker, SIGKILL), 0)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "the killed expert is retried")
        let runName = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/btm").first)
        let run = try H5File.open(dir + "/out/btm/" + runName + "/run.h5")
        let log = try String(contentsOfFile: dir + "/out/btm/" + runName + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("ended with signal 9 (SIGKILL); retry 1 of 1"), log)
        XCTAssertEqual(try (0..<3).map { try CLI.modelBits(run, "expert-\($0)") }, expected, "the same bits after the retry")
        CLI.assertNoProcesses(in: dir)
    }

    /// Domain shards of data without domain ids are refused before anything is written.
    func testDomainShardsNeedDomainIds() throws {
        var csv = "a,b,y\n"
        for i in 0..<40 { csv += "\(Double(i % 7) * 0.5),\(Double(i % 3)),\(i % 2)\n" }
        let dir = try CLI.workspace("""
            name: plain
            data: {source: file, path: plain.csv}
            experts: 2
            split: {strategy: branch}
            output: {dir: out}
            """)
        try csv.write(toFile: dir + "/plain.csv", atomically: true, encoding: .utf8)
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertEqual(r.stderr, "moe-run: error: spec.yaml:2:28: data.path: plain.csv: the samples have no domain ids, and split.shard_by: domain shards by them; add a `domain` dataset (HDF5) or column (CSV), or choose split.shard_by: index or random\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing written")
    }
}
