import XCTest
import MoECore
@testable import MoENN

/// `MoELayer.dispatcher` is the one seam where expert parallelism plugs in: the layer's experts
/// run only through it, forward and backward, and the layer combines whatever it returns.
final class ExpertDispatchTests: XCTestCase {
    /// Runs the local experts and doubles their outputs (exact in floats), counting the calls.
    final class Doubling: ExpertDispatcher {
        let local = LocalExpertDispatcher()
        var forwards = 0, backwards = 0
        func forward(_ layer: MoELayer, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, training: Bool) {
            forwards += 1
            local.forward(layer, input: input, output: output, training: training)
            for i in 0..<(layer.router.routing.total * layer.hidden) { output[i] *= 2 }
        }
        func backward(_ layer: MoELayer, input: UnsafePointer<Float>, dOut: UnsafePointer<Float>, dIn: UnsafeMutablePointer<Float>) {
            backwards += 1
            local.backward(layer, input: input, dOut: dOut, dIn: dIn)
        }
    }

    func testTheLayerRunsItsExpertsThroughItsDispatcher() {
        let (n, h) = (10, 6)
        let config = MoEConfig(experts: 4, blocks: [0], router: .topk, k: 2, capacityFactor: nil)
        func layer() -> MoELayer {
            let l = MoELayer("blocks/0/moe", index: 0, hidden: h, ffn: 8, activation: .gelu, config: config, moeLayers: 1)
            l.initialize(seed: 4)
            return l
        }
        let x = randomTensor([n, h], seed: 2, purpose: "x")
        let ctx = ForwardContext(training: true, step: 0, seed: 1)
        let plain = layer(), swapped = layer()
        let doubling = Doubling()
        swapped.dispatcher = doubling
        let y = Tensor(shape: [n, h]), y2 = Tensor(shape: [n, h])
        plain.forward(x.data, rows: n, into: y.data, context: ctx)
        swapped.forward(x.data, rows: n, into: y2.data, context: ctx)
        XCTAssertEqual(doubling.forwards, 1)
        XCTAssertGreaterThan(y.array.map(abs).max() ?? 0, 0)
        XCTAssertEqual(y2.array.map(\.bitPattern), y.array.map { 2 * $0 }.map(\.bitPattern),
                       "the combine uses the dispatcher's rows")
        let dx = Tensor(shape: [n, h]), dx2 = Tensor(shape: [n, h])
        plain.backward(x.data, rows: n, dx: dx.data)
        swapped.backward(x.data, rows: n, dx: dx2.data)
        XCTAssertEqual(doubling.backwards, 1)
        XCTAssertNotEqual(swapped.w1.grad.array.map(\.bitPattern), Array(repeating: 0, count: swapped.w1.grad.count),
                          "the experts' gradients come from the dispatcher's backward")
    }
}
