import XCTest
import MoECore
@testable import MoENN

/// A transformer LM's training step gives the same bits on one thread and on two (ARCHITECTURE §6):
/// with two, `ParallelFor` spreads the attention's (sequence, head) products, the experts' GEMM
/// pairs and the AdamW update over both, and OpenBLAS threads the projections.
final class ParallelTrainingStepTests: XCTestCase {
    private var savedThreads = 1
    override func setUp() { savedThreads = BLASInfo.threads }
    override func tearDown() { BLASInfo.setThreads(savedThreads) }

    /// Every parameter and optimizer state after three steps of lm-moe's shape (two blocks, the
    /// second MoE with 8 top-2 experts), as bit patterns, trained with `threads` threads.
    private func trainedBits(threads: Int, moe: Bool) -> [[UInt32]] {
        BLASInfo.setThreads(threads)
        let config = TransformerConfig(vocab: 256, context: 64, hidden: 128, heads: 4, blocks: 2, ffn: 512, activation: .gelu,
                                       dropout: 0, tieEmbeddings: true,
                                       moe: moe ? MoEConfig(experts: 8, blocks: [1], router: .topk, k: 2, expertFFN: 256) : nil)
        let trainer = Trainer(model: TransformerLM(config: config, seed: 3),
                              config: OptimizerConfig(kind: .adamw, lr: 1e-3, weightDecay: 0.1, beta1: 0.9, beta2: 0.99, gradClip: 1.0),
                              totalSteps: 10, seed: 3)
        for step in 0..<3 {
            let tokens = TinyTransformer.tokens(batch: 12, length: 65, vocab: 256, seed: UInt64(step))
            tokens.withUnsafeBufferPointer {
                _ = trainer.trainStep(on: TokenWindows(tokens: $0.baseAddress!, batch: 12, length: 65))
            }
        }
        let tensors = trainer.model.parameters.map(\.value) + trainer.optimizer.state.map(\.tensor)
        return tensors.map { t in (0..<t.count).map { t.data[$0].bitPattern } }
    }

    func testDenseStepIsBitIdenticalOnOneAndTwoThreads() {
        let two = trainedBits(threads: 2, moe: false)
        XCTAssertTrue(two == trainedBits(threads: 1, moe: false), "a tensor's bits depend on the thread count")
    }

    func testMoEStepIsBitIdenticalOnOneAndTwoThreads() {
        let two = trainedBits(threads: 2, moe: true)
        XCTAssertTrue(two == trainedBits(threads: 1, moe: true), "a tensor's bits depend on the thread count")
    }
}
