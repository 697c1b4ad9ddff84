import MoENN
@testable import MoERuntime
import XCTest

/// §5.4's overall numbers pool every scored token of every domain (a token-weighted mean, not
/// a mean of the domains' means), and bits per byte is the loss in nats over ln 2.
final class LMScoresPoolingTests: XCTestCase {
    func testScoresPoolTokensAcrossDomains() {
        var a = ObjectiveSums()
        a += ObjectiveSums(lossSum: 10, correct: 3, scored: 10)
        a += ObjectiveSums(lossSum: 2, correct: 1, scored: 2)
        let c = ObjectiveSums(lossSum: 30, correct: 30, scored: 60)
        XCTAssertEqual(a.meanLoss, 1, accuracy: 1e-15)
        XCTAssertEqual(a.accuracy, 4.0 / 12, accuracy: 1e-15)
        XCTAssertEqual(LMScores.bitsPerByte(a.meanLoss), 1 / log(2), accuracy: 1e-15)
        XCTAssertEqual(a.scored, 12)
        // Token-weighted: (12 + 30) / 72, not the mean of 1 and 0.5.
        var overall = a
        overall += c
        let values = Dictionary(uniqueKeysWithValues: LMScores.values(overall, split: "val"))
        XCTAssertEqual(values["val_loss"]!, 42.0 / 72, accuracy: 1e-15)
        XCTAssertEqual(values["val_accuracy"]!, 34.0 / 72, accuracy: 1e-15)
        XCTAssertEqual(values["val_bits_per_byte"]!, 42.0 / 72 / log(2), accuracy: 1e-15)
    }
}
