import MoEComm
import MoECore
import XCTest
@testable import MoENN
@testable import MoEParallel

/// The data-parallel, expert-parallel and pipeline steps on an in-process group (`ThreadGroup`:
/// one thread per rank, real barriers), with exact expectations where the maths is exact and
/// the end-to-end tolerances (ParallelEndToEndTests: loss 1e-6, weights 1e-5) where only the
/// order of float additions differs from one process.
final class ParallelStepTests: XCTestCase {
    private let n = 24
    private let features = 6
    private lazy var batch: (x: [Float], labels: [Int]) = {
        var rng = RNG(seed: 5, purpose: "parallel-step-test")
        let x = Tensor(shape: [n, features])
        rng.fillNormal(x)
        return (x.array, (0..<n).map { ($0 * 7 + $0 / 5) % 4 })
    }()

    private func dense(dropout: Float = 0.1) -> ModelConfig {
        ModelConfig(features: features, classes: 4, hidden: 16, ffn: 24, blocks: 3, dropout: dropout)
    }
    private func moe() -> ModelConfig {
        ModelConfig(features: features, classes: 4, hidden: 16, ffn: 12, blocks: 2,
                    moe: MoEConfig(experts: 4, blocks: [0, 1], router: .topk, k: 2, capacityFactor: nil))
    }

    /// Values of every parameter, in the model's order.
    private func values(_ ps: [Parameter]) -> [[Float]] { ps.map(\.value.array) }
    private func grads(_ ps: [Parameter]) -> [[Float]] { ps.map(\.grad.array) }
    private func bits(_ t: [[Float]]) -> [[UInt32]] { t.map { $0.map(\.bitPattern) } }
    private func maxDifference(_ a: [[Float]], _ b: [[Float]]) -> Float {
        zip(a, b).map { zip($0, $1).map { abs($0 - $1) }.max() ?? 0 }.max() ?? 0
    }

    private struct Outcome {
        var losses: [Double] = [], correct: [Int] = [], aux: [Double] = [], norms: [Double] = []
        var firstGradients: [[Float]] = []
        var weights: [[Float]] = []
        var names: [String] = []
    }

    /// `steps` steps of one process on the whole batch.
    private func oneProcess(_ config: ModelConfig, _ opt: OptimizerConfig, steps: Int) -> Outcome {
        let trainer = Trainer(model: ResidualMLP(config: config, seed: 9), config: opt, totalSteps: 10, seed: 3)
        var o = Outcome()
        batch.labels.withUnsafeBufferPointer { y in
            for s in 0..<steps {
                let r = trainer.trainStep(batch.x, labels: y.baseAddress!, rows: n)
                o.losses.append(r.loss); o.correct.append(r.correct); o.aux.append(r.auxLoss); o.norms.append(r.gradNorm)
                if s == 0 { o.firstGradients = grads(trainer.model.parameters) }
            }
        }
        o.weights = values(trainer.model.parameters)
        return o
    }

    /// `steps` data-parallel (or, with `shardExperts`, expert-parallel) steps on `world` threads.
    private func group(_ config: ModelConfig, _ opt: OptimizerConfig, world: Int, steps: Int, shardExperts: Bool = false) throws -> [Outcome] {
        let (x, labels) = batch
        let n = self.n
        return try ThreadGroup.run(world: world) { [self] comm in
            let trainer = Trainer(model: ResidualMLP(config: config, seed: 9), config: opt, totalSteps: 10, seed: 3)
            let group = try DataParallelGroup(communicator: comm, parameters: trainer.model.parameters)
            group.attach(to: trainer.model, shardExperts: shardExperts)
            var o = Outcome()
            try labels.withUnsafeBufferPointer { y in
                for s in 0..<steps {
                    let r = try trainer.trainStep(x, labels: y.baseAddress!, rows: n, group: group).step
                    o.losses.append(r.loss); o.correct.append(r.correct); o.aux.append(r.auxLoss); o.norms.append(r.gradNorm)
                    if s == 0 { o.firstGradients = grads(trainer.model.parameters) }
                }
            }
            try group.synchronizeExperts(trainer.optimizer)
            o.weights = values(trainer.model.parameters)
            o.names = trainer.model.parameters.map(\.name)
            return o
        }
    }

    private func assertMatches(_ ranks: [Outcome], _ single: Outcome, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        for (r, o) in ranks.enumerated() {
            // Every replica holds the same bits and reports the same whole-batch figures.
            XCTAssertEqual(bits(o.weights), bits(ranks[0].weights), "\(what): rank \(r)'s replica", file: file, line: line)
            XCTAssertEqual(o.losses.map(\.bitPattern), ranks[0].losses.map(\.bitPattern), "\(what): rank \(r)", file: file, line: line)
        }
        let o = ranks[0]
        XCTAssertEqual(o.correct, single.correct, what, file: file, line: line)
        for (a, b) in zip(o.losses, single.losses) { XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b)), "\(what): loss", file: file, line: line) }
        for (a, b) in zip(o.aux, single.aux) { XCTAssertEqual(a, b, accuracy: 1e-6, "\(what): aux loss of the global batch", file: file, line: line) }
        for (a, b) in zip(o.norms, single.norms) { XCTAssertEqual(a, b, accuracy: 1e-5 * b, "\(what): gradient norm", file: file, line: line) }
        let scale = single.firstGradients.flatMap { $0 }.map(abs).max() ?? 1
        XCTAssertLessThan(maxDifference(o.firstGradients, single.firstGradients), 1e-5 * scale,
                          "\(what): the group's gradient is the gradient of the whole batch", file: file, line: line)
        XCTAssertLessThan(maxDifference(o.weights, single.weights), 1e-5, "\(what): weights", file: file, line: line)
    }

    func testDataParallelStepIsTheWholeBatchStep() throws {
        let opt = OptimizerConfig(lr: 0.01, gradClip: 0.5)
        for (config, name) in [(dense(), "dense with dropout"), (moe(), "MoE top-2")] {
            let single = oneProcess(config, opt, steps: 3)
            for world in [2, 3] {
                assertMatches(try group(config, opt, world: world, steps: 3), single, "\(name), \(world) ranks")
            }
        }
    }

    /// Exact: the all-reduced gradient is, bit for bit, the rank-order sum of the ranks' own
    /// gradients (each rank's rows, its loss scaled by n_r / n, its dropout draws offset by its
    /// first row), computed here one rank after another in one thread.
    func testDataParallelGradientIsTheRankOrderSumOfTheRanksGradients() throws {
        let config = dense(), world = 3
        let opt = OptimizerConfig(lr: 0.01, gradClip: nil)
        let reduced = try group(config, opt, world: world, steps: 1)[0].firstGradients
        let model = ResidualMLP(config: config, seed: 9)
        var sum: [[Float]] = []
        batch.labels.withUnsafeBufferPointer { y in
            for r in 0..<world {
                let rows = (r * n / world)..<((r + 1) * n / world)
                model.parameters.zeroGrad()
                var context = ForwardContext(training: true, step: 0, seed: 3)
                context.rowOffset = rows.lowerBound
                _ = batch.x.withUnsafeBufferPointer { x in
                    model.forward(x.baseAddress! + rows.lowerBound * features, labels: y.baseAddress! + rows.lowerBound, rows: rows.count, context: context)
                }
                model.backward(lossScale: Float(Double(rows.count) / Double(n)))
                let g = grads(model.parameters)
                sum = r == 0 ? g : zip(sum, g).map { zip($0, $1).map { $0 + $1 } }
            }
        }
        XCTAssertEqual(bits(reduced), bits(sum))
    }

    /// Expert parallelism (each rank runs its experts for every rank's tokens) learns what one
    /// process learns; after `synchronizeExperts` every rank holds the same bits.
    func testExpertParallelStepIsTheWholeBatchStep() throws {
        let opt = OptimizerConfig(lr: 0.01, gradClip: 0.5)
        let single = oneProcess(moe(), opt, steps: 3)
        for world in [2, 4] {
            var ranks = try group(moe(), opt, world: world, steps: 3, shardExperts: true)
            // An expert's gradient lives with its owner only: exactly zero in every other rank's
            // slice. The whole gradient is then the sum of the ranks' expert tensors.
            let ranges = EvenSplit.ranges(4, parts: world)
            for (i, name) in ranks[0].names.enumerated() where name.contains("/moe/experts/") {
                let slice = ranks[0].firstGradients[i].count / 4
                var whole = [Float](repeating: 0, count: ranks[0].firstGradients[i].count)
                for (r, o) in ranks.enumerated() {
                    for e in 0..<4 where !ranges[r].contains(e) {
                        XCTAssertTrue(o.firstGradients[i][(e * slice)..<((e + 1) * slice)].allSatisfy { $0 == 0 }, "\(name): rank \(r) expert \(e)")
                    }
                    whole = zip(whole, o.firstGradients[i]).map { $0 + $1 }
                }
                ranks[0].firstGradients[i] = whole
            }
            assertMatches(ranks, single, "expert-parallel, \(world) ranks")
        }
    }

    /// Exact: S ranks running one stage each compute what the one-process GPipe schedule computes,
    /// bit for bit (the same micro-batch GEMMs; only the gradient norm's sum is grouped per rank,
    /// so without clipping nothing depends on it).
    func testPipelineOverRanksIsTheOneProcessScheduleBitForBit() throws {
        let config = dense(dropout: 0.2)
        let opt = OptimizerConfig(lr: 0.01, gradClip: nil)
        let (x, labels) = batch
        let n = self.n
        for (stages, micro) in [(2, 3), (3, 4)] {
            let solo = PipelineTrainer(model: ResidualMLP(config: config, seed: 9), stages: stages, communicator: SoloCommunicator(),
                                       config: opt, totalSteps: 10, seed: 3, microbatches: micro)
            var expected: [PipelineStepResult] = []
            try labels.withUnsafeBufferPointer { y in
                for _ in 0..<3 { expected.append(try solo.trainStep(x, labels: y.baseAddress!, rows: n)) }
            }
            let ranks = try ThreadGroup.run(world: stages) { [self] comm -> ([PipelineStepResult], [[Float]]) in
                let pipe = PipelineTrainer(model: ResidualMLP(config: config, seed: 9), stages: stages, communicator: comm,
                                           config: opt, totalSteps: 10, seed: 3, microbatches: micro)
                var results: [PipelineStepResult] = []
                try labels.withUnsafeBufferPointer { y in
                    for _ in 0..<3 { results.append(try pipe.trainStep(x, labels: y.baseAddress!, rows: n)) }
                }
                return (results, values(pipe.parameters))
            }
            for (s, (results, weights)) in ranks.enumerated() {
                let what = "S=\(stages) M=\(micro) stage \(s)"
                XCTAssertEqual(results.map(\.loss.bitPattern), expected.map(\.loss.bitPattern), what)
                XCTAssertEqual(results.map(\.correct), expected.map(\.correct), what)
                for (a, b) in zip(results, expected) { XCTAssertEqual(a.gradNorm, b.gradNorm, accuracy: 1e-12 * b.gradNorm, what) }
                XCTAssertEqual(bits(weights), bits(values(solo.stages[s].parameters)), "\(what): its stage's weights")
            }
        }
    }
}
