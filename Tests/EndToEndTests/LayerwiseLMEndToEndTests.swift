import Foundation
import MoEHDF5
import XCTest

/// `split.strategy: layerwise` on a transformer LM through the built binary: stage-local training
/// with auxiliary LM heads (`train.local: true`), and GPipe over 2 pipeline-parallel worker
/// processes, which learns the bits of the one-process GPipe schedule and what plain training of
/// the same LM learns (to float rounding). Each run's final model is an ordinary
/// transformer checkpoint: `eval`, `sample` and the numpy recomputation (check_run.py) read it.
final class LayerwiseLMEndToEndTests: XCTestCase {
    /// The tiny LM workspace (2 blocks, untied head) cut into 2 stages with `extra` (YAML lines).
    private func workspace(steps: Int, extra: String, stages: Bool = true, dropout: Double = 0.1,
                           checkpointEvery: Int = 50) throws -> String {
        let dir = try CLI.lmWorkspace(steps: steps, dropout: dropout, logEvery: 10, evalEvery: 40, checkpointEvery: checkpointEvery)
        var yaml = try String(contentsOfFile: dir + "/spec.yaml", encoding: .utf8)
        yaml = yaml.replacingOccurrences(of: "blocks: 2, ffn: 64", with: "blocks: 2, ffn: 64, tie_embeddings: false")
        yaml = yaml.replacingOccurrences(of: "output: {dir: out}", with: (stages ? "experts: 2\nsplit: {strategy: layerwise}\n" : "") + extra + "\noutput: {dir: out}")
        try yaml.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
        return dir
    }

    private func complete(_ dir: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        CLI.assertNoProcesses(in: dir, file: file, line: line)
        return dir + "/" + r.lastLine
    }

    /// Stage-local training: per-stage series, the auxiliary LM head of stage 0 in the task file
    /// and in every checkpoint, the stacked model as a plain transformer checkpoint (eval, sample,
    /// numpy), and an interrupted run resumed to the bits of an undisturbed one.
    func testLocalLayerwiseLMTrainsStagesOnAuxiliaryLMHeads() throws {
        let spec = "train: {steps: 200, batch_size: 8, lr: 0.003, betas: [0.9, 0.99], log_every: 10, eval_every: 40, checkpoint_every: 50, local: true}"
        let dir = try workspace(steps: 200, extra: "")
        var yaml = try String(contentsOfFile: dir + "/spec.yaml", encoding: .utf8)
        yaml = yaml.replacingOccurrences(of: "train: {steps: 200, batch_size: 8, lr: 0.003, betas: [0.9, 0.99], log_every: 10, eval_every: 40, checkpoint_every: 50}", with: spec)
        XCTAssertTrue(yaml.contains("local: true"), yaml)
        try yaml.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
        let runDir = try complete(dir)
        let task = try H5File.open(runDir + "/tasks/train.h5")
        XCTAssertEqual(try task.attribute("stages", as: Int64.self), 2)
        for path in ["metrics/stage_0_loss", "metrics/stage_1_loss", "metrics/tokens_per_second", "metrics/eval/stage_0_val_loss",
                     "metrics/eval/stage_1_val_accuracy", "stages/0/norm/weight", "stages/0/norm/bias", "stages/0/head/weight",
                     "model/embed/weight", "model/pos/weight", "model/blocks/1/ffn/w2", "model/norm/weight", "model/head/weight"] {
            XCTAssertTrue(task.exists(path), path)
        }
        XCTAssertFalse(task.exists("model/aux"), "the stacked model has no auxiliary head")
        XCTAssertEqual(try task.openDataset("stages/0/head/weight").shape, [256, 32], "an LM head over the byte vocabulary")
        let checkpoints = try task.openGroup("checkpoints").children()
        XCTAssertTrue(task.exists("checkpoints/\(checkpoints[0])/aux/0/head/weight"))
        XCTAssertTrue(task.exists("checkpoints/\(checkpoints[0])/optimizer/exp_avg/aux/0/head/weight"))
        let stage0 = try CLI.trainSeries(runDir, "stage_0_loss"), stage1 = try CLI.trainSeries(runDir, "stage_1_loss")
        XCTAssertEqual(try CLI.trainSeries(runDir, "train_loss").map(\.bitPattern), stage1.map(\.bitPattern), "train_loss is the stacked model's")
        XCTAssertLessThan(stage0.last!, stage0.first! - 0.5, "stage 0 learns on its own head: \(stage0)")
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("layer-wise local training of 2 stages (blocks 0, 1)"), log)
        let eval = try CLI.run(["eval", runDir, runDir + "/tasks/data.h5", "--batch-size", "7"], in: dir)
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let sample = try CLI.run(["sample", runDir, "--prompt", "def ", "--tokens", "20", "--seed", "0"], in: dir)
        XCTAssertEqual(sample.status, 0, sample.stderr)
        try CLI.assertNumpyReproduces(runDir, models: ["final"])

        // Killed after its first checkpoint, then resumed: the undisturbed run's bits and series.
        let again = try workspace(steps: 200, extra: "")
        try yaml.write(toFile: again + "/spec.yaml", atomically: true, encoding: .utf8)
        try CLI.startAndKillAfterFirstCheckpoint(in: again)
        CLI.assertNoProcesses(in: again)
        let resumed = try CLI.run(["spec.yaml", "--resume", "--quiet"], in: again)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let resumedDir = again + "/" + resumed.lastLine
        XCTAssertEqual(try CLI.finalModelBits(resumedDir), try CLI.finalModelBits(runDir))
        let clocks: Set<String> = ["tokens_per_second"]
        XCTAssertEqual(try CLI.seriesBits(try H5File.open(resumedDir + "/tasks/train.h5"), "metrics", except: clocks),
                       try CLI.seriesBits(task, "metrics", except: clocks))
        XCTAssertEqual(try H5File.open(resumedDir + "/tasks/train.h5").read("stages/0/head/weight", as: Float.self).values.map(\.bitPattern),
                       try task.read("stages/0/head/weight", as: Float.self).values.map(\.bitPattern))
    }

    /// GPipe over 2 worker processes (3 micro-batches of the 8 windows) = the one-process GPipe
    /// schedule bit for bit = plain training of the same LM to float rounding (the MLP pipeline's
    /// 1e-6 on the loss series); the task file has
    /// the dense LM layout with the gathered optimizer state and the pipeline's costs.
    func testPipelineLMOverTwoWorkersLearnsWhatOneProcessLearns() throws {
        let pipelineDir = try complete(try workspace(steps: 60, extra: "parallelism: {mode: pipeline, workers: 2, microbatches: 3}"))
        let oneProcess = try complete(try workspace(steps: 60, extra: "parallelism: {mode: none, microbatches: 3}"))
        let plain = try complete(try workspace(steps: 60, extra: "", stages: false))
        XCTAssertEqual(try CLI.finalModelBits(pipelineDir), try CLI.finalModelBits(oneProcess), "2 workers = the one-process schedule")
        for name in ["train_loss", "train_accuracy", "grad_norm", "eval/val_loss"] {
            XCTAssertEqual(try CLI.trainSeries(pipelineDir, name).map(\.bitPattern), try CLI.trainSeries(oneProcess, name).map(\.bitPattern), name)
        }
        let a = try CLI.finalModelBits(pipelineDir), b = try CLI.finalModelBits(plain)
        XCTAssertEqual(Set(a.keys), Set(b.keys))
        let worst = a.keys.map { k in zip(a[k]!, b[k]!).map { abs(Float(bitPattern: $0) - Float(bitPattern: $1)) }.max() ?? 0 }.max()!
        let loss = zip(try CLI.trainSeries(pipelineDir, "train_loss"), try CLI.trainSeries(plain, "train_loss")).map { abs($0 - $1) }.max()!
        print("LM pipeline 2 stages × 3 micro-batches vs plain training: |Δ weights| \(worst), |Δ train_loss| \(loss)")
        // Float rounding only (micro-batch GEMMs, the order of the gradient sums): 2e-8 on the loss,
        // about 1.5e-5 on the weights after 60 AdamW steps (the MLP's 1e-5 is over 3 epochs of a
        // smaller model; AdamW's m/√v step carries the rounding of small gradients at full size).
        XCTAssertLessThan(worst, 5e-5, "final weights vs plain training")
        XCTAssertLessThan(loss, 1e-6, "train_loss vs plain training")

        let task = try H5File.open(pipelineDir + "/tasks/train.h5")
        for path in ["metrics/bubble_fraction", "metrics/bytes_sent", "metrics/tokens_per_second", "model/embed/weight",
                     "model/blocks/1/attn/qkv/weight", "model/head/weight"] {
            XCTAssertTrue(task.exists(path), path)
        }
        XCTAssertEqual(try task.attribute("microbatches", as: Int64.self), 3)
        let checkpoints = try task.openGroup("checkpoints").children()
        XCTAssertTrue(task.exists("checkpoints/\(checkpoints[0])/optimizer/exp_avg/head/weight"), "rank 1's optimizer state gathered")
        XCTAssertTrue(try CLI.trainSeries(pipelineDir, "bytes_sent").allSatisfy { $0 > 0 })
        let log = try String(contentsOfFile: pipelineDir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("GPipe training of 2 stages"), log)
        XCTAssertTrue(log.contains("train[rank 1]: started worker process"), log)
        try CLI.assertNumpyReproduces(pipelineDir, models: ["final"])
    }

    /// The shipped experiments/lm-pipeline.yaml as written, shortened by overrides (20 steps;
    /// 0.25 % val and test splits): 2 worker processes, the shipped corpus's per-domain summary,
    /// `sample` on the run directory.
    func testShippedLMPipelineRunsAndSamples() throws {
        let dir = try CLI.workspace("")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spec = CLI.repositoryRoot.appendingPathComponent("experiments/lm-pipeline.yaml").path
        let r = try CLI.run([spec, "--set", "train.steps=20", "--set", "data.split={train: 0.995, val: 0.0025, test: 0.0025}",
                             "--out", dir + "/out", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let runDir = r.lastLine
        let train = try H5File.open(runDir + "/tasks/train.h5")
        XCTAssertEqual(try train.attribute("steps", as: Int64.self), 20)
        XCTAssertEqual(try train.attribute("stages", as: Int64.self), 2)
        XCTAssertEqual(try train.stringAttribute("stage_blocks"), "0-1, 2-3")
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("train[rank 1]: started worker process"), log)
        let run = try H5File.open(runDir + "/run.h5")
        for domain in ["bible", "jargon", "dictionary", "python"] {
            let value = try run.readScalar("summary/final/domains/\(domain)/test_bits_per_byte", as: Double.self)
            XCTAssertTrue(value.isFinite && value > 0, "\(domain) test_bits_per_byte = \(value)")
        }
        let sample = try CLI.run(["sample", runDir, "--prompt", "The ", "--tokens", "30", "--seed", "0"], in: dir)
        XCTAssertEqual(sample.status, 0, sample.stderr)
        XCTAssertFalse(sample.stdout.isEmpty)
    }

    /// A tied head would put the embedding in both the first and the last stage: refused at the key.
    func testTiedEmbeddingsAreRefusedWithLayerwise() throws {
        let dir = try CLI.lmWorkspace(steps: 10)
        var yaml = try String(contentsOfFile: dir + "/spec.yaml", encoding: .utf8)
        yaml = yaml.replacingOccurrences(of: "output: {dir: out}", with: "experts: 2\nsplit: {strategy: layerwise}\noutput: {dir: out}")
        try yaml.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("model.tie_embeddings: must be false with split.strategy: layerwise"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing written")
    }
}
