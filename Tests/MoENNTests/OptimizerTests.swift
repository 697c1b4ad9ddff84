import XCTest
import MoECore
@testable import MoENN

/// Optimizers, clipping and schedules against their formulas evaluated independently in Float64
/// (the same update rules as torch.optim.AdamW / SGD, written out step by step).
final class OptimizerTests: XCTestCase {
    private func parameter(_ values: [Float], grads: [Float], decays: Bool = true) -> Parameter {
        let p = Parameter(name: "p", shape: [values.count], decays: decays)
        for (i, v) in values.enumerated() { p.value[i] = v; p.grad[i] = grads[i] }
        return p
    }

    func testAdamWMatchesReferenceOverSeveralSteps() {
        let theta0: [Double] = [0.5, -1.0, 2.0]
        let grads: [[Double]] = [[0.1, -0.2, 0.3], [0.05, 0.4, -0.1], [-0.3, 0.0, 0.2]]
        let (lr, b1, b2, eps, wd) = (0.01, 0.9, 0.999, 1e-8, 0.1)
        let p = parameter(theta0.map(Float.init), grads: [0, 0, 0])
        let opt = AdamW(parameters: [p], beta1: Float(b1), beta2: Float(b2), eps: Float(eps), weightDecay: Float(wd))
        var theta = theta0, m = [0.0, 0, 0], v = [0.0, 0, 0]
        for (t, g) in grads.enumerated() {
            for i in 0..<3 { p.grad[i] = Float(g[i]) }
            opt.step(lr: Float(lr))
            let step = Double(t + 1)
            for i in 0..<3 {
                theta[i] *= 1 - lr * wd
                m[i] = b1 * m[i] + (1 - b1) * g[i]
                v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
                let mhat = m[i] / (1 - pow(b1, step)), vhat = v[i] / (1 - pow(b2, step))
                theta[i] -= lr * mhat / (vhat.squareRoot() + eps)
            }
        }
        for i in 0..<3 { XCTAssertEqual(Double(p.value[i]), theta[i], accuracy: 1e-6) }
        XCTAssertEqual(opt.stepCount, 3)
        XCTAssertEqual(opt.state.map(\.name), ["exp_avg/p", "exp_avg_sq/p"])
    }

    func testAdamWDoesNotDecayBiasesOrNorms() {
        let p = parameter([1, 1], grads: [0, 0], decays: false)
        AdamW(parameters: [p], weightDecay: 0.5).step(lr: 0.1)
        XCTAssertEqual(p.value.array, [1, 1], "zero gradient and no decay: unchanged")
        let q = parameter([1, 1], grads: [0, 0], decays: true)
        AdamW(parameters: [q], weightDecay: 0.5).step(lr: 0.1)
        XCTAssertEqual(Double(q.value[0]), 0.95, accuracy: 1e-7, "decoupled decay θ(1 − lr·λ)")
    }

    func testSGDMomentumAndNesterov() {
        for nesterov in [false, true] {
            let p = parameter([1.0], grads: [0.5])
            let opt = SGD(parameters: [p], momentum: 0.9, weightDecay: 0.1, nesterov: nesterov)
            var theta = 1.0, buf = 0.0
            for (t, g) in [0.5, -0.25, 1.0].enumerated() {
                p.grad[0] = Float(g)
                opt.step(lr: 0.1)
                let gd = g + 0.1 * theta
                buf = t == 0 ? gd : 0.9 * buf + gd
                theta -= 0.1 * (nesterov ? gd + 0.9 * buf : buf)
            }
            XCTAssertEqual(Double(p.value[0]), theta, accuracy: 1e-6, "nesterov=\(nesterov)")
        }
    }

    func testGradientClippingScalesToMaxNorm() {
        let a = parameter([0, 0], grads: [3, 0]), b = parameter([0], grads: [4])
        let params = [a, b]
        XCTAssertEqual(params.gradientNorm(), 5, accuracy: 1e-9)
        let before = params.clipGradientNorm(1)
        XCTAssertEqual(before, 5, accuracy: 1e-9)
        XCTAssertEqual(params.gradientNorm(), 1, accuracy: 1e-5)
        XCTAssertEqual(Double(a.grad[0]), 0.6, accuracy: 1e-5)
        // Below the threshold nothing changes.
        let c = parameter([0], grads: [0.5])
        [c].clipGradientNorm(1)
        XCTAssertEqual(c.grad[0], 0.5)
    }

    func testLRSchedules() {
        let constant = LRSchedule(kind: .constant, base: 0.1, warmupSteps: 4, totalSteps: 100)
        XCTAssertEqual(constant.lr(at: 0), 0.025, accuracy: 1e-7)
        XCTAssertEqual(constant.lr(at: 3), 0.1, accuracy: 1e-7)
        XCTAssertEqual(constant.lr(at: 50), 0.1)
        let cosine = LRSchedule(kind: .cosine, base: 1, warmupSteps: 10, totalSteps: 110, minLR: 0.1)
        XCTAssertEqual(cosine.lr(at: 4), 0.5, accuracy: 1e-6)
        XCTAssertEqual(cosine.lr(at: 10), 1, accuracy: 1e-6)
        XCTAssertEqual(cosine.lr(at: 60), 0.55, accuracy: 1e-6, "half way: min + (base − min)/2")
        XCTAssertEqual(cosine.lr(at: 110), 0.1, accuracy: 1e-6)
        XCTAssertEqual(cosine.lr(at: 500), 0.1, accuracy: 1e-6, "clamped after the end")
    }

    func testTrainerSkipsUpdateOnNonFiniteLoss() {
        let model = ResidualMLP(config: ModelConfig(features: 2, classes: 2, hidden: 4, ffn: 4, blocks: 1), seed: 1)
        let trainer = Trainer(model: model, config: OptimizerConfig(), totalSteps: 10, seed: 1)
        let before = model.parameters.map { $0.value.copy() }
        let x = Tensor(shape: [1, 2], values: [.nan, 1])
        let r = [0].withUnsafeBufferPointer { trainer.trainStep(x.data, labels: $0.baseAddress!, rows: 1) }
        XCTAssertFalse(r.loss.isFinite)
        XCTAssertEqual(trainer.step, 0)
        for (p, b) in zip(model.parameters, before) { XCTAssertTrue(p.value.bitwiseEqual(b), p.name) }
    }

    /// After the first step of a batch size, another step must not allocate activation storage.
    func testActivationBuffersAreReusedAcrossSteps() {
        let model = ResidualMLP(config: ModelConfig(features: 3, classes: 2, hidden: 8, ffn: 16, blocks: 2), seed: 1)
        let trainer = Trainer(model: model, config: OptimizerConfig(), totalSteps: 10, seed: 1)
        let x = randomTensor([16, 3], seed: 1, purpose: "x")
        let labels = Array(repeating: 1, count: 16)
        _ = labels.withUnsafeBufferPointer { trainer.trainStep(x.data, labels: $0.baseAddress!, rows: 16) }
        let first = model.activationStorage
        labels.withUnsafeBufferPointer { lb in
            trainer.trainStep(x.data, labels: lb.baseAddress!, rows: 16)
            trainer.trainStep(x.data, labels: lb.baseAddress!, rows: 8)  // a smaller last batch reuses it too
        }
        XCTAssertEqual(model.activationStorage, first)
        XCTAssertGreaterThan(first.count, 10)
    }
}
