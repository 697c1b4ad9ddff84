import XCTest
import MoECore
@testable import MoENN

/// Incremental decoding with the KV cache (`TransformerDecoder`) against the full forward
/// (`TransformerLM.forwardLogits`), the sliding window, and the token sampler.
final class TransformerDecoderTests: XCTestCase {
    private let eval = ForwardContext(training: false, step: 0, seed: 0)

    /// A model with sizeable parameters (`TinyTransformer.randomize`), so logits differ clearly.
    private func model(_ config: TransformerConfig, seed: UInt64 = 3) -> TransformerLM {
        let model = TransformerLM(config: config, seed: seed)
        TinyTransformer.randomize(model.parameters, seed: seed)
        return model
    }

    /// The full forward's logits `[T, vocab]` of one window (optionally every token in `domain`).
    private func fullLogits(_ model: TransformerLM, _ tokens: [Int32], domain: Int? = nil) -> [Float] {
        let v = model.config.vocab
        tokens.withUnsafeBufferPointer { tb in
            if let domain {
                [domain].withUnsafeBufferPointer { db in
                    model.forwardLogits(tb.baseAddress!, batch: 1, tokens: tokens.count, rowStride: tokens.count,
                                        domains: db.baseAddress!, context: eval)
                }
            } else {
                model.forwardLogits(tb.baseAddress!, batch: 1, tokens: tokens.count, rowStride: tokens.count, context: eval)
            }
        }
        return Array(UnsafeBufferPointer(start: model.logits, count: tokens.count * v))
    }

    private func assertClose(_ a: UnsafePointer<Float>, _ b: ArraySlice<Float>, _ message: String) {
        var worst: Float = 0
        for (i, x) in b.enumerated() { worst = max(worst, abs(a[i] - x)) }
        XCTAssertLessThanOrEqual(worst, 1e-5, message)
    }

    private var configurations: [(String, TransformerConfig, Int?)] {
        let tiny = { (moe: MoEConfig?, tie: Bool) in
            TransformerConfig(vocab: 13, context: 9, hidden: 12, heads: 3, blocks: 3, ffn: 16, tieEmbeddings: tie, moe: moe)
        }
        return [
            ("dense", tiny(nil, false), nil),
            ("dense tied", tiny(nil, true), nil),
            ("moe top-2", tiny(MoEConfig(experts: 4, blocks: [0, 2], k: 2), false), nil),
            ("moe switch", tiny(MoEConfig(experts: 3, blocks: [1], router: .switch, k: 1), false), nil),
            ("moe noisy top-2", tiny(MoEConfig(experts: 4, blocks: [1], router: .noisyTopk, k: 2), false), nil),
            ("moe hash", tiny(MoEConfig(experts: 3, blocks: [1], router: .hash, k: 1), false), nil),
            ("moe domain", tiny(MoEConfig(experts: 3, blocks: [2], router: .domain, k: 1), false), 2),
        ]
    }

    /// Reading a window one token at a time gives, at every position, the full forward's logits
    /// of that position; so does a prefill of the first tokens followed by single steps.
    func testIncrementalLogitsEqualTheFullForwardAtEveryPosition() {
        for (name, config, domain) in configurations {
            let lm = model(config)
            let tokens = TinyTransformer.tokens(batch: 1, length: config.context, vocab: config.vocab, seed: 5)
            let full = fullLogits(lm, tokens, domain: domain)
            let v = config.vocab
            let decoder = TransformerDecoder(model: lm, domain: domain)
            for t in 0..<config.context {
                let logits = decoder.append([tokens[t]])
                assertClose(logits, full[(t * v)..<((t + 1) * v)], "\(name): position \(t)")
            }
            XCTAssertEqual(decoder.cache.free, 0)
            // Prefill of 4 tokens (all four rows' logits), then single steps.
            decoder.reset()
            let prefill = decoder.append(Array(tokens[0..<4]), logitRows: 4)
            assertClose(prefill, full[0..<(4 * v)], "\(name): prefill")
            for t in 4..<config.context {
                assertClose(decoder.append([tokens[t]]), full[(t * v)..<((t + 1) * v)], "\(name): position \(t) after prefill")
            }
        }
    }

    /// A reference of `generate` with the documented window rule, run on the full forward:
    /// the window starts at 0 and jumps to `count − ⌈context/2⌉` when a token would not fit.
    private func referenceGreedy(_ lm: TransformerLM, prompt: [Int32], count: Int) -> [Int32] {
        let context = lm.config.context, keep = context - context / 2, v = lm.config.vocab
        var sequence = prompt, start = 0
        for _ in 0..<count {
            if sequence.count - start > context { start = sequence.count - keep }
            let window = Array(sequence[start...])
            let logits = fullLogits(lm, window)
            let last = Array(logits[((window.count - 1) * v)...])
            sequence.append(Int32(last.indices.max { last[$0] < last[$1] || (last[$0] == last[$1] && $0 > $1) }!))
        }
        return Array(sequence.dropFirst(prompt.count))
    }

    /// Temperature 0 is greedy: every token is the argmax of the full forward's logits of the
    /// window the decoder holds, across several slides of the window.
    func testGreedyEqualsArgmaxOfTheFullForwardAcrossSlides() {
        for (name, config, domain) in configurations where domain == nil {
            let lm = model(config)
            let decoder = TransformerDecoder(model: lm)
            let prompt: [Int32] = [1, 4, 2]
            let count = 3 * config.context
            var emitted: [Int32] = []
            let generation = decoder.generate(prompt: prompt, count: count, sampler: TokenSampler(temperature: 0, seed: 9)) {
                emitted.append($0)
            }
            XCTAssertEqual(generation.tokens, emitted, name)
            XCTAssertEqual(generation.tokens.count, count, name)
            XCTAssertEqual(generation.tokens, referenceGreedy(lm, prompt: prompt, count: count), name)
            // 3 + 27 tokens through a context of 9 keeping 5: slides at 10, 15, 20 and 25 tokens.
            XCTAssertEqual(generation.slides, 4, name)
        }
    }

    /// The same seed gives the same text (also with a fresh decoder); another seed other text.
    func testSamplingIsDeterministicForASeed() {
        let config = configurations[2].1
        let prompt: [Int32] = [7]
        func sample(seed: UInt64, topK: Int? = nil) -> [Int32] {
            TransformerDecoder(model: model(config)).generate(prompt: prompt, count: 40,
                                                               sampler: TokenSampler(temperature: 1, topK: topK, seed: seed)).tokens
        }
        XCTAssertEqual(sample(seed: 1), sample(seed: 1))
        XCTAssertEqual(sample(seed: 1, topK: 3), sample(seed: 1, topK: 3))
        XCTAssertNotEqual(sample(seed: 1), sample(seed: 2))
        XCTAssertEqual(Set(sample(seed: 4)).count > 3, true, "temperature 1 should vary the tokens")
    }

    /// The sampler: greedy is the argmax (lowest id on ties); top-1 is greedy at any
    /// temperature; top-k never leaves the k largest; draws follow softmax(z/τ).
    func testSamplerGreedyTopKAndFrequencies() {
        let logits: [Float] = [0.5, 2, -1, 2, 1.5, 0]
        logits.withUnsafeBufferPointer { z in
            let p = z.baseAddress!
            XCTAssertEqual(TokenSampler(temperature: 0, seed: 0).next(p, vocab: 6, position: 0), 1)
            let top1 = TokenSampler(temperature: 5, topK: 1, seed: 3)
            for position in 0..<50 { XCTAssertEqual(top1.next(p, vocab: 6, position: position), 1) }
            let top3 = TokenSampler(temperature: 3, topK: 3, seed: 3)
            var seen = Set<Int>()
            for position in 0..<300 { seen.insert(top3.next(p, vocab: 6, position: position)) }
            XCTAssertEqual(seen, [1, 3, 4])
            XCTAssertEqual(TokenSampler(temperature: 1, topK: 99, seed: 0).next(p, vocab: 6, position: 7),
                           TokenSampler(temperature: 1, seed: 0).next(p, vocab: 6, position: 7))
            // Frequencies of 20000 draws at τ = 0.7 within 0.015 of softmax(z/τ).
            let tau: Float = 0.7, sampler = TokenSampler(temperature: tau, seed: 11), n = 20000
            var counts = [Int](repeating: 0, count: 6)
            for position in 0..<n { counts[sampler.next(p, vocab: 6, position: position)] += 1 }
            let weights = logits.map { Double(exp(($0 - 2) / tau)) }, total = weights.reduce(0, +)
            for i in 0..<6 {
                XCTAssertEqual(Double(counts[i]) / Double(n), weights[i] / total, accuracy: 0.015, "token \(i)")
            }
        }
    }

    /// The cache holds exactly the k and v rows of the qkv projection, in position order.
    func testCacheHoldsTheKeysAndValuesOfEveryPosition() {
        let config = configurations[0].1
        let lm = model(config)
        let tokens = TinyTransformer.tokens(batch: 1, length: 5, vocab: config.vocab, seed: 8)
        let decoder = TransformerDecoder(model: lm)
        decoder.append(Array(tokens[0..<2]))
        decoder.append(Array(tokens[2..<5]))
        XCTAssertEqual(decoder.count, 5)
        // Block 0's input is embed + pos: its k, v are LN₁(x₀)·W_qkvᵀ + b (columns h..<3h).
        let h = config.hidden, block = lm.blocks[0]
        var x = [Float](repeating: 0, count: 5 * h), u = x, mean = [Float](repeating: 0, count: 5), rstd = mean
        var qkv = [Float](repeating: 0, count: 5 * 3 * h)
        for t in 0..<5 {
            for i in 0..<h { x[t * h + i] = lm.embed.value.data[Int(tokens[t]) * h + i] + lm.pos.value.data[t * h + i] }
        }
        block.attentionNorm.forward(x, rows: 5, into: &u, mean: &mean, rstd: &rstd)
        block.attention.qkv.forward(u, rows: 5, into: &qkv)
        for t in 0..<5 {
            for i in 0..<h {
                XCTAssertEqual(decoder.cache.keys[0].data[t * h + i], qkv[t * 3 * h + h + i], accuracy: 1e-6)
                XCTAssertEqual(decoder.cache.values[0].data[t * h + i], qkv[t * 3 * h + 2 * h + i], accuracy: 1e-6)
            }
        }
    }
}
