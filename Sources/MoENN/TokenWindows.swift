/// A batch of a language model: `batch` windows of `length` token ids each (`tokens [batch,
/// length]`, row-major), with one domain id per window when the data has them (the `domain`
/// router reads them). A window of `length = T + 1` tokens trains next-token prediction on T
/// positions: the model reads tokens `0..<T` of each window and is scored on tokens `1...T`
/// (ARCHITECTURE §5.4). The pointers must stay valid until `backward`.
public struct TokenWindows: @unchecked Sendable {
    public var tokens: UnsafePointer<Int32>
    public var batch: Int
    /// Tokens per window: the context read (T) plus the one last target.
    public var length: Int
    public var domains: UnsafePointer<Int>?

    public init(tokens: UnsafePointer<Int32>, batch: Int, length: Int, domains: UnsafePointer<Int>? = nil) {
        precondition(length >= 2, "a token window needs at least 2 tokens (1 read, 1 scored), got \(length)")
        self.tokens = tokens
        self.batch = batch
        self.length = length
        self.domains = domains
    }

    /// Positions read (and scored) per window: `length − 1`.
    public var positions: Int { length - 1 }
    /// Tokens scored in the whole batch: `batch · (length − 1)`.
    public var scoredTokens: Int { batch * positions }

    /// Windows `start ..< start + count` of this batch (for evaluation in chunks).
    public func windows(_ start: Int, count: Int) -> TokenWindows {
        precondition(start >= 0 && count >= 0 && start + count <= batch, "windows \(start)..<\(start + count) outside 0..<\(batch)")
        return TokenWindows(tokens: tokens + start * length, batch: count, length: length, domains: domains.map { $0 + start })
    }
}

/// A typed buffer grown to the largest size asked for and then reused (the integer
/// counterpart of `Scratch`): after the first step of the largest batch nothing is allocated.
final class GrowableBuffer<Element> {
    private(set) var data: UnsafeMutablePointer<Element>
    private(set) var capacity = 0
    private let zero: Element

    init(zero: Element) {
        self.zero = zero
        data = .allocate(capacity: 1)
        data.initialize(to: zero)
    }

    deinit {
        data.deinitialize(count: max(capacity, 1))
        data.deallocate()
    }

    /// Makes room for `count` elements (keeps the storage when it is already large enough).
    func ensure(_ count: Int) {
        guard count > capacity else { return }
        data.deinitialize(count: max(capacity, 1))
        data.deallocate()
        data = .allocate(capacity: count)
        data.initialize(repeating: zero, count: count)
        capacity = count
    }
}
