import Foundation
import MoEHDF5
import XCTest

/// Issue 13's spec keys through the built binary: what validates, what `plan` shows, and the
/// one-line refusals (exit 2, nothing written) of what is invalid or not runnable yet.
final class LMSpecEndToEndTests: XCTestCase {
    /// A spec with `train.steps` validates, plans and runs that many steps: as many as two
    /// epochs give the two-epoch run's bits (the evaluations of `eval_every: 0`, at the end of
    /// training, read the weights and change nothing); seven more cycle into a third epoch cut short.
    func testStepsValidatePlanAndRunThatManySteps() throws {
        let epochsRun = try CLI.completeRun(tinySpec(epochs: 2))
        let steps = Int(try H5File.open(epochsRun + "/tasks/train.h5").attribute("steps", as: Int64.self))
        let dir = try CLI.workspace(tinySpec().replacingOccurrences(of: "epochs: 3", with: "steps: \(steps)"))
        let valid = try CLI.run(["validate", "spec.yaml"], in: dir)
        XCTAssertEqual(valid.status, 0, valid.stderr)
        XCTAssertEqual(valid.stdout, "spec.yaml: valid (tiny)\n")
        let plan = try CLI.run(["plan", "spec.yaml"], in: dir)
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertTrue(plan.stdout.contains("for \(steps) steps, adamw"), plan.stdout)
        let run = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(try CLI.finalModelBits(dir + "/" + run.lastLine), try CLI.finalModelBits(epochsRun),
                       "train.steps = 2 epochs of steps trains what train.epochs: 2 trains")

        let cut = try CLI.completeRun(tinySpec().replacingOccurrences(of: "epochs: 3", with: "steps: \(steps + 7)"))
        let file = try H5File.open(cut + "/tasks/train.h5")
        XCTAssertEqual(try file.attribute("steps", as: Int64.self), Int64(steps + 7))
        XCTAssertEqual(try file.read("metrics/step", as: Int64.self).values.last, Int64(steps + 7))
        XCTAssertEqual(try CLI.trainSeries(cut, "epoch").last, 2, "the third epoch of the batch order, cut short")
        XCTAssertEqual(try file.read("metrics/eval/step", as: Int64.self).values, [Int64(steps + 7)],
                       "with train.steps, eval_every: 0 is the end of training")
    }

    func testStepsAndEpochsTogetherAreOneLineExitTwo() throws {
        let dir = try CLI.workspace(tinySpec())
        for args in [["validate", "spec.yaml"], ["plan", "spec.yaml"], ["spec.yaml"]] {
            let r = try CLI.run(args + ["--set", "train.steps=5"], in: dir)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stdout, "")
            XCTAssertTrue(r.stderr.hasPrefix("moe-run: error: --set:1:13: train.steps: and train.epochs exclude each other: train for a number of steps or of epochs, not both\n"), r.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing written")
    }

    /// nanoGPT's CPU recipe on the shipped corpus (issue 13 item 7's lm-dense) as a spec.
    static func lmSpec(extra: String = "") -> String {
        let corpus = CLI.repositoryRoot.appendingPathComponent("experiments/data/text-domains.h5").path
        return """
        name: lm
        data:
          source: text
          path: \(corpus)
        model:
          kind: transformer
          context: 64
          hidden: 128
          heads: 4
          blocks: 4
          dropout: 0.0
        train:
          steps: 2000
          batch_size: 12
          lr: 0.001
          betas: [0.9, 0.99]
          schedule: cosine
        output:
          dir: out
        \(extra)
        """
    }

    /// A transformer spec validates, `plan` shows its DAG, and a run of a data-parallel group
    /// larger than shared memory holds ends with one line, exit 2, nothing written: never a crash
    /// or an MLP run.
    func testTransformerSpecValidatesPlansAndATooLargeGroupIsRefusedWhenRun() throws {
        let dir = try CLI.workspace(Self.lmSpec())
        let valid = try CLI.run(["validate", "spec.yaml"], in: dir)
        XCTAssertEqual(valid.status, 0, valid.stderr)
        XCTAssertEqual(valid.stdout, "spec.yaml: valid (lm)\n")
        let plan = try CLI.run(["plan", "spec.yaml"], in: dir)
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertTrue(plan.stdout.contains("text-domains.h5 as byte tokens"), plan.stdout)
        XCTAssertTrue(plan.stdout.contains("train dense transformer LM (context 64, hidden 128, 4 heads, ffn 512, 4 blocks) for 2000 steps, adamw lr 0.001"), plan.stdout)
        let moe = try CLI.run(["plan", "spec.yaml", "--set", "experts=8", "--set", "split.strategy=replicate", "--set", "model.ffn=256"], in: dir)
        XCTAssertEqual(moe.status, 0, moe.stderr)
        XCTAssertTrue(moe.stdout.contains("train MoE (8 experts, topk k=2, blocks 0, 1, 2, 3) transformer LM"), moe.stdout)
        let run = try CLI.run(["spec.yaml", "--set", "parallelism.mode=data", "--set", "parallelism.workers=65"], in: dir)
        XCTAssertEqual(run.status, 2, run.stderr)
        XCTAssertEqual(run.stdout, "")
        XCTAssertEqual(run.stderr, "moe-run: error: --set:1:21: parallelism.workers: data parallelism runs its workers as one shared-memory group of at most 64 processes, got 65\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing written")
    }

    /// The spec's own errors and the corpus's, through the binary: one line, exit 2, nothing written.
    func testBadTransformerSpecsAreOneLineExitTwo() throws {
        let dir = try CLI.workspace(Self.lmSpec())
        let cases: [([String], String)] = [
            (["--set", "model.heads=5"], "--set:1:13: model.heads: must divide model.hidden (128): each head has hidden / heads dimensions, got 5"),
            (["--set", "model.context=0"], "--set:1:15: model.context: must be >= 1, got 0"),
            (["--set", "model.kind=mlp"], "spec.yaml:3:11: data.source: text needs model.kind: transformer (an mlp reads feature vectors), got mlp"),
            (["--set", "data.standardize=false"], "--set:1:18: data.standardize: applies only to feature data (data.source: synthetic or file, model.kind: mlp); data.source: text reads byte tokens"),
            (["--set", "train.epochs=3"], "spec.yaml:13:10: train.steps: and train.epochs exclude each other: train for a number of steps or of epochs, not both"),
            (["--set", "data.path=missing.h5"], "--set:1:11: data.path: no such text corpus (file or folder): \"missing.h5\" (relative to the spec file's directory)"),
            // The corpus's val streams hold 100,000s of tokens, not a million.
            (["--set", "model.context=1000000"], "spec.yaml:4:9: data.path: \(CLI.repositoryRoot.appendingPathComponent("experiments/data/text-domains.h5").path): domain '"),
        ]
        for (args, expected) in cases {
            for command in [["validate"], ["plan"], []] {
                let r = try CLI.run(command + ["spec.yaml"] + args, in: dir)
                XCTAssertEqual(r.status, 2, "\(command) \(args): \(r.stderr)")
                XCTAssertEqual(r.stdout, "")
                XCTAssertTrue(r.stderr.hasPrefix("moe-run: error: " + expected), "\(args): \(r.stderr)")
                XCTAssertEqual(r.stderr.split(separator: "\n").filter { $0.hasPrefix("moe-run: error:") }.count, 1, r.stderr)
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing written")
    }

    /// A corpus folder with a domain too short for the context: the pre-flight names the domain,
    /// the split and the token counts, at data.path.
    func testAShortDomainOfAFolderCorpusIsRefusedBeforeTheRun() throws {
        let dir = try CLI.workspace(Self.lmSpec())
        try FileManager.default.createDirectory(atPath: dir + "/corpus", withIntermediateDirectories: true)
        try String(repeating: "In the beginning. ", count: 200).write(toFile: dir + "/corpus/bible.txt", atomically: true, encoding: .utf8)
        try String(repeating: "x = 1\n", count: 50).write(toFile: dir + "/corpus/code.txt", atomically: true, encoding: .utf8)
        for command in [["validate"], []] {
            let r = try CLI.run(command + ["spec.yaml", "--set", "data.path=corpus"], in: dir)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("moe-run: error: --set:1:11: data.path: corpus: domain 'code' has 30 val tokens, fewer than context + 1 = 65 for one window\n"), r.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing written")
    }
}
