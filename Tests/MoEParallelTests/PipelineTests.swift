import XCTest
import MoEComm
import MoECore
@testable import MoENN
@testable import MoEParallel

/// GPipe's pieces in one process: the micro-batch split, and the whole schedule (all stages, a
/// group of one) against plain training of the same model on the same batches.
final class PipelineTests: XCTestCase {
    func testMicroBatchesAreContiguousAndAsEvenAsPossible() {
        XCTAssertEqual(MicroBatches.split(rows: 10, count: 4), [0..<3, 3..<6, 6..<8, 8..<10])
        XCTAssertEqual(MicroBatches.split(rows: 8, count: 4), [0..<2, 2..<4, 4..<6, 6..<8])
        XCTAssertEqual(MicroBatches.split(rows: 7, count: 1), [0..<7])
        XCTAssertEqual(MicroBatches.split(rows: 3, count: 5), [0..<1, 1..<2, 2..<3], "never an empty micro-batch")
        for n in 1...40 {
            for m in 1...9 {
                let split = MicroBatches.split(rows: n, count: m)
                XCTAssertEqual(split.first?.lowerBound, 0)
                XCTAssertEqual(split.last?.upperBound, n)
                for (a, b) in zip(split, split.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
                let sizes = split.map(\.count)
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1)
                XCTAssertEqual(sizes, sizes.sorted(by: >), "longer ones first")
            }
        }
    }

    func testStageParametersPartitionTheModel() {
        let model = ResidualMLP(config: ModelConfig(features: 5, classes: 3, hidden: 8, ffn: 16, blocks: 5), seed: 1)
        let ranges = LayerwiseModel.partition(blocks: 5, stages: 3)
        let names = (0..<3).flatMap { model.stageParameters($0, of: ranges).map(\.name) }
        XCTAssertEqual(names, model.parameters.map(\.name))
    }

    /// The GPipe schedule (micro-batches, re-materialisation, dropout with row offsets, global
    /// clipping) in a group of one against `Trainer` on the whole batch, step by step.
    func testScheduleInOneProcessMatchesPlainTraining() throws {
        let config = ModelConfig(features: 6, classes: 4, hidden: 16, ffn: 24, blocks: 4, dropout: 0.2)
        let opt = OptimizerConfig(lr: 0.01, gradClip: 0.5)
        let n = 37
        var rng = RNG(seed: 5, purpose: "pipeline-test")
        let x = Tensor(shape: [n, 6])
        rng.fillNormal(x)
        let labels = (0..<n).map { ($0 * 7) % 4 }
        for (stages, micro) in [(2, 1), (2, 4), (4, 5), (3, 37)] {
            let plain = Trainer(model: ResidualMLP(config: config, seed: 9), config: opt, totalSteps: 10, seed: 3)
            let pipe = PipelineTrainer(model: ResidualMLP(config: config, seed: 9), stages: stages, communicator: SoloCommunicator(),
                                       config: opt, totalSteps: 10, seed: 3, microbatches: micro)
            try labels.withUnsafeBufferPointer { y in
                for _ in 0..<5 {
                    let a = plain.trainStep(x.data, labels: y.baseAddress!, rows: n)
                    let b = try pipe.trainStep(x.data, labels: y.baseAddress!, rows: n)
                    XCTAssertEqual(a.loss, b.loss, accuracy: 1e-6, "S=\(stages) M=\(micro)")
                    XCTAssertEqual(a.gradNorm, b.gradNorm, accuracy: 1e-5 * a.gradNorm, "S=\(stages) M=\(micro)")
                    XCTAssertEqual(a.correct, b.correct)
                }
            }
            var worst: Float = 0
            for (p, q) in zip(plain.model.parameters, pipe.model.parameters) {
                for i in 0..<p.value.count { worst = max(worst, abs(p.value.data[i] - q.value.data[i])) }
            }
            XCTAssertLessThan(worst, 1e-5, "weights after 5 steps, S=\(stages) M=\(micro)")
        }
    }
}
