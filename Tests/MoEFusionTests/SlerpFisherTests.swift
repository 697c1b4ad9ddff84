import XCTest
import Foundation
@testable import MoEFusion

final class SlerpFisherTests: XCTestCase {
    let a = twoTensorModel(a: [1, 0, 2, -1], b: [0.5, 0.25, 3])
    let b = twoTensorModel(a: [0, 1, -1, 2], b: [-1, 2, 0.5])

    func testSlerpEndpoints() throws {
        XCTAssertEqual(try Fusion.slerp(a, b, t: 0), a)
        let one = try Fusion.slerp(a, b, t: 1)
        for name in a.names { assertClose(one[name], b[name]!.map(Double.init), accuracy: 1e-6) }
    }

    /// a = [2, 0], b = [0, 3]: Ω = π/2, sin Ω = 1, so θ(t) = cos(tπ/2)·a + sin(tπ/2)·b.
    func testSlerpOrthogonal() throws {
        let x = vectorModel([2, 0]), y = vectorModel([0, 3])
        let half = try Fusion.slerp(x, y, t: 0.5)
        assertClose(half["w"], [2 * 0.5.squareRoot(), 3 * 0.5.squareRoot()])
        let third = try Fusion.slerp(x, y, t: 1.0 / 3)
        assertClose(third["w"], [2 * cos(Double.pi / 6), 3 * sin(Double.pi / 6)])
        // Unit vectors 60° apart: the midpoint is on the bisector, still of unit norm.
        let u = vectorModel([1, 0]), v = vectorModel([0.5, Float(0.75.squareRoot())])
        let mid = try Fusion.slerp(u, v, t: 0.5)
        assertClose(mid["w"], [cos(Double.pi / 6), sin(Double.pi / 6)], accuracy: 1e-6)
    }

    func testSlerpFallsBackToLinearWhenParallel() throws {
        let x = vectorModel([1, 2, 3]), y = vectorModel([2, 4, 6])
        assertClose(try Fusion.slerp(x, y, t: 0.25)["w"], [1.25, 2.5, 3.75])
        let anti = vectorModel([-1, -2, -3])
        assertClose(try Fusion.slerp(x, anti, t: 0.5)["w"], [0, 0, 0])
        let c = Fusion.slerpCoefficients([1, 2, 3], [2, 4, 6], t: 0.25)
        XCTAssertEqual(c.0, 0.75)
        XCTAssertEqual(c.1, 0.25)
    }

    func testSlerpRefusesTwoDifferentModels() {
        assertThrows(.missingTensor(name: "w", model: 1)) { _ = try Fusion.slerp(vectorModel([1]), vectorModel([1], name: "v"), t: 0.5) }
    }

    /// θ1 = [1, 2], θ2 = [3, 4], F1 = [1, 0], F2 = [3, 0]: coordinate 0 → (1·1 + 3·3)/4 = 2.5;
    /// coordinate 1 has no Fisher mass → the plain average 3.
    func testFisherHandComputed() throws {
        let models = [vectorModel([1, 2]), vectorModel([3, 4])]
        let fishers = [vectorModel([1, 0]), vectorModel([3, 0])]
        assertClose(try Fusion.fisher(models, fishers: fishers)["w"], [2.5, 3], accuracy: 1e-6)
        // Weights [3, 1]: (3·1·1 + 1·3·3)/(3·1 + 1·3) = 2; (3·2 + 4)/4 = 2.5.
        assertClose(try Fusion.fisher(models, fishers: fishers, weights: [3, 1])["w"], [2, 2.5], accuracy: 1e-6)
        // Equal Fishers: the plain average.
        assertClose(try Fusion.fisher(models, fishers: [vectorModel([5, 5]), vectorModel([5, 5])])["w"], [2, 3])
        assertThrows(.invalidParameter("tensor w has shape [3] in the Fisher of model 1, expected [2]")) {
            _ = try Fusion.fisher(models, fishers: [vectorModel([1, 1]), vectorModel([1, 1, 1])])
        }
        assertThrows(.invalidParameter("fisher: tensor w of the Fisher of model 0 has the value -1.0 at 1")) {
            _ = try Fusion.fisher(models, fishers: [vectorModel([1, -1]), vectorModel([1, 1])])
        }
    }

    func testFisherAccumulator() throws {
        var acc = FisherAccumulator(like: twoTensorModel(a: [0, 0, 0, 0], b: [0, 0, 0]))
        try acc.add(gradients: ["a": [1, 2, 0, -1], "b": [3, 0, 1]])
        try acc.add(gradients: ["a": [3, 0, 0, 1], "b": [-1, 0, 1]])
        let f = acc.fisher()
        XCTAssertEqual(acc.batches, 2)
        XCTAssertEqual(f.names, ["a", "b"])
        XCTAssertEqual(f["a"], [5, 2, 0, 1])
        XCTAssertEqual(f["b"], [5, 0, 1])
        assertThrows(.invalidParameter("Fisher: batch 2 has no gradient for tensor b")) { try acc.add(gradients: ["a": [0, 0, 0, 0]]) }
        XCTAssertEqual(acc.batches, 2)
    }

    func testStatistics() throws {
        let base = vectorModel([0, 0])
        let models = [vectorModel([3, 4]), vectorModel([-3, -4]), vectorModel([0, 2])]
        let merge = try Fusion.ties(base: base, models: models, density: 1)
        let stats = try Fusion.statistics(fused: merge.model, models: models, base: base, merge: merge)
        XCTAssertEqual(stats.count, 1)
        let s = stats[0]
        XCTAssertEqual(s.name, "w")
        // Sums [0, 2] elect [+, +]: fused = [3, (4 + 2)/2] = [3, 3].
        assertClose(merge.model["w"], [3, 3])
        XCTAssertEqual(s.distanceToModel[0], 1, accuracy: 1e-12)
        XCTAssertEqual(s.distanceToModel[2], 10.0.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(s.taskVectorNorm!, [5, 5, 2])
        XCTAssertEqual(s.taskVectorCosine![0], -1, accuracy: 1e-12)  // (0, 1)
        XCTAssertEqual(s.taskVectorCosine![1], 0.8, accuracy: 1e-12)  // (0, 2)
        XCTAssertEqual(s.taskVectorCosine![2], -0.8, accuracy: 1e-12) // (1, 2)
        XCTAssertEqual(s.signConflictFraction, 1)
        XCTAssertEqual(s.keptFraction, 1)
        let plain = try Fusion.statistics(fused: try Fusion.average(models), models: models)
        XCTAssertNil(plain[0].taskVectorCosine)
        XCTAssertNil(plain[0].keptFraction)
    }
}
