import Foundation
import MoEHDF5
import MoENN
@testable import MoERuntime
import XCTest

/// `TrainingWindow`: one typed log window for every step strategy, saved in one layout, and the
/// three positional layouts of older checkpoints still read.
final class TrainingWindowTests: XCTestCase {
    private var path = ""

    override func setUp() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("window-\(UUID().uuidString).h5").path
    }

    override func tearDown() { unlink(path) }

    private func report(loss: Double, correct: Int, rows: Int, aux: Double = 0, stages: [(Double, Int)] = [], wait: Double = 0) -> StepReport {
        var r = StepReport(loss: loss, correct: correct, scored: rows, auxLoss: aux, gradNorm: 1, lr: 0.1, stop: false)
        r.stages = stages.map { ObjectiveSums(lossSum: $0.0 * Double(rows), correct: $0.1, scored: rows) }
        r.costs = GroupCosts(seconds: 2, computeSeconds: 1, waitSeconds: wait, bytesSent: 8, compressionError: 0.25)
        return r
    }

    func testAddSumsTheStepsFigures() {
        var w = TrainingWindow(stages: 2)
        w.add(report(loss: 0.5, correct: 3, rows: 4, aux: 0.25, stages: [(1, 1), (0.5, 3)], wait: 0.5))
        w.add(report(loss: 1.5, correct: 1, rows: 2, stages: [(2, 0), (1.5, 1)]))
        XCTAssertEqual(w.loss, 5)
        XCTAssertEqual(w.aux, 0.25 * 4)
        XCTAssertEqual(w.correct, 4)
        XCTAssertEqual(w.scored, 6)
        XCTAssertEqual(w.steps, 2)
        XCTAssertEqual(w.costs, GroupCosts(seconds: 4, computeSeconds: 2, waitSeconds: 0.5, bytesSent: 16, compressionError: 0.5))
        let stageLoss: [Double] = [4 + 4, 2 + 3]
        XCTAssertEqual(w.stageLoss, stageLoss)
        XCTAssertEqual(w.stageCorrect, [1, 4])
    }

    func testWriteThenReadIsTheSameWindow() throws {
        var w = TrainingWindow(stages: 3)
        w.add(report(loss: 0.7, correct: 5, rows: 9, aux: 0.125, stages: [(1, 2), (0.9, 4), (0.7, 5)], wait: 0.75))
        try H5File.createAtomically(path) { try w.write(to: $0) }
        let file = try H5File.open(path)
        XCTAssertEqual(try file.openDataset("metrics/window").stringAttribute("fields"), TrainingWindow.fields)
        // The saved layout wins over the legacy one the task would otherwise assume.
        XCTAssertEqual(try TrainingWindow.read(from: file, stages: 3, legacy: .train), w)
        XCTAssertThrowsError(try TrainingWindow.read(from: file, stages: 2, legacy: .train)) { error in
            XCTAssertEqual("\(error)", "\(path): metrics/window: 18 values")
        }
    }

    private func readLegacy(_ values: [Double], _ legacy: TrainingWindow.Legacy, stages: Int = 0) throws -> TrainingWindow {
        try H5File.createAtomically(path) { try $0.createDataset("metrics/window", values) }
        return try TrainingWindow.read(from: try H5File.open(path), stages: stages, legacy: legacy)
    }

    func testOlderTrainTaskLayouts() throws {
        let short = try readLegacy([3.5, 0.5, 6, 8, 2], .train)
        XCTAssertEqual(short.values, [3.5, 0.5, 6, 8, 2, 0, 0, 0, 0, 0, 0, 0])
        let group = try readLegacy([3.5, 0.5, 6, 8, 2, 1, 2, 3, 4, 5, 6], .train)
        XCTAssertEqual(group.values, [3.5, 0.5, 6, 8, 2, 1, 2, 3, 4, 5, 6, 0])
    }

    func testOlderLayerwiseLayout() throws {
        // [rows, stage_loss[2], stage_correct[2]]; the window's own sums are the last stage's.
        let w = try readLegacy([8, 4, 3, 5, 6], .layerwise(stages: 2), stages: 2)
        XCTAssertEqual(w.values, [3, 0, 6, 8, 0, 0, 0, 0, 0, 0, 0, 0, 4, 3, 5, 6])
    }

    func testOlderPipelineLayout() throws {
        let w = try readLegacy([3.5, 6, 8, 2, 1, 2, 3, 4, 5, 9], .pipeline)
        XCTAssertEqual(w.values, [3.5, 0, 6, 8, 2, 1, 2, 3, 4, 5, 0, 9])
    }

    func testAnUnknownLayoutIsOneLineNamingTheFile() throws {
        XCTAssertThrowsError(try readLegacy([1, 2, 3], .pipeline)) { error in
            XCTAssertEqual("\(error)", "\(path): metrics/window: 3 values")
        }
    }
}
