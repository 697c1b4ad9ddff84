/// An incremental next-token model that `generate` can drive: a `TransformerDecoder`, or a
/// `TransformerEnsembleDecoder` (its logits are the mixture's log-probabilities).
public protocol NextTokenDecoder: AnyObject {
    /// Positions a window holds (the model's learned positions).
    var context: Int { get }
    var vocab: Int { get }
    /// Positions left before the window is full.
    var free: Int { get }
    /// Forgets every position read.
    func reset()
    /// Reads `tokens` after the positions already read; returns the logits `[vocab]` of the
    /// token after the last of them (valid until the next call).
    func nextLogits(after tokens: [Int32]) -> UnsafePointer<Float>
}

extension TransformerDecoder: NextTokenDecoder {
    public var context: Int { model.config.context }
    public var vocab: Int { model.config.vocab }
    public var free: Int { cache.free }
    public func nextLogits(after tokens: [Int32]) -> UnsafePointer<Float> { append(tokens) }
}

/// A `generate` call's record.
public struct Generation: Sendable, Equatable {
    /// The generated tokens, in order.
    public var tokens: [Int32]
    /// Tokens read in the prefill of the prompt.
    public var promptTokens: Int
    /// How often the window slid (a re-read of the last `slideKeep` tokens).
    public var slides: Int
}

/// Autoregressive generation with the KV cache.
extension NextTokenDecoder {
    /// Tokens kept when the context is full: ⌈context / 2⌉ (at least 1).
    public var slideKeep: Int { max(1, context - context / 2) }

    /// Generates `count` tokens after `prompt` (1 ... context tokens), calling `emit` with each
    /// as soon as it is drawn. The prompt is read in one pass; each drawn token is then read in
    /// one incremental step, so token t costs O(t·hidden) attention per block.
    ///
    /// **A full context slides by half.** The model's learned positions stop at `context`, and a
    /// cached key depends on its position, so the cache cannot simply drop its oldest row. When
    /// the cache is full and the next token must be read, the decoder forgets it and re-reads the
    /// last `slideKeep` = ⌈context/2⌉ tokens of the sequence (the new one included) in one
    /// prefill from position 0. Every token is therefore predicted from between ⌈context/2⌉ and
    /// `context` preceding tokens; the re-read of ⌈context/2⌉ rows is paid once per ⌊context/2⌋
    /// tokens, so the amortised cost per token stays O(context·hidden) per block (nanoGPT's
    /// `generate` instead re-runs the last `context` tokens for every token: quadratic).
    ///
    /// The text is a pure function of the model, prompt, `count` and the sampler (its seed keys
    /// each draw by the token's position), see `TokenSampler`.
    @discardableResult
    public func generate(prompt: [Int32], count: Int, sampler: TokenSampler,
                         emit: (Int32) -> Void = { _ in }) -> Generation {
        precondition(!prompt.isEmpty && prompt.count <= context, "a prompt has 1...\(context) tokens, got \(prompt.count)")
        precondition(count >= 0, "count must be ≥ 0, got \(count)")
        reset()
        var sequence = prompt
        sequence.reserveCapacity(prompt.count + count)
        var logits = nextLogits(after: prompt)
        var slides = 0
        for i in 0..<count {
            let token = Int32(sampler.next(logits, vocab: vocab, position: sequence.count))
            sequence.append(token)
            emit(token)
            if i == count - 1 { break }
            if free == 0 {
                reset()
                logits = nextLogits(after: Array(sequence.suffix(slideKeep)))
                slides += 1
            } else {
                logits = nextLogits(after: [token])
            }
        }
        return Generation(tokens: Array(sequence.dropFirst(prompt.count)), promptTokens: prompt.count, slides: slides)
    }
}
