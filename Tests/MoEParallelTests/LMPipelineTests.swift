import XCTest
import MoEComm
import MoECore
@testable import MoENN
@testable import MoEParallel

/// GPipe on a transformer LM (`PipelineTrainer<TransformerLM>`): micro-batches are runs of
/// windows, the activations between stages `[windows·T, hidden]`. In one process the schedule
/// learns what plain training of the same LM learns (to float rounding, the MLP pipeline's
/// tolerances); over S ranks it is the one-process schedule bit for bit.
final class LMPipelineTests: XCTestCase {
    let config = TransformerConfig(vocab: 13, context: 6, hidden: 8, heads: 2, blocks: 4, ffn: 16, activation: .gelu,
                                   dropout: 0.2, tieEmbeddings: false, moe: nil)
    let (windows, length) = (7, 7)

    private var tokens: [Int32] {
        var rng = RNG(seed: 21, purpose: "lm-pipeline-test")
        return (0..<(windows * length)).map { _ in Int32(rng.int(below: 13)) }
    }

    private func bits(_ ps: [Parameter]) -> [[UInt32]] { ps.map { $0.value.array.map(\.bitPattern) } }

    func testScheduleInOneProcessMatchesPlainTraining() throws {
        let opt = OptimizerConfig(lr: 0.01, gradClip: 0.5)
        let tokens = self.tokens
        for (stages, micro) in [(2, 1), (2, 3), (4, 7)] {
            let plain = Trainer(model: TransformerLM(config: config, seed: 9), config: opt, totalSteps: 10, seed: 3)
            let pipe = PipelineTrainer(model: TransformerLM(config: config, seed: 9), stages: stages, communicator: SoloCommunicator(),
                                       config: opt, totalSteps: 10, seed: 3, microbatches: micro)
            try tokens.withUnsafeBufferPointer { tb in
                let batch = TokenWindows(tokens: tb.baseAddress!, batch: windows, length: length)
                for _ in 0..<4 {
                    let a = try plain.trainStep(on: batch, stop: false)
                    let b = try pipe.trainStep(on: batch, stop: false)
                    XCTAssertEqual(a.loss, b.loss, accuracy: 1e-6, "S=\(stages) M=\(micro)")
                    XCTAssertEqual(a.gradNorm, b.gradNorm, accuracy: 1e-5 * a.gradNorm, "S=\(stages) M=\(micro)")
                    XCTAssertEqual(a.sums.correct, b.sums.correct)
                    XCTAssertEqual(b.sums.scored, windows * (length - 1))
                }
            }
            var worst: Float = 0
            for (p, q) in zip(plain.model.parameters, pipe.model.parameters) {
                for i in 0..<p.value.count { worst = max(worst, abs(p.value.data[i] - q.value.data[i])) }
            }
            XCTAssertLessThan(worst, 1e-5, "weights after 4 steps, S=\(stages) M=\(micro)")
        }
    }

    func testPipelineOverRanksIsTheOneProcessScheduleBitForBit() throws {
        let opt = OptimizerConfig(lr: 0.01, gradClip: nil)
        let tokens = self.tokens, config = self.config, (windows, length) = (self.windows, self.length)
        for (stages, micro) in [(2, 3), (3, 2)] {
            let solo = PipelineTrainer(model: TransformerLM(config: config, seed: 9), stages: stages, communicator: SoloCommunicator(),
                                       config: opt, totalSteps: 10, seed: 3, microbatches: micro)
            var expected: [PipelineStepResult] = []
            try tokens.withUnsafeBufferPointer { tb in
                for _ in 0..<3 { expected.append(try solo.trainStep(TokenWindows(tokens: tb.baseAddress!, batch: windows, length: length))) }
            }
            let ranks = try ThreadGroup.run(world: stages) { [self] comm -> ([PipelineStepResult], [[UInt32]]) in
                let pipe = PipelineTrainer(model: TransformerLM(config: config, seed: 9), stages: stages, communicator: comm,
                                           config: opt, totalSteps: 10, seed: 3, microbatches: micro)
                var results: [PipelineStepResult] = []
                try tokens.withUnsafeBufferPointer { tb in
                    for _ in 0..<3 { results.append(try pipe.trainStep(TokenWindows(tokens: tb.baseAddress!, batch: windows, length: length))) }
                }
                return (results, bits(pipe.parameters))
            }
            for (s, (results, weights)) in ranks.enumerated() {
                let what = "S=\(stages) M=\(micro) stage \(s)"
                XCTAssertEqual(results.map(\.loss.bitPattern), expected.map(\.loss.bitPattern), what)
                XCTAssertEqual(results.map(\.correct), expected.map(\.correct), what)
                XCTAssertEqual(weights, bits(solo.stages[s].parameters), "\(what): its stage's weights")
            }
        }
    }
}
