import Foundation
import MoEHDF5
import MoENN
@testable import MoERuntime
import MoESpec
import MoEStore
import XCTest

/// `TrainingLoop` with a strategy and hooks that record what they are given: the budget (epochs,
/// or steps cycling through epochs of the batch order), the cadence of rows, evaluations and
/// checkpoints, and an interrupted run resumed to the same end as an uninterrupted one.
final class TrainingLoopTests: XCTestCase {
    /// Batch `10·epoch + i` for i < 3.
    final class Batches: BatchSource {
        let batchesPerEpoch = 3
        private var epoch = 0, index = -1
        func start(epoch: Int) { (self.epoch, index) = (epoch, -1) }
        func next() -> Bool {
            index += 1
            return index < batchesPerEpoch
        }
        var batch: Int { 10 * epoch + index }
    }

    /// Adds each batch id to its one parameter; asks to stop after step `stopAfter`.
    final class Recorder: StepStrategy, TrainingHooks {
        let parameter = Parameter(name: "w", shape: [1])
        lazy var optimizer = SGD(parameters: [parameter])
        var seen: [Int] = [], evaluations: [Int] = [], checkpoints: [Int] = []
        var stopAfter: Int?

        var step: Int { optimizer.stepCount }
        func trainStep(on batch: Int, stop: Bool) -> StepReport {
            seen.append(batch)
            parameter.value.data[0] += Float(batch)
            optimizer.stepCount += 1
            return StepReport(loss: 0.5, correct: 1, scored: 2, gradNorm: 1, lr: 0.1, stop: stop || step == stopAfter)
        }

        var checkpointParameters: [Parameter] { [parameter] }
        var checkpointOptimizer: Optimizer { optimizer }
        func writeEntry(to file: H5File, at path: String) throws {
            try file.createDataset(path + "/model/w", [parameter.value.data[0]])
            try Checkpoint.writeOptimizer(optimizer, kind: .sgd, to: file, at: path + "/optimizer")
        }
        func loadEntry(from file: H5File, at path: String) throws {
            try Checkpoint.loadParameters(into: [parameter], from: file, at: path + "/model")
            try Checkpoint.loadOptimizer(into: optimizer, from: file, at: path + "/optimizer")
        }
        func evaluate(step: Int) throws -> TrainingLoop.Evaluated? {
            evaluations.append(step)
            return .init(loss: Double(step), accuracy: 0.5)
        }
        func beforeCheckpoint() throws { checkpoints.append(step) }
        func writeResult(to file: H5File) throws { try file.createDataset("model/w", [parameter.value.data[0]]) }
        func writeModel(to file: H5File, at path: String) throws { try file.createDataset(path + "/w", [parameter.value.data[0]]) }
    }

    private var layout: RunLayout!

    override func setUpWithError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loop-\(UUID().uuidString)").path
        layout = RunLayout(directory: dir)
        try layout.create()
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: layout.directory) }

    private func spec(checkpointEvery: Int = 0) throws -> ExperimentSpec {
        var s = try SpecLoader.load(yaml: "name: loop\n", file: "spec.yaml")
        (s.train.logEvery, s.train.evalEvery, s.train.checkpointEvery) = (2, 0, checkpointEvery)
        return s
    }

    private func loop(_ r: Recorder, epochs: Int = 1, steps: Int? = nil, checkpointEvery: Int = 0) throws -> TrainingLoop {
        TrainingLoop(id: "train", spec: try spec(checkpointEvery: checkpointEvery), layout: layout, log: RunLog(path: nil, quiet: true),
                     isLead: true, hooks: r, batchesPerEpoch: 3, epochs: epochs, steps: steps, legacy: .train)
    }

    private func taskFile() throws -> (steps: [Int64], loss: [Double], evalSteps: [Int64], w: Float, total: Int64) {
        let file = try H5File.open(layout.taskFile("train"))
        return (try file.read("metrics/step", as: Int64.self).values, try file.read("metrics/train_loss", as: Double.self).values,
                try file.read("metrics/eval/step", as: Int64.self).values, try file.read("model/w", as: Float.self).values[0],
                try file.attribute("steps", as: Int64.self))
    }

    func testEpochsBudgetRunsWholeEpochs() throws {
        let r = Recorder()
        let l = try loop(r, epochs: 2)
        XCTAssertEqual(l.totalSteps, 6)
        XCTAssertFalse(try l.restore())
        try l.run(r, Batches())
        XCTAssertEqual(r.seen, [0, 1, 2, 10, 11, 12])
        XCTAssertEqual(r.evaluations, [3, 6], "eval_every: 0 is the end of every epoch")
        XCTAssertEqual(r.checkpoints, [3, 6], "checkpoint_every: 0 is the end of every epoch")
        let f = try taskFile()
        XCTAssertEqual(f.steps, [2, 4, 6])
        XCTAssertEqual(f.loss, [0.5, 0.5, 0.5], "train_loss is Σ loss·scored / Σ scored")
        XCTAssertEqual(f.evalSteps, [3, 6])
        XCTAssertEqual(f.total, 6)
        XCTAssertEqual(f.w, 36)
    }

    /// `steps` replaces `epochs`: the batch order cycles through epochs, the last one cut short;
    /// the last step logs its row, and `0` cadences evaluate and checkpoint at the end of training.
    func testStepsBudgetCyclesThroughEpochsOfTheBatchOrder() throws {
        let r = Recorder()
        let l = try loop(r, epochs: 50, steps: 7)
        XCTAssertEqual(l.totalSteps, 7)
        XCTAssertEqual(l.epochs, 3)
        try l.run(r, Batches())
        XCTAssertEqual(r.seen, [0, 1, 2, 10, 11, 12, 20])
        XCTAssertEqual(r.evaluations, [7], "with steps, eval_every: 0 is the end of training")
        XCTAssertEqual(r.checkpoints, [7], "with steps, checkpoint_every: 0 is the end of training")
        let f = try taskFile()
        XCTAssertEqual(f.steps, [2, 4, 6, 7])
        XCTAssertEqual(f.evalSteps, [7])
        XCTAssertEqual(f.total, 7)
    }

    /// An interrupt saves a checkpoint; the resumed loop replays the same batch order from the
    /// next batch and ends with the uninterrupted run's weights, rows and evaluations.
    func testInterruptedThenResumedEqualsUninterrupted() throws {
        let straight = Recorder()
        try loop(straight, steps: 8, checkpointEvery: 4).run(straight, Batches())
        let expected = try taskFile()
        try FileManager.default.removeItem(atPath: layout.taskFile("train"))

        let first = Recorder()
        first.stopAfter = 5
        XCTAssertThrowsError(try loop(first, steps: 8, checkpointEvery: 4).run(first, Batches())) { error in
            XCTAssertEqual("\(error)", "train: interrupted at step 5; state saved, rerun with --resume to continue")
        }
        XCTAssertEqual(first.seen, [0, 1, 2, 10, 11])
        let second = Recorder()
        let l = try loop(second, steps: 8, checkpointEvery: 4)
        XCTAssertTrue(try l.restore())
        XCTAssertEqual([l.epoch, l.batchInEpoch], [1, 2])
        try l.run(second, Batches())
        XCTAssertEqual(second.seen, [12, 20, 21])
        let got = try taskFile()
        XCTAssertEqual(got.steps, expected.steps)
        XCTAssertEqual(got.evalSteps, expected.evalSteps)
        XCTAssertEqual(got.w, expected.w)
        XCTAssertEqual(got.total, 8)
    }

    /// A non-finite loss stops the run with the divergence message, before anything is logged.
    /// The progress line names the rate by what a step scores (rows → samples/s with the epoch;
    /// tokens → tokens/s, no epoch), and its ETA is the remaining steps × seconds per step,
    /// whatever the items per step (an LM step of 8 windows × 16 tokens is not 8 samples).
    func testProgressLineNamesTheRateByItemsAndETAIsRemainingStepsTimesSecondsPerStep() {
        // 10 steps of 8·16 = 128 tokens in 1 s: 1280 tokens/s, 0.1 s per step, 290 steps left.
        XCTAssertEqual(TrainingLoop.progressLine(id: "train", items: .tokens, epoch: 0, epochs: 1, step: 10, totalSteps: 300,
                                                 loss: 4.83904, accuracy: 0.1794, lr: 0.00299, rate: 1280, secondsPerStep: 0.1),
                       "train: step 10/300 loss 4.8390 acc 0.179 lr 2.99e-03 1280 tokens/s ETA 29s")
        XCTAssertEqual(TrainingLoop.progressLine(id: "train", items: .samples, epoch: 1, epochs: 3, step: 40, totalSteps: 57,
                                                 loss: 1.0986, accuracy: 0.3333, lr: 0.003, rate: 320, secondsPerStep: 0.1),
                       "train: epoch 2/3 step 40/57 loss 1.0986 acc 0.333 lr 3.00e-03 320 samples/s ETA 2s")
        XCTAssertEqual(MetricsLog(items: .tokens).trainSeries, ["train_loss", "train_accuracy", "lr", "grad_norm", "tokens_per_second"])
        XCTAssertEqual(MetricsLog(moe: true).trainSeries,
                       ["train_loss", "train_accuracy", "lr", "grad_norm", "epoch", "samples_per_second", "aux_loss"])
    }

    func testDivergenceStopsTheRun() throws {
        final class Diverging: StepStrategy {
            var step = 0
            /// The second step diverges: its update is skipped, so the step count stays 1.
            func trainStep(on batch: Int, stop: Bool) -> StepReport {
                if step == 1 { return StepReport(loss: .infinity, correct: 0, scored: 1, gradNorm: .nan, lr: 0.1, stop: false) }
                step += 1
                return StepReport(loss: 1, correct: 0, scored: 1, gradNorm: 1, lr: 0.1, stop: false)
            }
        }
        let r = Recorder()
        XCTAssertThrowsError(try loop(r, epochs: 1).run(Diverging(), Batches())) { error in
            let message = "\(error)"
            XCTAssertTrue(message.hasPrefix("train: the loss became ") && message.contains(" at step 2 (epoch 1); the run stopped. "), message)
        }
    }
}
