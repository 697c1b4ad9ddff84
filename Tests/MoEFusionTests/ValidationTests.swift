import XCTest
@testable import MoEFusion

final class ValidationTests: XCTestCase {
    let m0 = twoTensorModel(a: [1, 2, 3, 4], b: [5, 6, 7])

    func testSameNamesInAnotherOrderAreAccepted() throws {
        let reordered = NamedTensors([(name: "b", shape: [3], values: [0, 0, 0]), (name: "a", shape: [2, 2], values: [0, 0, 0, 0])])
        XCTAssertNoThrow(try Fusion.validate([m0, reordered]))
        // The result keeps the first model's (checkpoint) order.
        XCTAssertEqual(try Fusion.average([m0, reordered]).names, ["a", "b"])
    }

    func testMissingTensorNamesTensorAndModel() {
        let missing = NamedTensors([(name: "a", shape: [2, 2], values: [0, 0, 0, 0])])
        assertThrows(.missingTensor(name: "b", model: 2)) { try Fusion.validate([m0, m0, missing]) }
        assertThrows(.missingTensor(name: "b", model: 1)) { _ = try Fusion.average([m0, missing]) }
    }

    func testExtraTensor() {
        var extra = m0
        extra.names.append("c")
        extra.shapes["c"] = [1]
        extra.values["c"] = [0]
        assertThrows(.extraTensor(name: "c", model: 1)) { try Fusion.validate([m0, extra]) }
    }

    func testShapeMismatchNamesExpectedAndGot() {
        var transposed = m0
        transposed.shapes["a"] = [4, 1]
        assertThrows(.shapeMismatch(name: "a", expected: [2, 2], got: [4, 1], model: 1)) {
            _ = try Fusion.slerp(m0, transposed, t: 0.5)
        }
        XCTAssertEqual(FusionError.shapeMismatch(name: "a", expected: [2, 2], got: [4, 1], model: 1).description,
                       "tensor a has shape [4, 1] in model 1, expected [2, 2]")
    }

    func testBaseIsTheReferenceAndReportedAsTheBaseModel() {
        let base = vectorModel([0, 0, 0])
        let model = vectorModel([1, 2])
        assertThrows(.shapeMismatch(name: "w", expected: [3], got: [2], model: 0)) {
            _ = try Fusion.taskArithmetic(base: base, models: [model])
        }
        let baseWithExtra = NamedTensors([(name: "w", shape: [2], values: [0, 0]), (name: "v", shape: [1], values: [0])])
        assertThrows(.missingTensor(name: "v", model: 0)) { _ = try Fusion.ties(base: baseWithExtra, models: [model], density: 1) }
        XCTAssertEqual(FusionError.missingTensor(name: "w", model: FusionError.baseModel).description,
                       "tensor w is missing from the base model")
    }

    func testValuesThatDoNotFitTheShapeAreRefused() {
        var bad = m0
        bad.values["b"] = [1, 2]
        assertThrows(.invalidParameter("tensor b of model 1 has shape [3] but 2 values")) { try Fusion.validate([m0, bad]) }
        assertThrows(.invalidParameter("fusion needs at least one model")) { try Fusion.validate([]) }
        var diverged = m0
        diverged.values["a"]![2] = .nan
        assertThrows(.invalidParameter("tensor a of model 1 has the non-finite value nan at index 2")) {
            _ = try Fusion.average([m0, diverged])
        }
    }

    func testParameterChecks() {
        let base = vectorModel([0, 0])
        let models = [vectorModel([1, 2]), vectorModel([3, 4])]
        assertThrows(.invalidParameter("density must be in (0, 1], got 0.0")) { _ = try Fusion.ties(base: base, models: models, density: 0) }
        assertThrows(.invalidParameter("density must be in (0, 1], got 1.5")) { _ = try Fusion.dare(base: base, models: models, density: 1.5, seed: 1) }
        assertThrows(.invalidParameter("weights: 3 weights for 2 models")) { _ = try Fusion.average(models, weights: [1, 1, 1]) }
        assertThrows(.invalidParameter("weights: the weight of model 1 is -1.0; weights must be finite and non-negative")) {
            _ = try Fusion.average(models, weights: [1, -1])
        }
        assertThrows(.invalidParameter("weights: all weights are zero")) { _ = try Fusion.average(models, weights: [0, 0]) }
    }
}
