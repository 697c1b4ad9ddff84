import XCTest
import MoECore
@testable import MoENN

/// Sparse upcycling and MoEfication of a transformer LM: the same names as in the `mlp`
/// (`blocks/<i>/ffn` → `blocks/<i>/moe/experts`), so the same functions apply.
final class TransformerUpcyclingTests: XCTestCase {
    private let dense = TransformerConfig(vocab: 11, context: 6, hidden: 8, heads: 2, blocks: 2, ffn: 12)

    private func loss(_ model: TransformerLM, _ tokens: [Int32]) -> ObjectiveSums {
        tokens.withUnsafeBufferPointer {
            model.evaluationSums(TokenWindows(tokens: $0.baseAddress!, batch: 3, length: 7), batchSize: 3)
        }
    }

    /// Identical experts with gates that sum to 1 (top-2, renormalised, dropless) compute the
    /// dense function: the upcycled LM starts at the dense LM's loss.
    func testUpcycledTransformerStartsAtTheDenseLoss() throws {
        let d = TransformerLM(config: dense, seed: 1)
        TinyTransformer.randomize(d.parameters, seed: 2)
        var config = dense
        config.moe = MoEConfig(experts: 4, blocks: [0, 1], router: .topk, k: 2)
        let m = TransformerLM(config: config, seed: 3)
        try Upcycling.upcycle(from: Upcycling.parameters(of: d), into: m)
        for p in d.parameters where !p.name.contains("/ffn/") {
            XCTAssertTrue(p.value.bitwiseEqual(m.parameters[p.name]!.value), p.name)
        }
        let tokens = TinyTransformer.tokens(batch: 3, length: 7, vocab: 11, seed: 4)
        let a = loss(d, tokens), b = loss(m, tokens)
        XCTAssertEqual(a.lossSum, b.lossSum, accuracy: 1e-5 * a.lossSum)
        XCTAssertEqual(a.correct, b.correct)
    }

    /// MoEfication splits each dense FFN's hidden units into the experts (every unit exactly
    /// once) and copies the rest of the transformer (attention, norms, embeddings) unchanged.
    func testMoefiedTransformerPartitionsTheFFNUnits() throws {
        let d = TransformerLM(config: dense, seed: 1)
        TinyTransformer.randomize(d.parameters, seed: 2)
        var config = dense
        config.moe = MoEConfig(experts: 3, blocks: [1], router: .topk, k: 1, expertFFN: 4)
        let m = TransformerLM(config: config, seed: 3)
        let report = try Moefication.moefy(from: Upcycling.parameters(of: d), into: m, method: .cluster, seed: 5)
        XCTAssertEqual(report.groups[1]?.flatMap { $0 }.sorted(), Array(0..<12))
        for p in d.parameters where !p.name.hasPrefix("blocks/1/ffn/") {
            XCTAssertTrue(p.value.bitwiseEqual(m.parameters[p.name]!.value), p.name)
        }
        let w1 = d.parameters["blocks/1/ffn/w1"]!.value, ew1 = m.parameters["blocks/1/moe/experts/w1"]!.value
        var rows = Set<[Float]>()
        for r in 0..<12 { rows.insert(Array(UnsafeBufferPointer(start: ew1.data + r * 8, count: 8))) }
        for r in 0..<12 { XCTAssertTrue(rows.contains(Array(UnsafeBufferPointer(start: w1.data + r * 8, count: 8))), "unit \(r)") }
    }

    /// With k = E and a zero router every expert of the moefied LM is selected with gate 1/E and
    /// its w2 is scaled by k: the moefied LM computes the dense LM (to float rounding), for every
    /// partition method.
    func testMoefiedTransformerWithAllExpertsActiveIsTheDenseLM() throws {
        let d = TransformerLM(config: dense, seed: 1)
        TinyTransformer.randomize(d.parameters, seed: 2)
        let tokens = TinyTransformer.tokens(batch: 3, length: 7, vocab: 11, seed: 4)
        let reference = loss(d, tokens)
        for method in Moefication.Method.allCases {
            var config = dense
            config.moe = MoEConfig(experts: 3, blocks: [0, 1], router: .topk, k: 3, capacityFactor: nil, expertFFN: 4)
            let m = TransformerLM(config: config, seed: 3)
            _ = try Moefication.moefy(from: Upcycling.parameters(of: d), into: m, method: method, seed: 5)
            for p in m.parameters where p.name.hasSuffix("router/weight") { p.value.zero() }
            let moefied = loss(m, tokens)
            XCTAssertEqual(moefied.lossSum, reference.lossSum, accuracy: 1e-5 * reference.lossSum, "\(method)")
            XCTAssertEqual(moefied.correct, reference.correct, "\(method)")
        }
        // The fitted router keeps only 1 of 3 groups per token: no longer the dense function.
        var config = dense
        config.moe = MoEConfig(experts: 3, blocks: [0, 1], router: .topk, k: 1, expertFFN: 4)
        let sparse = TransformerLM(config: config, seed: 3)
        _ = try Moefication.moefy(from: Upcycling.parameters(of: d), into: sparse, method: .cluster, seed: 5)
        XCTAssertNotEqual(loss(sparse, tokens).lossSum, reference.lossSum, accuracy: 1e-5 * reference.lossSum)
    }
}
