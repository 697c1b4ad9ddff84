import XCTest
@testable import MoEFusion

final class FusionErrorTests: XCTestCase {
    func testMessagesNameTheTensor() {
        XCTAssertEqual(FusionError.shapeMismatch(name: "blocks/0/ffn/w1", expected: [4, 2], got: [2, 4], model: 1).description,
                       "tensor blocks/0/ffn/w1 has shape [2, 4] in model 1, expected [4, 2]")
        XCTAssertEqual(FusionError.missingTensor(name: "head/bias", model: 2).description, "tensor head/bias is missing from model 2")
    }
}
