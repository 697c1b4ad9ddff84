import Foundation
import MoEHDF5

/// The three parts of a text corpus (ARCHITECTURE §5.4).
public enum TextSplit: String, CaseIterable, Sendable {
    case train, val, test
}

/// A multi-domain text corpus as token streams, split per domain (ARCHITECTURE §5.4).
///
/// Tokens are bytes (vocabulary 256) unless a file in the `tasks/data.h5` layout says otherwise.
/// **Split.** Each domain's stream of `n` tokens is cut into contiguous blocks: train is tokens
/// `0 ..< a`, val `a ..< a + b`, test `a + b ..< n`, with `a = round(train · n)` and
/// `b = min(n − a, round(val · n))`, rounding halves away from zero (`DataSplits.sizes`, the
/// rule feature data uses). No window ever crosses a split or a domain.
public struct TextCorpus: Equatable, Sendable {
    /// Byte-level tokens: ids 0...255.
    public static let byteVocabulary = 256

    /// Names the corpus in errors (the path as the user wrote it).
    public let source: String
    /// Domain names in id order.
    public let domains: [String]
    /// Token ids are in `0 ..< vocabulary`.
    public let vocabulary: Int
    /// `streams[split][domain]`: each domain's tokens of each split (train, val, test).
    private let streams: [TextSplit: [[UInt16]]]

    /// A corpus from per-domain streams; checks counts, emptiness and token ranges.
    public init(source: String, domains: [String], vocabulary: Int = TextCorpus.byteVocabulary,
                train: [[UInt16]], val: [[UInt16]], test: [[UInt16]]) throws {
        guard !domains.isEmpty else { throw DataError.noDomains(source: source) }
        guard [train, val, test].allSatisfy({ $0.count == domains.count }) else {
            throw DataError.shapeMismatch(file: source, message: "\(domains.count) domains but \(train.count) train, \(val.count) val, \(test.count) test streams")
        }
        for d in domains.indices where train[d].isEmpty && val[d].isEmpty && test[d].isEmpty {
            throw DataError.emptyDomain(source: source, domain: domains[d])
        }
        for (split, parts) in [(TextSplit.train, train), (.val, val), (.test, test)] {
            var offset = 0
            for part in parts {
                if let bad = part.firstIndex(where: { Int($0) >= vocabulary }) {
                    throw DataError.tokenOutOfRange(source: source, dataset: "/data/\(split.rawValue)/tokens",
                                                    index: offset + bad, value: Int(part[bad]), vocabulary: vocabulary)
                }
                offset += part.count
            }
        }
        self.source = source
        self.domains = domains
        self.vocabulary = vocabulary
        self.streams = [.train: train, .val: val, .test: test]
    }

    /// Each domain's token stream of `split`, in domain-id order.
    public func streams(_ split: TextSplit) -> [[UInt16]] { streams[split]! }

    /// Tokens of `split` over all domains.
    public func tokenCount(_ split: TextSplit) -> Int { streams(split).reduce(0) { $0 + $1.count } }

    /// Splits raw domains into byte-token streams by the fractions (see the type's documentation).
    public static func split(_ raw: TextDomains, train: Double, val: Double, source: String) throws -> TextCorpus {
        func fail(_ name: String, _ message: String) -> DataError {
            DataError.invalidParameter(source: "split", name: name, message: message)
        }
        guard train >= 0, train <= 1 else { throw fail("train", "fraction must be in [0, 1], got \(train)") }
        guard val >= 0, val <= 1 else { throw fail("val", "fraction must be in [0, 1], got \(val)") }
        guard train + val <= 1 + 1e-9 else { throw fail("train + val", "fractions sum to \(train + val) > 1") }
        _ = try raw.checked(source: source)
        var parts: [TextSplit: [[UInt16]]] = [.train: [], .val: [], .test: []]
        for text in raw.texts {
            let sizes = DataSplits.sizes(of: text.count, train: train, val: val)
            let tokens = text.map(UInt16.init)
            parts[.train]!.append(Array(tokens[0 ..< sizes.train]))
            parts[.val]!.append(Array(tokens[sizes.train ..< sizes.train + sizes.val]))
            parts[.test]!.append(Array(tokens[(sizes.train + sizes.val)...]))
        }
        return try TextCorpus(source: source, domains: raw.names, train: parts[.train]!, val: parts[.val]!, test: parts[.test]!)
    }

    /// Loads `path`: a folder of domains, a text corpus HDF5 file (split by the fractions), or an
    /// HDF5 file in the `tasks/data.h5` layout (already split: the fractions are not used).
    /// `source` names the corpus in errors (default: `path`).
    public static func load(path: String, train: Double, val: Double, source: String? = nil) throws -> TextCorpus {
        let name = source ?? path
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw DataError.corpusMissing(path: name)
        }
        if isFolder.boolValue {
            return try split(TextDomains.load(folder: path, source: name), train: train, val: val, source: name)
        }
        if let problem = H5Signature.problem(at: path) {
            throw DataError.notACorpus(path: name, reason: "\(problem); give a folder with one .txt file or sub-folder per domain, or an HDF5 file")
        }
        let file = try wrappingHDF5(source: name) { try H5File.open(path) }
        if file.exists("data") {
            return try load(dataLayout: file, source: name)
        }
        if file.exists("domains") || file.exists("text") {
            return try split(TextDomains.load(corpus: file, source: name), train: train, val: val, source: name)
        }
        throw DataError.notACorpus(path: name, reason: "the HDF5 file has neither /domains with /text/<name> (a text corpus) nor /data/<split>/tokens (the tasks/data.h5 layout)")
    }

    /// Pre-flight check for `data.source: text`: loads the corpus at `path`, splits it by the
    /// fractions and checks that every domain's train, val and test stream holds at least one
    /// window of `context + 1` tokens. Throws the first problem as a one-line `DataError`
    /// (missing path, not a corpus, no domains, an empty domain, a token id outside the
    /// vocabulary, a stream too short); writes nothing. Returns the corpus.
    @discardableResult
    public static func preflight(path: String, train: Double, val: Double, context: Int, source: String? = nil) throws -> TextCorpus {
        let corpus = try load(path: path, train: train, val: val, source: source)
        try corpus.check(context: context)
        return corpus
    }

    /// Throws `.streamTooShort` for the first (domain, split) — domains in id order, splits
    /// train, val, test — with fewer than `context + 1` tokens.
    public func check(context: Int) throws {
        guard context >= 1 else {
            throw DataError.invalidParameter(source: source, name: "context", message: "must be at least 1, got \(context)")
        }
        for (d, domain) in domains.enumerated() {
            for split in TextSplit.allCases where streams(split)[d].count < context + 1 {
                throw DataError.streamTooShort(source: source, domain: domain, split: split.rawValue,
                                               tokens: streams(split)[d].count, needed: context + 1)
            }
        }
    }
}

extension TextCorpus {
    /// The domain ids of each of `count` branch shards, as `ShardStrategy.domain` divides feature
    /// data: shard `i` holds the domains `d` with `d % count == i` (ascending). Pass a shard's ids
    /// to `TextBatches(domains:)`. Throws when `count < 1` or a shard would have no domain.
    public func shardDomains(_ count: Int) throws -> [[Int]] {
        guard count >= 1 else {
            throw DataError.invalidParameter(source: "shards", name: "count", message: "must be at least 1, got \(count)")
        }
        guard count <= domains.count else {
            throw DataError.invalidParameter(source: "shards", name: "count",
                message: "shard \(domains.count) has no domain: \(count) shards but \(domains.count) domains in \(source)")
        }
        return (0..<count).map { i in Array(stride(from: i, to: domains.count, by: count)) }
    }
}
