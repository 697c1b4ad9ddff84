import XCTest
@testable import MoEFusion

final class TaskMergeTests: XCTestCase {
    let zero = vectorModel([0, 0, 0, 0, 0])
    // Task vectors (base 0): see testTiesHandComputed.
    let tiesModels = [vectorModel([1, -2, 3, 0.5, 0]), vectorModel([-3, 1, 1, -0.5, 0]), vectorModel([1, 1, -5, 0.1, 0])]

    func testTaskArithmeticHandComputed() throws {
        let base = twoTensorModel(a: [1, 1, 1, 1], b: [0, 0, 0])
        let m1 = twoTensorModel(a: [2, 1, 0, 1], b: [1, 0, 0])   // τ1 a = [1, 0, −1, 0]
        let m2 = twoTensorModel(a: [1, 3, 1, 5], b: [0, 2, 0])   // τ2 a = [0, 2, 0, 4]
        let r = try Fusion.taskArithmetic(base: base, models: [m1, m2], weights: [1, 0.5], lambda: 2)
        assertClose(r.model["a"], [3, 3, -1, 5])   // 1 + 2·(τ1 + 0.5 τ2)
        assertClose(r.model["b"], [2, 2, 0])
        let normalized = try Fusion.taskArithmetic(base: base, models: [m1, m2], weights: [1, 0.5], lambda: 2, normalize: true)
        assertClose(normalized.model["a"], [1 + 4.0 / 3, 1 + 4.0 / 3, 1 - 4.0 / 3, 1 + 8.0 / 3])
        XCTAssertEqual(r.keptFraction["a"], 1)
        XCTAssertEqual(r.signConflictFraction["a"], 0)
        let negated = try Fusion.taskArithmetic(base: base, models: [m1], lambda: -1)
        assertClose(negated.model["a"], [0, 1, 2, 1])
    }

    /// density 0.6 of 5 → k = ⌊3.0000000000000004⌋ = 3 per model:
    /// τ̂1 = [1, −2, 3, 0, 0], τ̂2 = [−3, 1, 1, 0, 0] (1 and 1 tie for the last two places, both kept),
    /// τ̂3 = [1, 1, −5, 0, 0]. Sums [−1, 0, −1, 0, 0] elect [−, +, −, +, +]; disjoint means
    /// [−3/1, (1+1)/2, −5/1, 0, 0].
    func testTiesHandComputed() throws {
        let r = try Fusion.ties(base: zero, models: tiesModels, density: 0.6)
        assertClose(r.model["w"], [-3, 1, -5, 0, 0])
        XCTAssertEqual(r.keptFraction["w"]!, 0.6, accuracy: 1e-12)
        XCTAssertEqual(r.signConflictFraction["w"]!, 0.6, accuracy: 1e-12)
        // Weights [1, 2, 1]: weighted τ̂ sums [−4, 1, 0]; a zero sum elects +:
        // coordinate 2 → (3 + 2)/(1 + 2); base 1 and λ 0.5.
        let base = vectorModel([1, 1, 1, 1, 1])
        let shifted = tiesModels.map { vectorModel($0["w"]!.map { $0 + 1 }) }
        let w = try Fusion.ties(base: base, models: shifted, weights: [1, 2, 1], density: 0.6, lambda: 0.5)
        assertClose(w.model["w"], [1 - 1.5, 1 + 0.5, 1 + 5.0 / 6, 1, 1], accuracy: 1e-6)
        // Without normalize the agreeing weighted entries are summed.
        let sum = try Fusion.ties(base: zero, models: tiesModels, density: 0.6, normalize: false)
        assertClose(sum.model["w"], [-3, 2, -5, 0, 0])
    }

    func testMagnitudeTrimKeepCountAndTieRule() {
        XCTAssertEqual(Fusion.magnitudeKeepCount(density: 0.29, count: 100), 28)  // Python int(0.29 * 100)
        XCTAssertEqual(Fusion.magnitudeKeepCount(density: 0.2, count: 4), 1)      // ⌊0.8⌋ = 0, at least 1
        XCTAssertEqual(Fusion.magnitudeKeepCount(density: 1, count: 7), 7)
        XCTAssertEqual(Fusion.magnitudeKeepCount(density: 0.5, count: 0), 0)
        var tau: [Float] = [1, -1, 1, -1, 0.5, -2]
        var scratch = [Float](repeating: 0, count: tau.count)
        let k = tau.withUnsafeMutableBufferPointer { t in
            scratch.withUnsafeMutableBufferPointer { Fusion.magnitudeTrim(t, density: 0.5, scratch: $0) }
        }
        XCTAssertEqual(k, 3)
        XCTAssertEqual(tau, [1, -1, 0, 0, 0, -2])  // −2, then the first two of the four tied 1s
    }

    func testTiesDensityOneIsTheDisjointMeanOfTaskArithmetic() throws {
        // All task vectors agree in sign per coordinate: TIES at density 1 = normalised task arithmetic.
        let base = vectorModel([0.5, -1, 2, 0])
        let models = [vectorModel([1.5, -2, 2.5, 0]), vectorModel([0.75, -1.5, 4, 0]), vectorModel([2.5, -1.25, 2.25, 0])]
        let ties = try Fusion.ties(base: base, models: models, weights: [1, 2, 3], density: 1, lambda: 0.8)
        let ta = try Fusion.taskArithmetic(base: base, models: models, weights: [1, 2, 3], lambda: 0.8, normalize: true)
        assertClose(ties.model["w"], ta.model["w"]!.map(Double.init), accuracy: 1e-6)
        XCTAssertEqual(ties.keptFraction["w"], 1)
        XCTAssertEqual(ties.signConflictFraction["w"], 0)
    }

    func testAllZeroTaskVectorsGiveTheBase() throws {
        let base = vectorModel([0.25, -3, 7, 0])
        for density in [1.0, 0.5, 0.01] {
            let ties = try Fusion.ties(base: base, models: [base, base, base], density: density, lambda: 3)
            XCTAssertEqual(ties.model, base)
            let dt = try Fusion.dareTies(base: base, models: [base, base], density: density, seed: 4)
            XCTAssertEqual(dt.model, base)
        }
    }

    func testOppositeSigns() throws {
        let base = vectorModel([0, 0, 0])
        // Equal and opposite: zero mass elects +, only the positive one counts.
        let r = try Fusion.ties(base: base, models: [vectorModel([2, -1, 3]), vectorModel([-2, 1, -1])], density: 1)
        assertClose(r.model["w"], [2, 1, 3])
        // The larger magnitude wins the election and is the only one averaged.
        let s = try Fusion.ties(base: base, models: [vectorModel([1, 1, 1]), vectorModel([-3, -3, -3])], density: 1)
        assertClose(s.model["w"], [-3, -3, -3])
        XCTAssertEqual(s.signConflictFraction["w"], 1)
        // Plain task arithmetic lets them cancel.
        let ta = try Fusion.taskArithmetic(base: base, models: [vectorModel([2, -1, 3]), vectorModel([-2, 1, -1])])
        assertClose(ta.model["w"], [0, 0, 2])
    }

    func testDareDensityOneIsTaskArithmetic() throws {
        let base = vectorModel([1, 2, 3])
        let models = [vectorModel([2, 2, 5]), vectorModel([0, 4, 3])]
        let dare = try Fusion.dare(base: base, models: models, weights: [1, 0.5], density: 1, lambda: 0.5, seed: 9)
        let ta = try Fusion.taskArithmetic(base: base, models: models, weights: [1, 0.5], lambda: 0.5)
        XCTAssertEqual(dare.model, ta.model)
    }

    func testDareUsesTheExportedMaskAndRescales() throws {
        let n = 4000
        let base = vectorModel([Float](repeating: 1, count: n))
        let models = [vectorModel([Float](repeating: 3, count: n)), vectorModel([Float](repeating: 0, count: n))]
        let r = try Fusion.dare(base: base, models: models, weights: [1, 1], density: 0.25, lambda: 1, seed: 42)
        let m0 = Fusion.dareMask(seed: 42, model: 0, tensor: "w", count: n, density: 0.25)
        let m1 = Fusion.dareMask(seed: 42, model: 1, tensor: "w", count: n, density: 0.25)
        XCTAssertNotEqual(m0, m1)
        let got = r.model["w"]!
        for j in 0..<n {
            let expected: Float = 1 + (m0[j] ? 2 / 0.25 : 0) + (m1[j] ? -1 / 0.25 : 0)
            XCTAssertEqual(got[j], expected, "element \(j)")
        }
        let keptFraction = Double(m0.filter { $0 }.count + m1.filter { $0 }.count) / Double(2 * n)
        XCTAssertEqual(r.keptFraction["w"]!, keptFraction, accuracy: 1e-12)
        XCTAssertEqual(keptFraction, 0.25, accuracy: 0.02)
        let plain = try Fusion.dare(base: base, models: models, density: 0.25, rescale: false, seed: 42)
        XCTAssertEqual(plain.model["w"]![m0.firstIndex(of: true)!] - (m1[m0.firstIndex(of: true)!] ? -1 : 0), 3)
    }

    func testDareIsReproducibleAndIndependentOfTensorOrder() throws {
        let tensors: [(String, [Int])] = [("x", [30]), ("y", [5, 4])]
        func model(_ k: Float, reversed: Bool) -> NamedTensors {
            let t = tensors.map { (name: $0.0, shape: $0.1, values: (0..<$0.1.reduce(1, *)).map { Float($0) * k + 0.5 }) }
            return NamedTensors(reversed ? t.reversed() : t)
        }
        let base = model(0, reversed: false)
        let a = try Fusion.dareTies(base: base, models: [model(1, reversed: false), model(-0.5, reversed: false)], density: 0.5, seed: 7)
        let b = try Fusion.dareTies(base: model(0, reversed: true), models: [model(1, reversed: true), model(-0.5, reversed: true)],
                                    density: 0.5, seed: 7)
        XCTAssertEqual(a.model.values, b.model.values)
        XCTAssertEqual(b.model.names, ["y", "x"])
        let again = try Fusion.dareTies(base: base, models: [model(1, reversed: false), model(-0.5, reversed: false)], density: 0.5, seed: 7)
        XCTAssertEqual(a, again)
        let other = try Fusion.dareTies(base: base, models: [model(1, reversed: false), model(-0.5, reversed: false)], density: 0.5, seed: 8)
        XCTAssertNotEqual(a.model.values, other.model.values)
    }
}
