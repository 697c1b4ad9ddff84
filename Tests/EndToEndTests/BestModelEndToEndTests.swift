import Foundation
import MoEHDF5
import XCTest

/// Issue 17 item 5: every training task keeps its best model by `eval.metric` (`/best` of the
/// task file, `/models/best` of the run, evaluated into `/summary/best`), `train.early_stopping`
/// stops deterministically and resumes exactly, and fusion can read the experts' best models.
final class BestModelEndToEndTests: XCTestCase {
    /// Every parameter of the checkpoint group `path` of `file`, as float32 bit patterns.
    static func bits(_ file: H5File, _ path: String) throws -> [String: [UInt32]] { try CLI.groupBits(file, path) }

    /// `/best` is the first validation with the lowest val_loss; the run links it as
    /// `/models/best` and the evaluate task scores it to the bits the training loop logged.
    func testBestModelIsTheLowestValidationLossAndTheSummaryListsIt() throws {
        let run = try CLI.completeRun(tinySpec(name: "best", epochs: 8).replacingOccurrences(of: "lr: 0.003", with: "lr: 0.03"))
        let task = try H5File.open(run + "/tasks/train.h5")
        let losses = try task.read("metrics/eval/val_loss", as: Double.self).values
        let steps = try task.read("metrics/eval/step", as: Int64.self).values
        let index = losses.indices.min { losses[$0] < losses[$1] || (losses[$0] == losses[$1] && $0 < $1) }!
        let best = try task.openGroup("best")
        XCTAssertEqual(try best.attribute("step", as: Int64.self), steps[index])
        XCTAssertEqual(try best.stringAttribute("metric"), "val_loss")
        XCTAssertEqual(try best.attribute("value", as: Double.self), losses[index])
        XCTAssertEqual(try best.stringAttribute("kind"), "model", "a checkpoint group any reader can load")
        XCTAssertEqual(Set(try Self.bits(task, "best").keys), Set(try Self.bits(task, "model").keys))
        if index != losses.count - 1 { XCTAssertNotEqual(try Self.bits(task, "best"), try Self.bits(task, "model")) }

        let file = try H5File.open(run + "/run.h5")
        XCTAssertEqual(try CLI.modelBits(file, "best"), try Self.bits(task, "best"))
        XCTAssertEqual(try file.readScalar("summary/best/val_loss", as: Double.self), losses[index], "the evaluate task re-scores /best to the logged value")
        XCTAssertTrue(file.exists("summary/final/val_loss"))
        let show = try CLI.run(["show", run], in: run)
        XCTAssertTrue(show.stdout.contains("  models: best, final"), show.stdout)
        XCTAssertTrue(show.stdout.contains("  summary/best: "), show.stdout)
        XCTAssertTrue(show.stdout.contains("  best: the model at step \(steps[index]), val_loss \(String(format: "%.4f", losses[index]))"), show.stdout)
    }

    /// `eval.metric: val_accuracy` keeps the first validation with the highest accuracy.
    func testValAccuracyPicksTheHighestAccuracy() throws {
        let run = try CLI.completeRun(tinySpec(name: "bestacc", epochs: 5, extra: "eval: {metric: val_accuracy}"))
        let task = try H5File.open(run + "/tasks/train.h5")
        let accuracies = try task.read("metrics/eval/val_accuracy", as: Double.self).values
        let steps = try task.read("metrics/eval/step", as: Int64.self).values
        let index = accuracies.firstIndex(of: accuracies.max()!)!
        XCTAssertEqual(try task.openGroup("best").attribute("step", as: Int64.self), steps[index])
        XCTAssertEqual(try task.openGroup("best").stringAttribute("metric"), "val_accuracy")
        XCTAssertEqual(try task.openGroup("best").attribute("value", as: Double.self), accuracies[index])
    }

    /// patience 2 and a min_delta no validation can beat: training stops at the third
    /// validation (epoch 3 of 20), says so, and records it; `/best` is still the best of the three.
    func testEarlyStoppingStopsAfterPatienceValidations() throws {
        let spec = tinySpec(name: "early", epochs: 20).replacingOccurrences(of: "  log_every: 5", with: "  log_every: 5\n  early_stopping: {patience: 2, min_delta: 5.0}")
        let dir = try CLI.workspace(spec)
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let run = dir + "/" + r.lastLine
        let task = try H5File.open(run + "/tasks/train.h5")
        // 600 samples, train 0.8 → 480 rows, 15 batches of 32 per epoch.
        XCTAssertEqual(try task.read("metrics/eval/step", as: Int64.self).values, [15, 30, 45])
        XCTAssertEqual(try task.attribute("steps", as: Int64.self), 45)
        XCTAssertEqual(try task.attribute("stopped_early", as: Int64.self), 1)
        let losses = try task.read("metrics/eval/val_loss", as: Double.self).values
        let best = [15, 30, 45][losses.firstIndex(of: losses.min()!)!]
        XCTAssertEqual(try task.openGroup("best").attribute("step", as: Int64.self), Int64(best))
        let log = try String(contentsOfFile: run + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("train: early stopping at step 45: 2 validations without a val_loss improvement above 5.0; best at step \(best)"), log)
    }

    /// Killed mid-training and resumed, an early-stopped run ends at the same step with the same
    /// final and best bits as the run that was never interrupted.
    func testEarlyStoppedRunResumesToTheSameBits() throws {
        // A wider model than longSpec's, so that training outlasts the kill after the first checkpoint.
        let spec = longSpec(name: "earlyresume").replacingOccurrences(of: "hidden: 16", with: "hidden: 128")
            .replacingOccurrences(of: "ffn: 32", with: "ffn: 512").replacingOccurrences(of: "  checkpoint_every: 50",
            with: "  checkpoint_every: 50\n  eval_every: 40\n  early_stopping: {patience: 6, min_delta: 5.0}")
        let reference = try CLI.completeRun(spec)
        let referenceTask = try H5File.open(reference + "/tasks/train.h5")
        XCTAssertEqual(try referenceTask.attribute("steps", as: Int64.self), 280)
        XCTAssertEqual(try referenceTask.attribute("stopped_early", as: Int64.self), 1)

        let dir = try CLI.workspace(spec)
        try CLI.startAndKillAfterFirstCheckpoint(in: dir)
        let r = try CLI.run(["spec.yaml", "--resume", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let resumed = dir + "/" + r.lastLine
        let log = try String(contentsOfFile: resumed + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("resuming from the checkpoint at step"), log)
        let task = try H5File.open(resumed + "/tasks/train.h5")
        XCTAssertEqual(try task.attribute("steps", as: Int64.self), 280)
        XCTAssertEqual(try Self.bits(task, "model"), try Self.bits(referenceTask, "model"))
        XCTAssertEqual(try Self.bits(task, "best"), try Self.bits(referenceTask, "best"))
        XCTAssertEqual(try task.read("metrics/eval/val_loss", as: Double.self).values.map(\.bitPattern),
                       try referenceTask.read("metrics/eval/val_loss", as: Double.self).values.map(\.bitPattern))
    }

    /// `fusion.source: best` averages the experts' best models, not their final ones.
    func testFusionReadsTheExpertsBestModels() throws {
        let yaml = tinySpec(name: "fusebest", epochs: 6).replacingOccurrences(of: "lr: 0.003", with: "lr: 0.03") + """

            experts: 2
            split: {strategy: branch, shard_by: domain}
            fusion: {method: average, weights: uniform, source: best}
            """
        let run = try CLI.completeRun(yaml)
        let fused = try Self.bits(try H5File.open(run + "/tasks/fuse.h5"), "model")
        let e0 = try Self.bits(try H5File.open(run + "/tasks/expert-0.h5"), "best")
        let e1 = try Self.bits(try H5File.open(run + "/tasks/expert-1.h5"), "best")
        for (name, values) in fused where name.hasSuffix("weight") || name.hasSuffix("bias") || name.hasPrefix("blocks") {
            guard let a = e0[name], let b = e1[name] else { continue }
            for i in values.indices {
                let expected = (Float(bitPattern: a[i]) + Float(bitPattern: b[i])) / 2
                XCTAssertEqual(Float(bitPattern: values[i]), expected, accuracy: 1e-6 * max(1, abs(expected)), name)
            }
        }
        let final = try CLI.completeRun(yaml.replacingOccurrences(of: ", source: best", with: ""))
        XCTAssertNotEqual(try Self.bits(try H5File.open(final + "/tasks/fuse.h5"), "model"), fused)
    }

    /// A transformer LM keeps its best model too, and early stopping stops it by steps.
    func testLanguageModelBestAndEarlyStopping() throws {
        let dir = try CLI.lmWorkspace(steps: 60, evalEvery: 10)
        try CLI.editSpec(in: dir, replacing: "checkpoint_every: 50}", with: "checkpoint_every: 50, early_stopping: {patience: 1, min_delta: 100}}")
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let run = dir + "/" + r.lastLine
        let task = try H5File.open(run + "/tasks/train.h5")
        XCTAssertEqual(try task.read("metrics/eval/step", as: Int64.self).values, [10, 20])
        XCTAssertEqual(try task.attribute("steps", as: Int64.self), 20)
        XCTAssertEqual(try task.attribute("stopped_early", as: Int64.self), 1)
        let losses = try task.read("metrics/eval/val_loss", as: Double.self).values
        XCTAssertEqual(try task.openGroup("best").attribute("value", as: Double.self), losses.min())
        let file = try H5File.open(run + "/run.h5")
        XCTAssertEqual(try file.readScalar("summary/best/val_loss", as: Double.self), losses.min()!, accuracy: 1e-12)
        XCTAssertTrue(file.exists("summary/best/val_bits_per_byte"))
    }

    func testBadEarlyStoppingAndMetricAreRefused() throws {
        let cases: [(String, String)] = [
            ("train: {early_stopping: {min_delta: 0.1}}", "moe-run: error: spec.yaml:2:25: train.early_stopping.patience: required key is missing"),
            ("train: {early_stopping: {patience: 0}}", "moe-run: error: spec.yaml:2:36: train.early_stopping.patience: must be >= 1, got 0"),
            ("eval: {metric: val_acc}", "moe-run: error: spec.yaml:2:16: eval.metric: unknown value \"val_acc\"; allowed: val_loss, val_accuracy"),
            ("fusion: {source: better}", "moe-run: error: spec.yaml:2:18: fusion.source: unknown value \"better\"; allowed: final, best"),
        ]
        for (line, expected) in cases {
            let dir = try CLI.workspace("name: bad\n" + line + "\n")
            let r = try CLI.run(["validate", "spec.yaml"], in: dir)
            XCTAssertEqual(r.status, 2, line)
            XCTAssertEqual(r.stderr.split(separator: "\n").first.map(String.init), expected, line)
        }
    }
}
