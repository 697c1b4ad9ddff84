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

    /// Two experts of lm-moe's width over 464 rows each: their weight gradients are GEMMs with
    /// K = 464, where OpenBLAS's threaded sgemm blocks K differently from its single-threaded one.
    /// Each expert runs on one thread, so the gradients are the same bits on one and two threads.
    func testExpertGradientsOverManyRowsAreBitIdenticalOnOneAndTwoThreads() {
        let rows = 464, hidden = 128, ffn = 256
        func gradients(threads: Int) -> [[UInt32]] {
            BLASInfo.setThreads(threads)
            let layer = MoELayer("blocks/0/moe", index: 0, hidden: hidden, ffn: ffn, activation: .gelu,
                                 config: MoEConfig(experts: 2, blocks: [0], k: 2), moeLayers: 1)
            layer.initialize(seed: 5)
            let x = Tensor(shape: [2 * rows, hidden]), dy = Tensor(shape: [2 * rows, hidden]), out = Tensor(shape: [2 * rows, hidden])
            let pre = Tensor(shape: [2 * rows, ffn]), act = Tensor(shape: [2 * rows, ffn]), dAct = Tensor(shape: [2 * rows, ffn])
            let dx = Tensor(shape: [2 * rows, hidden])
            var rng = RNG(seed: 5, purpose: "test/expert-rows")
            rng.fillNormal(x)
            rng.fillNormal(dy)
            let offsets = [0, rows, 2 * rows]
            layer.expertsForward(0..<2, offsets: offsets, input: x.data, pre: pre.data, act: act.data, out: out.data, training: true)
            layer.expertsBackward(0..<2, offsets: offsets, dOut: dy.data, dAct: dAct.data, input: x.data, pre: pre.data,
                                  act: act.data, dIn: dx.data)
            return ([out, dx] + [layer.w1, layer.b1, layer.w2, layer.b2].map(\.grad)).map { t in (0..<t.count).map { t.data[$0].bitPattern } }
        }
        XCTAssertTrue(gradients(threads: 2) == gradients(threads: 1), "an expert's output or gradient depends on the thread count")
    }
}
