import MoEComm
import MoECore
import XCTest
@testable import MoENN
@testable import MoEParallel

/// Loss-free balancing in a data-parallel or expert-parallel group: the expert bias moves by the
/// load of the whole global batch (the routers' all-reduced selection counts), so every rank
/// holds the bias that one process holding the whole batch computes, bit for bit.
final class ExpertBiasParallelTests: XCTestCase {
    private let n = 48
    private let features = 6

    private var config: ModelConfig {
        ModelConfig(features: features, classes: 4, hidden: 16, ffn: 12, blocks: 2,
                    moe: MoEConfig(experts: 4, blocks: [0, 1], router: .topk, k: 2, capacityFactor: nil,
                                   score: .sigmoid, balance: .bias, biasRate: 0.01))
    }
    private let opt = OptimizerConfig(lr: 0.01, gradClip: 0.5)

    private var batch: (x: [Float], labels: [Int]) {
        var rng = RNG(seed: 11, purpose: "expert-bias-parallel-test")
        let x = Tensor(shape: [n, features])
        rng.fillNormal(x)
        return (x.array, (0..<n).map { ($0 * 5 + $0 / 7) % 4 })
    }

    private func biasBits(_ model: ResidualMLP) -> [[UInt32]] { model.buffers.map { $0.value.array.map(\.bitPattern) } }

    private func oneProcess(steps: Int) -> [[[UInt32]]] {
        let trainer = Trainer(model: ResidualMLP(config: config, seed: 9), config: opt, totalSteps: 10, seed: 3)
        let (x, labels) = batch
        var out: [[[UInt32]]] = []
        labels.withUnsafeBufferPointer { y in
            for _ in 0..<steps {
                trainer.trainStep(x, labels: y.baseAddress!, rows: n)
                out.append(biasBits(trainer.model))
            }
        }
        return out
    }

    /// Every rank's biases after each step; `attach: false` leaves the routers' statistics local
    /// (each rank would balance its own rows: the contrast that shows the test can fail).
    private func group(world: Int, steps: Int, shardExperts: Bool = false, attach: Bool = true) throws -> [[[[UInt32]]]] {
        let (x, labels) = batch
        let n = self.n, config = self.config, opt = self.opt
        return try ThreadGroup.run(world: world) { comm in
            let trainer = Trainer(model: ResidualMLP(config: config, seed: 9), config: opt, totalSteps: 10, seed: 3)
            let group = try DataParallelGroup(communicator: comm, parameters: trainer.model.parameters)
            if attach { group.attach(to: trainer.model, shardExperts: shardExperts) }
            var out: [[[UInt32]]] = []
            try labels.withUnsafeBufferPointer { y in
                for _ in 0..<steps {
                    _ = try trainer.trainStep(x, labels: y.baseAddress!, rows: n, group: group)
                    out.append(trainer.model.buffers.map { $0.value.array.map(\.bitPattern) })
                }
            }
            return out
        }
    }

    func testDataParallelBiasIsTheOneProcessBiasBitForBit() throws {
        let single = oneProcess(steps: 3)
        XCTAssertTrue(single.last!.flatMap { $0 }.contains { $0 != 0 }, "the biases moved")
        for world in [2, 3] {
            for (r, ranks) in try group(world: world, steps: 3).enumerated() {
                XCTAssertEqual(ranks, single, "\(world) ranks, rank \(r): every step's biases")
            }
        }
        // Rank-local loads give other biases: the global all-reduce is what makes them equal.
        let local = try group(world: 3, steps: 1, attach: false)
        XCTAssertTrue(local.contains { $0[0] != single[0] }, "with each rank's own load, some rank's bias differs after one step")
    }

    func testExpertParallelBiasIsTheOneProcessBiasBitForBit() throws {
        let single = oneProcess(steps: 3)
        for (r, ranks) in try group(world: 2, steps: 3, shardExperts: true).enumerated() {
            XCTAssertEqual(ranks, single, "expert-parallel, rank \(r): every step's biases")
        }
    }
}
