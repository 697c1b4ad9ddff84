import XCTest
import MoECore
import MoEData
@testable import MoENN

final class MoeficationTests: XCTestCase {
    private let dense = ModelConfig(features: 6, classes: 3, hidden: 8, ffn: 16, blocks: 3)

    private func moe(k: Int, experts: Int = 4) -> ModelConfig {
        var c = dense
        c.moe = MoEConfig(experts: experts, blocks: [0, 2], router: .topk, k: k, expertFFN: dense.ffn / experts)
        return c
    }

    func testEveryMethodPartitionsIntoEqualGroupsCoveringEveryUnitOnce() {
        let w1 = randomTensor([24, 5], seed: 1, purpose: "w1")
        for method in Moefication.Method.allCases {
            let groups = Moefication.partition(units: 24, groups: 4, method: method, w1: w1, seed: 3)
            XCTAssertEqual(groups.count, 4, "\(method)")
            XCTAssertEqual(groups.map(\.count), [6, 6, 6, 6], "\(method)")
            XCTAssertEqual(groups.flatMap { $0 }.sorted(), Array(0..<24), "\(method)")
            for g in groups { XCTAssertEqual(g, g.sorted(), "\(method)") }
            // Deterministic: the same inputs and seed give the same partition.
            XCTAssertEqual(Moefication.partition(units: 24, groups: 4, method: method, w1: w1, seed: 3), groups, "\(method)")
        }
        XCTAssertEqual(Moefication.partition(units: 6, groups: 3, method: .contiguous, seed: 0), [[0, 1], [2, 3], [4, 5]])
        XCTAssertNotEqual(Moefication.partition(units: 24, groups: 4, method: .random, seed: 3),
                          Moefication.partition(units: 24, groups: 4, method: .random, seed: 4))
    }

    /// Balanced k-means lowers the k-means objective well below random and contiguous groups, and
    /// recovers planted clusters of input-weight directions exactly.
    func testClusterGroupsAreMoreCoherentThanRandomOnes() {
        let w1 = randomTensor([64, 8], seed: 2, purpose: "w1")
        let v = Moefication.normalizedRows(w1)
        let cluster = Moefication.objective(v, points: 64, groups: Moefication.partition(units: 64, groups: 4, method: .cluster, w1: w1, seed: 0))
        for seed in 0..<5 as Range<UInt64> {
            let random = Moefication.objective(v, points: 64, groups: Moefication.partition(units: 64, groups: 4, method: .random, seed: seed))
            XCTAssertLessThan(cluster, 0.9 * random, "seed \(seed)")
        }
        // Planted: 4 directions, 8 units each, shuffled, with small noise.
        var rng = RNG(seed: 7, purpose: "planted")
        let centers = (0..<4).map { _ in (0..<8).map { _ in rng.normal() } }
        let owner = rng.permutation(32).map { $0 % 4 }
        let planted = Tensor(shape: [32, 8])
        for i in 0..<32 { for j in 0..<8 { planted[i, j] = centers[owner[i]][j] * Float(1 + i % 3) + 0.05 * rng.normal() } }
        let groups = Moefication.partition(units: 32, groups: 4, method: .cluster, w1: planted, seed: 1)
        for g in groups { XCTAssertEqual(Set(g.map { owner[$0] }).count, 1, "group \(g) mixes planted clusters") }
    }

    /// With k = E and a zero router every expert is selected with gate 1/E; with w2 scaled by k
    /// the moefied model computes the dense function exactly (to float rounding).
    func testZeroRouterWithAllExpertsReproducesTheDenseLogits() throws {
        let d = ResidualMLP(config: dense, seed: 1)
        for method in Moefication.Method.allCases {
            let m = ResidualMLP(config: moe(k: 4), seed: 2)
            let report = try Moefication.moefy(from: Upcycling.parameters(of: d), into: m, method: method, seed: 5)
            for p in m.parameters where p.name.hasSuffix("router/weight") { p.value.zero() }
            let x = randomTensor([10, 6], seed: 3, purpose: "x")
            let ctx = ForwardContext(training: false, step: 0, seed: 0)
            d.forwardLogits(x.data, rows: 10, context: ctx)
            let reference = Array(UnsafeBufferPointer(start: d.logits, count: 30))
            m.forwardLogits(x.data, rows: 10, context: ctx)
            for i in 0..<30 { XCTAssertEqual(m.logits[i], reference[i], accuracy: 1e-5, "\(method)") }
            // Expert e holds the rows of its group; w2 scaled by k = 4; b2 the dense bias.
            let groups = report.groups[2]!
            let ew1 = m.parameters["blocks/2/moe/experts/w1"]!.value, dw1 = d.parameters["blocks/2/ffn/w1"]!.value
            let ew2 = m.parameters["blocks/2/moe/experts/w2"]!.value, dw2 = d.parameters["blocks/2/ffn/w2"]!.value
            XCTAssertEqual(ew1.shape, [4, 4, 8])
            XCTAssertEqual(ew2.shape, [4, 8, 4])
            for (e, units) in groups.enumerated() {
                for (j, u) in units.enumerated() {
                    for c in 0..<8 { XCTAssertEqual(ew1[(e * 4 + j) * 8 + c], dw1[u, c]) }
                    for r in 0..<8 { XCTAssertEqual(ew2[(e * 8 + r) * 4 + j], 4 * dw2[r, u]) }
                }
            }
            XCTAssertTrue(m.parameters["blocks/1/ffn/w1"]!.value.bitwiseEqual(d.parameters["blocks/1/ffn/w1"]!.value))
        }
    }

    /// The fitted router's rows are the groups' mean `w1` rows (here with a common scale of 1).
    func testFittedRouterRowsAreTheGroupMeans() throws {
        let d = ResidualMLP(config: dense, seed: 1)
        let m = ResidualMLP(config: moe(k: 2, experts: 2), seed: 2)
        let dw1 = d.parameters["blocks/0/ffn/w1"]!.value
        let groups = Moefication.partition(units: 16, groups: 2, method: .cluster, w1: dw1, seed: RNG.mix(5))
        let means = groups.map { units in (0..<8).map { c in units.reduce(Float(0)) { $0 + dw1[$1, c] } / Float(units.count) } }
        let largest = means.map { $0.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot() }.max()!
        let report = try Moefication.moefy(from: Upcycling.parameters(of: d), into: m, method: .cluster, seed: 5, routerNorm: largest)
        XCTAssertEqual(report.groups[0], groups)
        let router = m.parameters["blocks/0/moe/router/weight"]!.value
        for e in 0..<2 { for c in 0..<8 { XCTAssertEqual(router[e * 8 + c], means[e][c], accuracy: 1e-6) } }
        // The default scale: the largest row has norm 0.1, the ranking of the logits is the same.
        let n = ResidualMLP(config: moe(k: 2, experts: 2), seed: 2)
        try Moefication.moefy(from: Upcycling.parameters(of: d), into: n, method: .cluster, seed: 5)
        let scaled = n.parameters["blocks/0/moe/router/weight"]!.value
        for i in 0..<16 { XCTAssertEqual(scaled[i], router[i] * 0.1 / largest, accuracy: 1e-6) }
    }

    /// On real inputs (the normalised inputs of block 0 of a dense model trained on synthetic
    /// domains), the fitted router's top expert is the group with the largest activation mass
    /// `Σ_{i ∈ U_e} act(W1[i]·x + b1[i])` far more often than chance (1/E).
    func testFittedRouterRanksTheMostActiveGroupFirstMoreOftenThanChance() throws {
        let data = try SyntheticDomains(samples: 1200, seed: 5).generate()
        let config = ModelConfig(features: 16, classes: 4, hidden: 32, ffn: 128, blocks: 1)
        let d = ResidualMLP(config: config, seed: 3)
        let batches = try MiniBatches(data, batchSize: 64, seed: 3)
        let trainer = Trainer(model: d, config: OptimizerConfig(lr: 3e-3), totalSteps: 2 * batches.batchesPerEpoch, seed: 3)
        for epoch in 0..<2 {
            batches.start(epoch: epoch)
            while batches.next() { trainer.trainStep(batches.x.data, labels: batches.labelPointer, rows: batches.rows) }
        }
        let e = 8, n = data.count, h = 32, f = 128
        var mc = config
        mc.moe = MoEConfig(experts: e, blocks: [0], router: .topk, k: 2, expertFFN: f / e)
        let m = ResidualMLP(config: mc, seed: 4)
        let report = try Moefication.moefy(from: Upcycling.parameters(of: d), into: m, method: .cluster, seed: 0)
        // The FFN inputs of block 0: LN(embed(x)).
        let embedded = Tensor(shape: [n, h]), z = Tensor(shape: [n, h])
        let mean = Tensor(shape: [n]), rstd = Tensor(shape: [n])
        d.embed.forward(data.x.data, rows: n, into: embedded.data)
        d.blocks[0].norm.forward(embedded.data, rows: n, into: z.data, mean: mean.data, rstd: rstd.data)
        let w1 = d.parameters["blocks/0/ffn/w1"]!.value, b1 = d.parameters["blocks/0/ffn/b1"]!.value
        let router = m.parameters["blocks/0/moe/router/weight"]!.value
        let groups = report.groups[0]!
        var hits = 0
        var pre = [Float](repeating: 0, count: f), act = [Float](repeating: 0, count: f)
        for t in 0..<n {
            for u in 0..<f { pre[u] = Kernels.dot(h, w1.row(u), z.row(t)) + b1[u] }
            config.activation.forward(pre, &act, count: f)
            let mass = groups.map { $0.reduce(Float(0)) { $0 + act[$1] } }
            let logits = (0..<e).map { Kernels.dot(h, router.data + $0 * h, z.row(t)) }
            if logits.indices.max(by: { logits[$0] < logits[$1] }) == mass.indices.max(by: { mass[$0] < mass[$1] }) { hits += 1 }
        }
        let rate = Double(hits) / Double(n)
        XCTAssertGreaterThan(rate, 4.0 / Double(e), "top-1 agreement \(rate), chance \(1.0 / Double(e))")
    }
}
