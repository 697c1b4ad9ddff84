import XCTest
import MoECore
@testable import MoENN

final class UpcyclingTests: XCTestCase {
    private let dense = ModelConfig(features: 6, classes: 3, hidden: 8, ffn: 16, blocks: 3)

    private func moe(router: RouterKind = .topk, k: Int = 2) -> ModelConfig {
        var c = dense
        c.moe = MoEConfig(experts: 4, blocks: [0, 2], router: router, k: k)
        return c
    }

    /// With k = 2 renormalised gates the upcycled model computes the dense function exactly (to
    /// float rounding), whatever the fresh router says.
    func testUpcycledModelReproducesTheDenseLogits() throws {
        let (d, m) = try Self.upcycled(dense: dense, into: moe())
        // Every expert is the dense FFN; the block that stays dense is copied as is.
        let w1 = m.parameters["blocks/2/moe/experts/w1"]!.value, dw1 = d.parameters["blocks/2/ffn/w1"]!.value
        for e in 0..<4 { for j in 0..<dw1.count { XCTAssertEqual(w1[e * dw1.count + j], dw1[j]) } }
        XCTAssertTrue(m.parameters["blocks/1/ffn/w2"]!.value.bitwiseEqual(d.parameters["blocks/1/ffn/w2"]!.value))
    }

    /// A dense model (features 6, seed 1) upcycled into a fresh MoE model of `config` (seed 2);
    /// asserts that both give the same logits on 10 seeded rows.
    static func upcycled(dense: ModelConfig, into config: ModelConfig, file: StaticString = #filePath,
                         line: UInt = #line) throws -> (dense: ResidualMLP, moe: ResidualMLP) {
        let d = ResidualMLP(config: dense, seed: 1)
        let m = ResidualMLP(config: config, seed: 2)
        try Upcycling.upcycle(from: Upcycling.parameters(of: d), into: m)
        let x = randomTensor([10, 6], seed: 3, purpose: "x")
        let ctx = ForwardContext(training: false, step: 0, seed: 0)
        d.forwardLogits(x.data, rows: 10, context: ctx)
        m.forwardLogits(x.data, rows: 10, context: ctx)
        for i in 0..<(10 * dense.classes) { XCTAssertEqual(m.logits[i], d.logits[i], accuracy: 1e-5, file: file, line: line) }
        return (d, m)
    }

    func testShapeMismatchNamesTheTensor() {
        var wider = dense
        wider.ffn = 32
        let d = ResidualMLP(config: wider, seed: 1)
        let m = ResidualMLP(config: moe(), seed: 2)
        XCTAssertThrowsError(try Upcycling.upcycle(from: Upcycling.parameters(of: d), into: m)) { error in
            XCTAssertEqual("\(error)", "blocks/0/ffn/w1: shape [32, 8] does not match one expert of blocks/0/moe/experts/w1 [16, 8]")
        }
    }
}
