import Foundation
import MoEHDF5
import XCTest

/// `split.strategy: layerwise` trained end to end (`parallelism.mode: pipeline`, GPipe
/// micro-batches) as users meet it: the stages run as a group of worker processes, one stage
/// each, and the run learns what one process training the same residual MLP
/// (`split.strategy: none`) learns from the same batches, to float rounding; the task file has
/// the dense layout plus the group's costs and `bubble_fraction`; a killed rank makes the group
/// retry from the last checkpoint to the bits of an undisturbed run. No process and no /dev/shm
/// file outlives a test.
final class PipelineEndToEndTests: XCTestCase {
    /// `tinySpec` with `blocks` blocks, as a layerwise pipeline of `stages` stages.
    private func pipeline(_ yaml: String, stages: Int, microbatches: Int, mode: String = "pipeline") -> String {
        let workers = mode == "pipeline" ? stages : 1
        return yaml.replacingOccurrences(of: "output:", with: """
            experts: \(stages)
            split: {strategy: layerwise}
            parallelism: {mode: \(mode), workers: \(workers), microbatches: \(microbatches), retries: 1}
            output:
            """)
    }

    private func tiny(_ name: String, epochs: Int = 3, blocks: Int = 2) -> String {
        tinySpec(name: name, epochs: epochs).replacingOccurrences(of: "blocks: 2", with: "blocks: \(blocks)")
    }

    private func maxDifference(_ a: [String: [UInt32]], _ b: [String: [UInt32]]) -> Float {
        XCTAssertEqual(Set(a.keys), Set(b.keys))
        return a.keys.map { k in
            zip(a[k]!, b[k] ?? []).map { abs(Float(bitPattern: $0) - Float(bitPattern: $1)) }.max() ?? 0
        }.max() ?? .infinity
    }

    private func worst(_ a: [Double], _ b: [Double], _ what: String, file: StaticString = #filePath, line: UInt = #line) -> Double {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        return zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    }

    /// Compares a pipeline run with one process training the same model on the same batches.
    private func assertEquivalent(stages: Int, microbatches: Int, blocks: Int, mode: String = "pipeline",
                                  file: StaticString = #filePath, line: UInt = #line) throws {
        let name = "pipe\(stages)x\(microbatches)\(mode)"
        let single = try CLI.completeRun(tiny(name, blocks: blocks), file: file, line: line)
        let runDir = try CLI.completeRun(pipeline(tiny(name, blocks: blocks), stages: stages, microbatches: microbatches, mode: mode), file: file, line: line)
        let loss = worst(try CLI.trainSeries(runDir, "train_loss"), try CLI.trainSeries(single, "train_loss"), "train_loss", file: file, line: line)
        let val = worst(try CLI.trainSeries(runDir, "eval/val_loss"), try CLI.trainSeries(single, "eval/val_loss"), "val_loss", file: file, line: line)
        let weights = maxDifference(try CLI.finalModelBits(runDir), try CLI.finalModelBits(single))
        print("pipeline S=\(stages) M=\(microbatches) blocks=\(blocks) \(mode): |Δ train_loss| \(loss), |Δ val_loss| \(val), |Δ weights| \(weights)")
        XCTAssertLessThan(loss, 1e-6, "train_loss, S=\(stages) M=\(microbatches)", file: file, line: line)
        XCTAssertLessThan(val, 1e-6, "val_loss, S=\(stages) M=\(microbatches)", file: file, line: line)
        XCTAssertLessThan(weights, 1e-5, "final weights, S=\(stages) M=\(microbatches)", file: file, line: line)
        XCTAssertLessThan(worst(try CLI.trainSeries(runDir, "train_accuracy"), try CLI.trainSeries(single, "train_accuracy"), "train_accuracy"), 1e-9, file: file, line: line)
        if mode == "pipeline" {
            XCTAssertTrue(try CLI.trainSeries(runDir, "bytes_sent").allSatisfy { $0 > 0 }, file: file, line: line)
            XCTAssertTrue(try CLI.trainSeries(runDir, "compute_seconds").allSatisfy { $0 > 0 }, file: file, line: line)
            let bubble = try CLI.trainSeries(runDir, "bubble_fraction")
            XCTAssertEqual(bubble.count, try CLI.trainSeries(runDir, "train_loss").count, file: file, line: line)
            XCTAssertTrue(bubble.allSatisfy { $0 >= 0 && $0 < 1 }, "bubble_fraction \(bubble.prefix(4))", file: file, line: line)
        }
    }

    func testTwoStagesOneMicroBatchLearnWhatOneProcessLearns() throws {
        try assertEquivalent(stages: 2, microbatches: 1, blocks: 2)
    }

    func testTwoStagesFourMicroBatchesLearnWhatOneProcessLearns() throws {
        try assertEquivalent(stages: 2, microbatches: 4, blocks: 2)
    }

    func testFourStagesOverFiveBlocksLearnWhatOneProcessLearns() throws {
        try assertEquivalent(stages: 4, microbatches: 3, blocks: 5)
    }

    func testOneProcessGPipeScheduleLearnsWhatOneProcessLearns() throws {
        try assertEquivalent(stages: 3, microbatches: 4, blocks: 3, mode: "none")
    }

    func testTaskFileHasTheDenseLayoutAndShowPrintsTheBubble() throws {
        let runDir = try CLI.completeRun(pipeline(tiny("pipeshow"), stages: 2, microbatches: 2))
        let task = try H5File.open(runDir + "/tasks/train.h5")
        for path in ["metrics/step", "metrics/train_loss", "metrics/wait_seconds", "metrics/bubble_fraction", "model/embed/weight",
                     "model/blocks/1/ffn/w2", "model/head/weight"] {
            XCTAssertTrue(task.exists(path), path)
        }
        let checkpoints = try task.openGroup("checkpoints").children()
        XCTAssertFalse(checkpoints.isEmpty)
        XCTAssertTrue(task.exists("checkpoints/\(checkpoints[0])/optimizer/exp_avg/blocks/1/ffn/w2"), "rank 1's optimizer state gathered")
        XCTAssertTrue(task.exists("checkpoints/\(checkpoints[0])/optimizer/exp_avg_sq/embed/weight"))
        let dir = (runDir as NSString).deletingLastPathComponent
        let show = try CLI.run(["show", runDir], in: dir)
        XCTAssertEqual(show.status, 0, show.stderr)
        XCTAssertTrue(show.stdout.contains("pipeline bubble"), show.stdout)
        XCTAssertTrue(show.stdout.contains("per training step (rank 0, mean)"), show.stdout)
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("train[rank 1]: started worker process"), log)
        XCTAssertTrue(log.contains("GPipe training of 2 stages"), log)
    }

    /// SIGINT reaches every rank; the stop wish is all-reduced, so all ranks stop after the same
    /// step, rank 0 gathers and saves that step, and `--resume` ends with the undisturbed bits.
    func testInterruptStopsEveryStageAtTheSameStepAndResumesToTheSameBits() throws {
        let long = pipeline(tiny("pipeint", epochs: 40), stages: 3, microbatches: 2)
            .replacingOccurrences(of: "blocks: 2", with: "blocks: 3")
            .replacingOccurrences(of: "samples: 600", with: "samples: 3000")
        let expected = try CLI.finalModelBits(try CLI.completeRun(long))
        let dir = try CLI.workspace(long)
        let p = try CLI.start(["spec.yaml", "--quiet"], in: dir)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && p.isRunning && !CLI.hasCheckpoint(dir) {
            usleep(20_000)
        }
        usleep(200_000)
        XCTAssertEqual(kill(p.processIdentifier, SIGINT), 0)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130, "interrupted")
        CLI.assertNoProcesses(in: dir)
        let name = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/pipeint").first)
        let runDir = dir + "/out/pipeint/" + name
        var log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        let steps = Set(log.split(separator: "\n").compactMap { line -> Substring? in
            guard let r = line.range(of: "interrupted at step ") else { return nil }
            return line[r.upperBound...].prefix { $0.isNumber }
        })
        XCTAssertEqual(steps.count, 1, "every rank stops after the same step: \(steps)")
        let r = try CLI.run(["spec.yaml", "--quiet", "--resume"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("resuming from the checkpoint at step \(steps.first ?? "?") "), log)
        XCTAssertEqual(try CLI.finalModelBits(runDir), expected, "the resumed run ends with the same bits")
        CLI.assertNoProcesses(in: dir)
    }

    func testKilledRankMakesTheGroupRetryToTheBitsOfAnUndisturbedRun() throws {
        let long = pipeline(tiny("pipekill", epochs: 30), stages: 2, microbatches: 4)
            .replacingOccurrences(of: "log_every: 5", with: "log_every: 5\n  checkpoint_every: 50")
            .replacingOccurrences(of: "samples: 600", with: "samples: 3000")
        let expected = try CLI.finalModelBits(try CLI.completeRun(long))
        try CLI.assertKilledRankIsRetried(long, name: "pipekill", expected: expected)
    }
}
