import XCTest
@testable import MoENN

final class ParameterPathTests: XCTestCase {
    func testParsesTheFourBlockFormsAndNothingElse() {
        XCTAssertEqual(ParameterPath("blocks/3/ffn/w1"), .ffn(block: 3, tensor: "w1"))
        XCTAssertEqual(ParameterPath("blocks/0/moe/experts/b2"), .experts(block: 0, tensor: "b2"))
        XCTAssertEqual(ParameterPath("blocks/12/moe/router/noise_weight"), .router(block: 12, tensor: "noise_weight"))
        XCTAssertEqual(ParameterPath("blocks/2/moe/shared/w1"), .shared(block: 2, tensor: "w1"))
        for name in ["embed/weight", "head/bias", "norm/weight", "blocks/1/norm/weight", "input/mean",
                     "blocks/x/ffn/w1", "blocks/1/ffn", "blocks/1/ffn/w1/extra", "blocks/1/moe/experts",
                     "blocks/1/moe/gate/w", "blocks/1/moe/experts/w1/x", "blocks/1/moe/shared", "layers/1/ffn/w1", ""] {
            XCTAssertEqual(ParameterPath(name), .other(name), name)
            XCTAssertNil(ParameterPath(name).block, name)
        }
        XCTAssertTrue(ParameterPath("blocks/0/moe/router/weight").isMoE)
        XCTAssertTrue(ParameterPath("blocks/0/moe/experts/w1").isMoE)
        XCTAssertTrue(ParameterPath("blocks/0/moe/shared/w2").isMoE)
        XCTAssertFalse(ParameterPath("blocks/0/ffn/w1").isMoE)
        XCTAssertEqual(ParameterPath("blocks/7/moe/router/weight").block, 7)
    }

    /// Every parameter of a dense and of an MoE model (noisy top-k: with the router's noise
    /// weight; 2 shared experts) parses and builds back to its own name; the block tensors are recognised as such.
    func testEveryModelParameterRoundTrips() {
        let dense = ResidualMLP(config: ModelConfig(features: 4, classes: 3, hidden: 8, ffn: 16, blocks: 3), seed: 1)
        let moe = ResidualMLP(config: ModelConfig(features: 4, classes: 3, hidden: 8, ffn: 16, blocks: 3,
                                                  moe: MoEConfig(experts: 4, blocks: [0, 2], router: .noisyTopk, sharedExperts: 2)), seed: 1)
        var kinds: [String: Int] = [:]
        for p in dense.parameters + moe.parameters {
            let path = ParameterPath(p.name)
            XCTAssertEqual(path.name, p.name)
            XCTAssertEqual(path.description, p.name)
            switch path {
            case .ffn: kinds["ffn", default: 0] += 1
            case .experts: kinds["experts", default: 0] += 1
            case .router: kinds["router", default: 0] += 1
            case .shared: kinds["shared", default: 0] += 1
            case .other: kinds["other", default: 0] += 1
            }
        }
        // dense: 3 blocks × 4 FFN tensors; MoE: block 1 dense (4), blocks 0 and 2 with 4 expert
        // tensors, 2 router tensors and 4 shared-expert tensors each.
        XCTAssertEqual(kinds["ffn"], 12 + 4)
        XCTAssertEqual(kinds["experts"], 8)
        XCTAssertEqual(kinds["router"], 4)
        XCTAssertEqual(kinds["shared"], 8)
    }
}
