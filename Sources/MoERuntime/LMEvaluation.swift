import Foundation
import MoEData
import MoENN

/// The evaluation protocol of a language model (ARCHITECTURE §5.4): each domain's stream of a
/// split is cut into consecutive windows of `context + 1` tokens at offsets 0, context,
/// 2·context, … (an incomplete last window dropped, `TextWindows`); the model reads tokens
/// `0..<context` of a window and is scored on tokens `1...context`.
///
///     <split>_loss           = Σ cross-entropy (nats) / scored tokens, over every domain
///     <split>_accuracy       = top-1 next-token accuracy
///     <split>_bits_per_byte  = <split>_loss / ln 2   (byte tokens: one token is one byte)
///
/// and the same three per domain. Windows are forwarded `batchSize` at a time (MoE capacity is
/// counted per forward, so an independent recomputation batches the same way), in domain order.
struct LMScores {
    var overall = ObjectiveSums()
    /// (domain name, its sums), in domain-id order.
    var domains: [(name: String, sums: ObjectiveSums)] = []

    static func bitsPerByte(_ loss: Double) -> Double { loss / log(2) }

    /// `<prefix><split>_{loss, accuracy, bits_per_byte}` of `sums`.
    static func values(_ sums: ObjectiveSums, split: String) -> [(String, Double)] {
        [("\(split)_loss", sums.meanLoss), ("\(split)_accuracy", sums.accuracy), ("\(split)_bits_per_byte", bitsPerByte(sums.meanLoss))]
    }

    /// Scores `model` (a transformer LM, or an ensemble of them) on `split` of `corpus` (only the
    /// domains in `only`, when given). Each window carries its domain id (the `domain` router).
    static func score(_ model: any TokenWindowScorer, _ corpus: TextCorpus, split: TextSplit, batchSize: Int,
                      only: Set<Int>? = nil, windowsPerDomain: Int? = nil) -> LMScores {
        score(context: model.config.context, corpus, split: split, batchSize: batchSize, only: only,
              windowsPerDomain: windowsPerDomain) {
            model.evaluationSums($0, batchSize: max(1, batchSize))
        }
    }

    /// The protocol's windows of `split` (of the domains in `only`, when given), `batchSize` at a
    /// time in domain order, each chunk scored by `sums`; with `windowsPerDomain`, only the first
    /// that many windows of each domain.
    static func score(context: Int, _ corpus: TextCorpus, split: TextSplit, batchSize: Int, only: Set<Int>? = nil,
                      windowsPerDomain: Int? = nil, _ sums: (TokenWindows) -> ObjectiveSums) -> LMScores {
        let width = context + 1
        var scores = LMScores()
        let chunk = max(1, batchSize)
        let tokens = UnsafeMutablePointer<Int32>.allocate(capacity: chunk * width)
        let domains = UnsafeMutablePointer<Int>.allocate(capacity: chunk)
        defer { tokens.deallocate(); domains.deallocate() }
        for windows in corpus.evaluationWindows(split, context: context) where only?.contains(windows.domain) ?? true {
            var domainSums = ObjectiveSums()
            let end = min(windows.count, windowsPerDomain ?? windows.count)
            var start = 0
            while start < end {
                let count = min(chunk, end - start)
                windows.fill(tokens, windows: start ..< start + count)
                domains.update(repeating: windows.domain, count: count)
                domainSums += sums(TokenWindows(tokens: tokens, batch: count, length: width, domains: domains))
                start += count
            }
            scores.overall += domainSums
            scores.domains.append((windows.name, domainSums))
        }
        return scores
    }
}
