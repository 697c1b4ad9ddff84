/// The evaluation windows of one domain in one split (ARCHITECTURE §5.4, evaluation protocol).
///
/// The domain's stream of `n` tokens is cut into consecutive windows of `context + 1` tokens at
/// offsets `0, context, 2·context, …`; a window that would run past the end is dropped, so there
/// are `count = (n − 1) / context` windows (integer division; 0 when `n ≤ context`). Window `i`
/// holds tokens `i·context ... i·context + context`: the model reads its first `context`
/// tokens and is scored on its last `context` (each window's last token is the next window's
/// first, so every token after the first is scored exactly once, up to the dropped tail).
public struct TextWindows: Sendable {
    public let split: TextSplit
    /// Domain id and name.
    public let domain: Int
    public let name: String
    public let context: Int
    /// The domain's whole stream of this split.
    public let stream: [UInt16]

    /// Number of windows of `context + 1` tokens at stride `context` in `tokens` tokens.
    public static func count(tokens: Int, context: Int) -> Int {
        precondition(context >= 1, "context must be at least 1")
        return tokens >= context + 1 ? (tokens - 1) / context : 0
    }

    /// Number of windows.
    public var count: Int { TextWindows.count(tokens: stream.count, context: context) }

    /// Start of window `i` in the stream.
    public func offset(_ i: Int) -> Int { i * context }

    /// Scored tokens: `count · context`.
    public var scoredTokens: Int { count * context }

    /// Copies windows `range` into `destination`, row-major `[range.count, context + 1]`.
    public func fill(_ destination: UnsafeMutablePointer<Int32>, windows range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "windows \(range) outside 0..<\(count)")
        let width = context + 1
        stream.withUnsafeBufferPointer { source in
            for (row, i) in range.enumerated() {
                let start = offset(i)
                for t in 0 ..< width { destination[row * width + t] = Int32(source[start + t]) }
            }
        }
    }
}

extension TextCorpus {
    /// The evaluation windows of every domain of `split`, in domain-id order.
    public func evaluationWindows(_ split: TextSplit, context: Int) -> [TextWindows] {
        precondition(context >= 1, "context must be at least 1")
        return streams(split).enumerated().map { d, stream in
            TextWindows(split: split, domain: d, name: domains[d], context: context, stream: stream)
        }
    }
}
