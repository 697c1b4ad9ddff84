import Foundation

/// Per-domain sums of next-token scores over evaluation windows, reduced to the metrics of
/// ARCHITECTURE §5.4: for a set of scored tokens (one domain, or all of them)
/// - `loss` = Σ cross-entropy (nats) / scored tokens,
/// - `accuracy` = top-1 correct / scored tokens,
/// - `bitsPerByte` = loss / ln 2 (byte tokens: one token is one byte).
/// The overall numbers pool every scored token of every domain (a token-weighted mean, not a
/// mean of the domains' means). Sums are kept in Double so the order of windows barely matters.
public struct TextScores: Equatable, Sendable {
    public struct Metrics: Equatable, Sendable {
        public let loss: Double
        public let accuracy: Double
        public let bitsPerByte: Double
        /// Scored tokens.
        public let tokens: Int
    }

    /// Summed cross-entropy (nats), correct predictions and scored tokens, per domain id.
    public private(set) var lossSums: [Double]
    public private(set) var correct: [Int]
    public private(set) var tokens: [Int]

    public init(domains: Int) {
        lossSums = Array(repeating: 0, count: domains)
        correct = Array(repeating: 0, count: domains)
        tokens = Array(repeating: 0, count: domains)
    }

    /// Adds the scores of some windows of `domain`: their summed loss, correct and scored tokens.
    public mutating func add(domain: Int, lossSum: Double, correct: Int, tokens: Int) {
        precondition(correct >= 0 && correct <= tokens, "0 ≤ correct ≤ tokens")
        lossSums[domain] += lossSum
        self.correct[domain] += correct
        self.tokens[domain] += tokens
    }

    /// The metrics of one domain (NaN loss and accuracy when it scored no token).
    public func metrics(domain: Int) -> Metrics {
        TextScores.metrics(loss: lossSums[domain], correct: correct[domain], tokens: tokens[domain])
    }

    /// The metrics over every scored token of every domain.
    public var overall: Metrics {
        TextScores.metrics(loss: lossSums.reduce(0, +), correct: correct.reduce(0, +), tokens: tokens.reduce(0, +))
    }

    private static func metrics(loss: Double, correct: Int, tokens: Int) -> Metrics {
        let n = Double(tokens)
        let mean = tokens > 0 ? loss / n : .nan
        return Metrics(loss: mean, accuracy: tokens > 0 ? Double(correct) / n : .nan,
                       bitsPerByte: mean / M_LN2, tokens: tokens)
    }
}
