import XCTest
import Foundation
@testable import MoEFusion

final class OptimizedWeightsTests: XCTestCase {
    /// A quadratic Σ c_i (w_i − p_i)² with p on the simplex: the optimum is p (loss 0).
    func testInteriorOptimumOfAQuadratic() throws {
        let p = [0.5, 0.3, 0.15, 0.05], c = [1.0, 2, 3, 0.5]
        let r = try Fusion.optimizedWeights(count: 4, seed: 1, maxEvaluations: 2000) { w in
            zip(zip(w, p), c).reduce(0) { $0 + $1.1 * ($1.0.0 - $1.0.1) * ($1.0.0 - $1.0.1) }
        }
        for i in 0..<4 { XCTAssertEqual(r.weights[i], p[i], accuracy: 1e-3, "weights \(r.weights)") }
        XCTAssertEqual(r.weights.reduce(0, +), 1, accuracy: 1e-12)
        XCTAssertLessThanOrEqual(r.loss, r.uniformLoss)
        XCTAssertLessThan(r.finalStep, 1e-4)
        XCTAssertLessThanOrEqual(r.evaluations, 2000)
        print("optimizedWeights: interior optimum of a 4-model quadratic in \(r.evaluations) evaluations, \(r.weights)")
    }

    /// ‖w − q‖² with q = [0.8, 0.6, −0.2, 0] off the simplex: the optimum is q's Euclidean
    /// projection, [0.6, 0.4, 0, 0], on a face of the simplex.
    func testOptimumOnAFace() throws {
        let q = [0.8, 0.6, -0.2, 0]
        let r = try Fusion.optimizedWeights(count: 4, seed: 3, maxEvaluations: 2000) { w in
            zip(w, q).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        }
        let expected = [0.6, 0.4, 0, 0]
        for i in 0..<4 { XCTAssertEqual(r.weights[i], expected[i], accuracy: 1e-3, "weights \(r.weights)") }
        XCTAssertTrue(r.weights.allSatisfy { $0 >= 0 })
        print("optimizedWeights: optimum on a face in \(r.evaluations) evaluations, \(r.weights)")
    }

    func testNeverWorseThanUniformAndDeterministic() throws {
        // Uniform is the optimum: it is returned as is.
        let flat = try Fusion.optimizedWeights(count: 3, maxEvaluations: 50) { w in w.reduce(0) { $0 + $1 * $1 } }
        XCTAssertEqual(flat.weights, [1.0 / 3, 1.0 / 3, 1.0 / 3])
        XCTAssertEqual(flat.loss, flat.uniformLoss)
        // A rugged loss (with NaNs): the result is never worse than uniform, and reproducible.
        func rugged(_ w: [Double]) -> Double {
            let h = w.enumerated().reduce(0.0) { $0 + sin(Double($1.offset + 1) * 37 * $1.element) }
            return h > 1.5 ? .nan : h
        }
        let r1 = try Fusion.optimizedWeights(count: 3, seed: 5, maxEvaluations: 40, loss: rugged)
        let r2 = try Fusion.optimizedWeights(count: 3, seed: 5, maxEvaluations: 40, loss: rugged)
        XCTAssertEqual(r1, r2)
        XCTAssertLessThanOrEqual(r1.loss, r1.uniformLoss)
        XCTAssertEqual(r1.loss, rugged(r1.weights))
        XCTAssertEqual(r1.evaluations, 40)
        // One model: weight 1, one evaluation.
        let one = try Fusion.optimizedWeights(count: 1) { _ in 2 }
        XCTAssertEqual(one.weights, [1])
        XCTAssertEqual(one.evaluations, 1)
    }

    func testBudgetIsRespected() throws {
        var calls = 0
        let r = try Fusion.optimizedWeights(count: 5, maxEvaluations: 17) { w in calls += 1; return -w[0] }
        XCTAssertEqual(calls, 17)
        XCTAssertEqual(r.evaluations, 17)
        XCTAssertGreaterThan(r.weights[0], 0.2)
    }
}
