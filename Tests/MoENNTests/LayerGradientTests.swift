import XCTest
import MoECore
@testable import MoENN

/// Finite-difference checks of every layer's backward pass, each on the loss `L = Σ w ⊙ y`
/// with random `w` (so `∂L/∂y = w`).
final class LayerGradientTests: XCTestCase {
    let check = GradientCheck()

    func testLinearBackward() {
        let (n, i, o) = (4, 5, 3)
        let layer = Linear("fc", in: i, out: o)
        layer.initialize(seed: 1)
        let x = randomTensor([n, i], seed: 2, purpose: "x")
        let w = randomTensor([n, o], seed: 3, purpose: "w")
        let y = Tensor(shape: [n, o])
        let loss = { () -> Double in layer.forward(x.data, rows: n, into: y.data); return weightedSum(y.data, w) }
        _ = loss()
        let dx = Tensor(shape: [n, i])
        layer.parameters.zeroGrad()
        layer.backward(x.data, w.data, rows: n, dx: dx.data)
        check.assertMatches("Linear dx", analytic: dx, numeric: check.numerical(x, loss: loss))
        check.assertMatches("Linear dW", analytic: layer.weight.grad, numeric: check.numerical(layer.weight.value, loss: loss))
        check.assertMatches("Linear db", analytic: layer.bias.grad, numeric: check.numerical(layer.bias.value, loss: loss))
    }

    func testLinearBackwardAccumulatesIntoDx() {
        let layer = Linear("fc", in: 3, out: 2)
        layer.initialize(seed: 1)
        let x = randomTensor([2, 3], seed: 2, purpose: "x")
        let dy = randomTensor([2, 2], seed: 3, purpose: "dy")
        let fresh = Tensor(shape: [2, 3])
        layer.backward(x.data, dy.data, rows: 2, dx: fresh.data)
        let acc = Tensor(shape: [2, 3]); acc.fill(1)
        layer.backward(x.data, dy.data, rows: 2, dx: acc.data, accumulate: true)
        for k in 0..<6 { XCTAssertEqual(acc[k], fresh[k] + 1, accuracy: 1e-6) }
    }

    func testLayerNormBackward() {
        let (n, d) = (3, 7)
        let norm = LayerNorm("norm", dim: d)
        var rng = RNG(seed: 4, purpose: "gamma")
        rng.fillNormal(norm.weight.value, mean: 1, std: 0.5)
        rng.fillNormal(norm.bias.value, std: 0.5)
        let x = randomTensor([n, d], seed: 5, purpose: "x", scale: 2)
        let w = randomTensor([n, d], seed: 6, purpose: "w")
        let y = Tensor(shape: [n, d]), mean = Tensor(shape: [n]), rstd = Tensor(shape: [n])
        let loss = { () -> Double in
            norm.forward(x.data, rows: n, into: y.data, mean: mean.data, rstd: rstd.data)
            return weightedSum(y.data, w)
        }
        _ = loss()
        let dx = Tensor(shape: [n, d])
        norm.parameters.zeroGrad()
        norm.backward(x.data, w.data, rows: n, mean: mean.data, rstd: rstd.data, dx: dx.data)
        check.assertMatches("LayerNorm dx", analytic: dx, numeric: check.numerical(x, loss: loss))
        check.assertMatches("LayerNorm dγ", analytic: norm.weight.grad, numeric: check.numerical(norm.weight.value, loss: loss))
        check.assertMatches("LayerNorm dβ", analytic: norm.bias.grad, numeric: check.numerical(norm.bias.value, loss: loss))
    }

    func testLayerNormForwardMatchesDefinition() {
        let norm = LayerNorm("norm", dim: 4)
        let x = Tensor(shape: [1, 4], values: [1, 2, 3, 6])
        let y = Tensor(shape: [1, 4]), m = Tensor(shape: [1]), r = Tensor(shape: [1])
        norm.forward(x.data, rows: 1, into: y.data, mean: m.data, rstd: r.data)
        // mean 3, biased variance (4 + 1 + 0 + 9)/4 = 3.5
        let s = (3.5 + 1e-5).squareRoot()
        XCTAssertEqual(m[0], 3)
        for (k, v) in [1.0, 2, 3, 6].enumerated() { XCTAssertEqual(Double(y[k]), (v - 3) / s, accuracy: 1e-5) }
    }

    func testActivationBackward() {
        for act in Activation.allCases {
            // ReLU's kink at 0 breaks finite differences: keep every input at least 0.1 away.
            let x = randomTensor([3, 8], seed: 7, purpose: "x", scale: 2)
            for k in 0..<x.count where abs(x[k]) < 0.1 { x[k] = x[k] < 0 ? -0.5 : 0.5 }
            let w = randomTensor([3, 8], seed: 8, purpose: "w")
            let y = Tensor(shape: [3, 8])
            let loss = { () -> Double in act.forward(x.data, y.data, count: 24); return weightedSum(y.data, w) }
            let dx = Tensor(shape: [3, 8])
            act.backward(x.data, w.data, dx.data, count: 24)
            check.assertMatches("\(act) dx", analytic: dx, numeric: check.numerical(x, loss: loss))
        }
    }

    func testActivationValuesMatchPyTorch() {
        // torch.nn.functional.{gelu,relu,silu}(torch.tensor([-2., -0.5, 0., 1., 3.]))
        let x = Tensor(shape: [5], values: [-2, -0.5, 0, 1, 3])
        let expected: [Activation: [Float]] = [
            .gelu: [-0.04550028, -0.15426877, 0, 0.84134475, 2.99595031],
            .relu: [0, 0, 0, 1, 3],
            .silu: [-0.23840584, -0.18877034, 0, 0.73105858, 2.85772238],
        ]
        for act in Activation.allCases {
            let y = Tensor(shape: [5])
            act.forward(x.data, y.data, count: 5)
            for k in 0..<5 { XCTAssertEqual(y[k], expected[act]![k], accuracy: 1e-6, "\(act)[\(k)]") }
        }
    }

    func testDropoutBackwardAndScaling() {
        let n = 64
        let x = randomTensor([n], seed: 9, purpose: "x")
        let w = randomTensor([n], seed: 10, purpose: "w")
        let mask = Tensor(shape: [n])
        let loss = { () -> Double in
            let y = x.copy()
            var rng = RNG(seed: 11, purpose: "dropout", stream: 3)  // same mask on every call
            Dropout.forward(y.data, mask: mask.data, count: n, p: 0.25, rng: &rng)
            return weightedSum(y.data, w)
        }
        _ = loss()
        let dx = w.copy()
        Dropout.backward(dx.data, mask: mask.data, count: n)
        check.assertMatches("Dropout dx", analytic: dx, numeric: check.numerical(x, loss: loss))

        let big = Tensor(shape: [20000]); big.fill(1)
        let bigMask = Tensor(shape: [20000])
        var rng = RNG(seed: 12, purpose: "dropout")
        Dropout.forward(big.data, mask: bigMask.data, count: 20000, p: 0.25, rng: &rng)
        let kept = bigMask.array.filter { $0 != 0 }
        XCTAssertTrue(kept.allSatisfy { abs($0 - 1 / 0.75) < 1e-6 }, "kept units are scaled by 1/(1-p)")
        XCTAssertEqual(Double(kept.count) / 20000, 0.75, accuracy: 0.01)
        XCTAssertEqual(Double(big.sum()) / 20000, 1, accuracy: 0.02, "inverted dropout keeps the mean")
    }

    func testCrossEntropyBackwardAndValue() {
        let (n, c) = (5, 4)
        let z = randomTensor([n, c], seed: 12, purpose: "z", scale: 3)
        let labels = [0, 3, 1, 2, 3]
        let probs = Tensor(shape: [n, c])
        let loss = { () -> Double in
            labels.withUnsafeBufferPointer { CrossEntropy.forward(z.data, labels: $0.baseAddress!, rows: n, classes: c, probs: probs.data).loss }
        }
        let value = loss()
        // Reference: −mean log softmax, computed directly in Float64.
        var ref = 0.0
        for r in 0..<n {
            let row = (0..<c).map { Double(z[r, $0]) }
            let lse = log(row.map { exp($0) }.reduce(0, +))
            ref += lse - row[labels[r]]
        }
        XCTAssertEqual(value, ref / Double(n), accuracy: 1e-6)
        let d = Tensor(shape: [n, c])
        labels.withUnsafeBufferPointer { CrossEntropy.backward(probs: probs.data, labels: $0.baseAddress!, rows: n, classes: c, dlogits: d.data) }
        check.assertMatches("CrossEntropy dz", analytic: d, numeric: check.numerical(z, loss: loss))
    }

    func testCrossEntropyIsStableForHugeLogits() {
        let z = Tensor(shape: [1, 3], values: [1000, -1000, 999])
        let p = Tensor(shape: [1, 3])
        let r = [0].withUnsafeBufferPointer { CrossEntropy.forward(z.data, labels: $0.baseAddress!, rows: 1, classes: 3, probs: p.data) }
        XCTAssertTrue(r.loss.isFinite)
        XCTAssertEqual(r.loss, log(1 + exp(-1.0)), accuracy: 1e-5)
        XCTAssertEqual(r.correct, 1)
    }

    func testCheckerCatchesWrongGradients() {
        // The checker itself must reject a gradient off by a few percent, a sign, or a missing term.
        let numeric = [0.5, -1.2, 3.0, 0.01]
        XCTAssertTrue(check.mismatches(analytic: numeric, numeric: numeric).isEmpty)
        XCTAssertFalse(check.mismatches(analytic: numeric.map { $0 * 1.05 }, numeric: numeric).isEmpty)
        XCTAssertFalse(check.mismatches(analytic: numeric.map { -$0 }, numeric: numeric).isEmpty)
        XCTAssertFalse(check.mismatches(analytic: [0.5, -1.2, 3.0, 0.2], numeric: numeric).isEmpty)
    }
}
