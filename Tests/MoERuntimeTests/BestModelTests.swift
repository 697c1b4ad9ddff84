import XCTest
@testable import MoERuntime
@testable import MoESpec

/// The two decisions of `BestModel` (issue 17 item 5), as functions of the validation series.
final class BestModelTests: XCTestCase {
    func testBestIsTheFirstOfTheBestValues() {
        XCTAssertEqual(BestModel.bestIndex([0.9, 0.5, 0.7, 0.5], metric: .val_loss), 1, "ties keep the earlier step")
        XCTAssertEqual(BestModel.bestIndex([0.6, 0.8, 0.8, 0.7], metric: .val_accuracy), 1)
        XCTAssertNil(BestModel.bestIndex([], metric: .val_loss))
    }

    /// Keras semantics: the reference moves only on an improvement above min_delta.
    func testEarlyStoppingCountsValidationsWithoutAnImprovementAboveMinDelta() {
        let rule = TrainSpec.EarlyStopping(patience: 2, minDelta: 0.1)
        XCTAssertFalse(BestModel.shouldStop([1.0, 0.95], rule, metric: .val_loss), "one validation without improvement")
        XCTAssertTrue(BestModel.shouldStop([1.0, 0.95, 0.92], rule, metric: .val_loss), "0.95 and 0.92 are within 0.1 of 1.0")
        XCTAssertFalse(BestModel.shouldStop([1.0, 0.95, 0.85], rule, metric: .val_loss), "0.85 improves on 1.0 by more than 0.1")
        XCTAssertTrue(BestModel.shouldStop([1.0, 0.95, 0.85, 0.8, 0.9], rule, metric: .val_loss))
        XCTAssertTrue(BestModel.shouldStop([0.5, 0.55, 0.59], rule, metric: .val_accuracy))
        XCTAssertFalse(BestModel.shouldStop([0.5, 0.55, 0.61], rule, metric: .val_accuracy))
        XCTAssertFalse(BestModel.shouldStop([], rule, metric: .val_loss))
    }
}
