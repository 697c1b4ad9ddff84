import Foundation
import XCTest
import MoECore
@testable import MoENN

/// Causal self-attention (`CausalSelfAttention`): finite-difference gradients of the input and of
/// every parameter, causality of forward and backward, and equality with a naive Float64
/// reference written from the formula (per head softmax(q·kᵀ/√d + causal mask)·v).
final class AttentionTests: XCTestCase {
    /// A layer with large random weights and biases (N(0, 0.02²) would make every softmax row
    /// nearly uniform, and a wrong mask or scale would hardly show).
    func makeLayer(hidden: Int, heads: Int, seed: UInt64) -> CausalSelfAttention {
        let layer = CausalSelfAttention("blocks/0/attn", hidden: hidden, heads: heads, seed: seed,
                                        weightStd: 0.5, outStd: 0.5)
        var rng = RNG(seed: seed, purpose: "test/biases")
        rng.fillNormal(layer.qkv.bias.value, std: 0.5)
        rng.fillNormal(layer.out.bias.value, std: 0.5)
        return layer
    }

    func testGradientsMatchFiniteDifferences() {
        let (batch, T, h, heads) = (2, 5, 8, 2)
        let layer = makeLayer(hidden: h, heads: heads, seed: 11)
        let x = randomTensor([batch * T, h], seed: 12, purpose: "x")
        let w = randomTensor([batch * T, h], seed: 13, purpose: "w")
        let y = Tensor(shape: [batch * T, h])
        let loss = { () -> Double in
            layer.forward(x.data, batch: batch, tokens: T, into: y.data)
            return weightedSum(y.data, w)
        }
        _ = loss()
        let dx = Tensor(shape: [batch * T, h])
        dx.fill(.nan)  // backward must write every element, not accumulate
        layer.parameters.zeroGrad()
        layer.backward(w.data, dx: dx.data)
        let check = GradientCheck()
        check.assertMatches("attention dx", analytic: dx, numeric: check.numerical(x, loss: loss))
        for p in layer.parameters {
            check.assertMatches("attention d\(p.name)", analytic: p.grad, numeric: check.numerical(p.value, loss: loss))
        }
    }

    func testBackwardAccumulatesParameterGradients() {
        let (batch, T, h) = (1, 4, 8)
        let layer = makeLayer(hidden: h, heads: 2, seed: 21)
        let x = randomTensor([batch * T, h], seed: 22, purpose: "x")
        let dy = randomTensor([batch * T, h], seed: 23, purpose: "dy")
        let y = Tensor(shape: [batch * T, h]), dx = Tensor(shape: [batch * T, h])
        layer.forward(x.data, batch: batch, tokens: T, into: y.data)
        layer.parameters.zeroGrad()
        layer.backward(dy.data, dx: dx.data)
        let once = layer.parameters.map { $0.grad.copy() }
        layer.backward(dy.data, dx: dx.data)
        for (p, g) in zip(layer.parameters, once) {
            for i in 0..<g.count { XCTAssertEqual(p.grad[i], 2 * g[i], accuracy: 1e-5 * max(1, abs(g[i])), p.name) }
        }
    }

    /// Changing token t of one sequence changes no output before t, none of another sequence, and
    /// (not vacuous) every output from t on; a gradient at output t reaches no input after t.
    func testCausality() {
        let (batch, T, h, heads) = (2, 6, 8, 2)
        let layer = makeLayer(hidden: h, heads: heads, seed: 31)
        let x = randomTensor([batch * T, h], seed: 32, purpose: "x")
        let before = Tensor(shape: [batch * T, h]), after = Tensor(shape: [batch * T, h])
        layer.forward(x.data, batch: batch, tokens: T, into: before.data)
        let (seq, t) = (1, 3)
        for c in 0..<h { x[(seq * T + t) * h + c] += 1 }
        layer.forward(x.data, batch: batch, tokens: T, into: after.data)
        for row in 0..<batch * T {
            let changed = (0..<h).contains { before[row * h + $0] != after[row * h + $0] }
            let expected = row / T == seq && row % T >= t
            XCTAssertEqual(changed, expected, "sequence \(row / T) token \(row % T)")
        }

        let dy = Tensor(shape: [batch * T, h]), dx = Tensor(shape: [batch * T, h])
        for c in 0..<h { dy[(seq * T + t) * h + c] = 1 }
        layer.backward(dy.data, dx: dx.data)
        for row in 0..<batch * T {
            let reached = (0..<h).contains { dx[row * h + $0] != 0 }
            XCTAssertEqual(reached, row / T == seq && row % T <= t, "dx of sequence \(row / T) token \(row % T)")
        }
    }

    /// y from the definition, in Float64 loops: per (sequence, head, query t), scores over keys
    /// s ≤ t scaled by 1/√d, a max-subtracted softmax, the weighted sum of values; heads
    /// concatenated; then the output projection.
    func naive(_ layer: CausalSelfAttention, _ x: Tensor, batch: Int, tokens T: Int) -> [Double] {
        let h = layer.hidden, d = layer.headDim
        let wq = layer.qkv.weight.value, bq = layer.qkv.bias.value
        let wo = layer.out.weight.value, bo = layer.out.bias.value
        var qkv = [Double](repeating: 0, count: batch * T * 3 * h)
        for r in 0..<batch * T {
            for o in 0..<3 * h {
                var s = Double(bq[o])
                for i in 0..<h { s += Double(x[r * h + i]) * Double(wq[o * h + i]) }
                qkv[r * 3 * h + o] = s
            }
        }
        var a = [Double](repeating: 0, count: batch * T * h)
        for b in 0..<batch {
            for j in 0..<layer.heads {
                func at(_ t: Int, _ part: Int, _ c: Int) -> Double { qkv[(b * T + t) * 3 * h + part * h + j * d + c] }
                for t in 0..<T {
                    let scores = (0...t).map { s in (0..<d).reduce(0.0) { $0 + at(t, 0, $1) * at(s, 1, $1) } / Double(d).squareRoot() }
                    let m = scores.max()!
                    let e = scores.map { Foundation.exp($0 - m) }
                    let z = e.reduce(0, +)
                    for c in 0..<d {
                        a[(b * T + t) * h + j * d + c] = (0...t).reduce(0.0) { $0 + e[$1] / z * at($1, 2, c) }
                    }
                }
            }
        }
        var y = [Double](repeating: 0, count: batch * T * h)
        for r in 0..<batch * T {
            for o in 0..<h {
                var s = Double(bo[o])
                for i in 0..<h { s += a[r * h + i] * Double(wo[o * h + i]) }
                y[r * h + o] = s
            }
        }
        return y
    }

    func testForwardMatchesNaiveReference() {
        let layer = makeLayer(hidden: 12, heads: 3, seed: 41)
        // A larger batch first, then a smaller one and a shorter context: the buffers are reused.
        for (batch, T) in [(3, 7), (2, 5), (1, 1), (2, 9), (1, 20)] {
            let x = randomTensor([batch * T, 12], seed: 42 + UInt64(T), purpose: "x", scale: 2)
            let y = Tensor(shape: [batch * T, 12])
            layer.forward(x.data, batch: batch, tokens: T, into: y.data)
            let ref = naive(layer, x, batch: batch, tokens: T)
            let scale = ref.map(abs).max()!
            for i in 0..<ref.count {
                XCTAssertEqual(Double(y[i]), ref[i], accuracy: 1e-5 * max(1, scale), "batch \(batch) T \(T) element \(i)")
            }
        }
    }

    func testInitialisationAndNames() {
        let layer = CausalSelfAttention("blocks/2/attn", hidden: 64, heads: 4, seed: 7, outStd: 0.005)
        XCTAssertEqual(layer.parameters.map(\.name),
                       ["blocks/2/attn/qkv/weight", "blocks/2/attn/qkv/bias", "blocks/2/attn/out/weight", "blocks/2/attn/out/bias"])
        XCTAssertEqual(layer.parameters.map(\.shape), [[192, 64], [192], [64, 64], [64]])
        func std(_ t: Tensor) -> Double {
            let v = t.array.map(Double.init)
            let m = v.reduce(0, +) / Double(v.count)
            return (v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(v.count)).squareRoot()
        }
        XCTAssertEqual(std(layer.qkv.weight.value), 0.02, accuracy: 0.001)
        XCTAssertEqual(std(layer.out.weight.value), 0.005, accuracy: 0.0003)
        XCTAssertTrue(layer.qkv.bias.value.array.allSatisfy { $0 == 0 })
        XCTAssertTrue(layer.out.bias.value.array.allSatisfy { $0 == 0 })
        XCTAssertEqual(layer.parameters.map(\.decays), [true, false, true, false])
        // Same seed, same bits; another seed, other values.
        let again = CausalSelfAttention("blocks/2/attn", hidden: 64, heads: 4, seed: 7, outStd: 0.005)
        XCTAssertTrue(zip(layer.parameters, again.parameters).allSatisfy { $0.value.bitwiseEqual($1.value) })
        let other = CausalSelfAttention("blocks/2/attn", hidden: 64, heads: 4, seed: 8, outStd: 0.005)
        XCTAssertFalse(layer.qkv.weight.value.bitwiseEqual(other.qkv.weight.value))
    }

    func testRowMaxMatchesScalarMax() {
        var rng = RNG(seed: 51, purpose: "max")
        for n in 1...40 {
            for position in [0, n / 2, n - 1] {  // the largest value in every lane and in the tail
                var x = (0..<n).map { _ in rng.normal() - 10 }
                x[position] = 5
                XCTAssertEqual(CausalSoftmax.max(n, x), x.max()!, "n \(n), max at \(position)")
            }
        }
    }

    func testSoftmaxIsStableForLargeScores() {
        // exp(1000) overflows Float; the max-subtracted softmax does not.
        let s = Tensor(shape: [2, 2], values: [1000, 12345, 1000, 999])
        CausalSoftmax.forward(s.data, tokens: 2, ld: 2)
        XCTAssertEqual(s.array[0], 1)
        XCTAssertEqual(s.array[1], 0)
        XCTAssertEqual(Double(s[2]), 1 / (1 + Foundation.exp(-1)), accuracy: 1e-6)
        XCTAssertEqual(Double(s[3]), Foundation.exp(-1) / (1 + Foundation.exp(-1)), accuracy: 1e-6)
    }
}
