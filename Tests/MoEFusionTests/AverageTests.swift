import XCTest
import Foundation
@testable import MoEFusion

final class AverageTests: XCTestCase {
    func testWeightedAverageNormalisesTheWeights() throws {
        let models = [twoTensorModel(a: [1, 2, 3, 4], b: [0, 0, 8]), twoTensorModel(a: [3, 6, 7, 0], b: [4, 4, 0])]
        let fused = try Fusion.average(models, weights: [1, 3])  // → 0.25, 0.75
        assertClose(fused["a"], [2.5, 5, 6, 1])
        assertClose(fused["b"], [3, 3, 2])
        XCTAssertEqual(fused.shapes["a"], [2, 2])
        let uniform = try Fusion.average(models)
        assertClose(uniform["a"], [2, 4, 5, 2])
        let sum = try Fusion.average(models, weights: [1, 1], normalize: false)
        assertClose(sum["b"], [4, 4, 8])
    }

    func testCoefficientHelpers() throws {
        XCTAssertEqual(try FusionWeights.uniform(count: 4), [0.25, 0.25, 0.25, 0.25])
        XCTAssertEqual(try FusionWeights.dataSize([100, 300, 0]), [0.25, 0.75, 0])
        let e1 = exp(-1.0)
        let soft = try FusionWeights.valLoss([1, 2], temperature: 1)
        XCTAssertEqual(soft[0], 1 / (1 + e1), accuracy: 1e-12)
        XCTAssertEqual(soft[1], e1 / (1 + e1), accuracy: 1e-12)
        // Stable: huge losses give the same answer (no exp overflow / underflow to 0/0).
        let shifted = try FusionWeights.valLoss([1000, 1001], temperature: 1)
        XCTAssertEqual(shifted[0], soft[0], accuracy: 1e-12)
        let hot = try FusionWeights.valLoss([1, 3], temperature: 2)
        XCTAssertEqual(hot[0], 1 / (1 + e1), accuracy: 1e-12)
        let cold = try FusionWeights.valLoss([1, 2, 1e6], temperature: 1e-3)
        XCTAssertEqual(cold, [1, 0, 0])
        XCTAssertEqual(try FusionWeights.explicit([2, 6], modelCount: 2), [0.25, 0.75])
        XCTAssertEqual(try FusionWeights.explicit([2, 6], modelCount: 2, normalize: false), [2, 6])
        assertThrows(.invalidParameter("weights: 1 weights for 2 models")) { _ = try FusionWeights.explicit([1], modelCount: 2) }
        assertThrows(.invalidParameter("data_size: every model has 0 examples")) { _ = try FusionWeights.dataSize([0, 0]) }
        assertThrows(.invalidParameter("data_size: model 1 has a negative example count -3")) { _ = try FusionWeights.dataSize([1, -3]) }
        assertThrows(.invalidParameter("val_loss: temperature must be positive and finite, got 0.0")) {
            _ = try FusionWeights.valLoss([1, 2], temperature: 0)
        }
        assertThrows(.invalidParameter("val_loss: model 0 has a non-finite validation loss nan")) {
            _ = try FusionWeights.valLoss([.nan, 2])
        }
    }

    /// Scalar models θ ∈ {0, 2, 1.5, 5}, score −(θ − 1)²: order 2, 0, 1, 3; {1.5} scores −0.25,
    /// + 0 → 0.75 (−0.0625, kept), + 2 → 7/6 (−0.0278, kept), + 5 → 2.125 (−1.27, refused).
    func testGreedySoupOnAToyScore() throws {
        let models = [0, 2, 1.5, 5].map { vectorModel([Float($0)]) }
        var calls = 0
        let result = try Fusion.greedySoup(models) { m in
            calls += 1
            let t = Double(m["w"]![0])
            return -(t - 1) * (t - 1)
        }
        XCTAssertEqual(result.order, [2, 0, 1, 3])
        XCTAssertEqual(result.chosen, [2, 0, 1])
        assertClose(result.soup["w"], [7.0 / 6.0])
        XCTAssertEqual(result.score, -1.0 / 36.0, accuracy: 1e-6)
        XCTAssertEqual(result.individualScores, [-1, -1, -0.25, -16])
        XCTAssertEqual(calls, 4 + 3)
    }

    func testGreedySoupNeedsAStrictImprovement() throws {
        // Equal models: the average always scores the same, so nothing joins the best one.
        let models = [vectorModel([1]), vectorModel([1]), vectorModel([1])]
        let result = try Fusion.greedySoup(models, individualScores: [0.5, 0.5, 0.9]) { _ in 0.9 }
        XCTAssertEqual(result.order, [2, 0, 1])
        XCTAssertEqual(result.chosen, [2])
    }

    func testMergeExpertsAveragesOverTheExpertAxis() throws {
        // [E=2, out=2, in=1]
        let merged = try Fusion.mergeExperts([1, 2, 3, 4], shape: [2, 2, 1])
        XCTAssertEqual(merged.shape, [2, 1])
        assertClose(merged.values, [2, 3])
        let byLoad = try Fusion.mergeExperts([1, 2, 3, 4], shape: [2, 2, 1], load: [30, 10])
        assertClose(byLoad.values, [1.5, 2.5])
        let bias = try Fusion.mergeExperts([1, 2, 3, 4, 5, 6], shape: [3, 2], load: [0, 1, 1])
        XCTAssertEqual(bias.shape, [2])
        assertClose(bias.values, [4, 5])
        assertThrows(.invalidParameter("mergeExperts: shape [2, 3] does not describe 4 values with a leading expert axis")) {
            _ = try Fusion.mergeExperts([1, 2, 3, 4], shape: [2, 3])
        }
    }
}
