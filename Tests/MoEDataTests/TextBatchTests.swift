import Foundation
import MoECore
import MoEData
import XCTest

final class TextBatchTests: XCTestCase {
    /// Three domains whose bytes identify them: domain d's token at position i is d·80 + i % 80,
    /// so a window's tokens tell which domain and offset it came from.
    func corpus(lengths: [Int] = [1000, 400, 2000]) throws -> TextCorpus {
        let texts = lengths.enumerated().map { d, n in (0..<n).map { UInt8(d * 80 + $0 % 80) } }
        return try TextCorpus.split(TextDomains(names: ["a", "b", "c"], texts: texts), train: 0.8, val: 0.1, source: "mem")
    }

    func testEvaluationWindowsCountAndOffsets() throws {
        XCTAssertEqual(TextWindows.count(tokens: 8, context: 8), 0)
        XCTAssertEqual(TextWindows.count(tokens: 9, context: 8), 1)
        XCTAssertEqual(TextWindows.count(tokens: 16, context: 8), 1)
        XCTAssertEqual(TextWindows.count(tokens: 17, context: 8), 2)
        let c = try corpus()
        let windows = c.evaluationWindows(.val, context: 16)  // val streams: 100, 40, 200 tokens
        XCTAssertEqual(windows.map(\.name), ["a", "b", "c"])
        XCTAssertEqual(windows.map(\.count), [6, 2, 12])  // (n − 1) / 16
        XCTAssertEqual(windows[2].offset(11), 176)
        XCTAssertEqual(windows[0].scoredTokens, 96)
        var rows = [Int32](repeating: -1, count: 2 * 17)
        rows.withUnsafeMutableBufferPointer { windows[1].fill($0.baseAddress!, windows: 0..<2) }
        let val = c.streams(.val)[1]
        XCTAssertEqual(rows, (val[0...16] + val[16...32]).map(Int32.init))
        XCTAssertEqual(rows[16], rows[17])  // a window's last token is the next one's first
    }

    func testTrainingWindowsArePureFunctionsOfSeedAndStep() throws {
        let c = try corpus()
        let a = try TextBatches(corpus: c, context: 32, batchSize: 7, seed: 11)
        let b = try TextBatches(corpus: c, context: 32, batchSize: 7, seed: 11)
        a.fill(step: 5)
        let first = Array(a.tokens), firstDomains = Array(a.domains)
        a.fill(step: 6)
        XCTAssertNotEqual(Array(a.tokens), first)
        b.fill(step: 5)  // another instance, no earlier steps
        XCTAssertEqual(Array(b.tokens), first)
        XCTAssertEqual(Array(b.domains), firstDomains)
        a.fill(step: 5)
        XCTAssertEqual(Array(a.tokens), first)
        let other = try TextBatches(corpus: c, context: 32, batchSize: 7, seed: 12)
        other.fill(step: 5)
        XCTAssertNotEqual(Array(other.tokens), first)
    }

    func testTrainingWindowsLieInsideOneDomainsTrainStream() throws {
        let c = try corpus()
        let context = 32
        let batches = try TextBatches(corpus: c, context: context, batchSize: 64, seed: 3)
        // Valid offsets: 800 − 32, 320 − 32, 1600 − 32.
        XCTAssertEqual(batches.windowCount, 768 + 288 + 1568)
        var seen = Set<Int>()
        for step in 0..<20 {
            batches.fill(step: step)
            for row in 0..<64 {
                let d = batches.domains[row], offset = batches.offsets[row]
                seen.insert(d)
                let train = c.streams(.train)[d]
                XCTAssertLessThanOrEqual(offset + context + 1, train.count)
                let window = (0...context).map { batches.tokens[row * (context + 1) + $0] }
                XCTAssertEqual(window, train[offset...(offset + context)].map(Int32.init))
            }
        }
        XCTAssertEqual(seen, [0, 1, 2])
    }

    func testDomainChoiceFollowsTheDocumentedDraws() throws {
        let c = try corpus()
        let batches = try TextBatches(corpus: c, context: 32, batchSize: 5, seed: 9, purpose: "p")
        batches.fill(step: 4)
        var rng = RNG(seed: 9, purpose: "p", stream: 4)
        let bounds = [0, 768, 768 + 288, 768 + 288 + 1568]
        for row in 0..<5 {
            let u = rng.int(below: bounds[3])
            let d = (0..<3).first { bounds[$0] <= u && u < bounds[$0 + 1] }!
            XCTAssertEqual(batches.domains[row], d)
            XCTAssertEqual(batches.offsets[row], u - bounds[d])
        }
    }

    func testRestrictedToAShard() throws {
        let c = try corpus()
        let batches = try TextBatches(corpus: c, context: 16, batchSize: 32, seed: 1, domains: [2, 0])
        XCTAssertEqual(batches.allowedDomains, [0, 2])
        for step in 0..<10 {
            batches.fill(step: step)
            XCTAssertTrue(batches.domains.allSatisfy { $0 == 0 || $0 == 2 })
        }
    }

    func testBatchErrors() throws {
        let c = try corpus(lengths: [1000, 50, 2000])  // b: 40 train tokens
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(message { try TextBatches(corpus: c, context: 40, batchSize: 4, seed: 0, domains: [1]) },
                       "mem: domain 'b' has 40 train tokens, fewer than context + 1 = 41 for one window")
        XCTAssertEqual(message { try TextBatches(corpus: c, context: 8, batchSize: 4, seed: 0, domains: [3]) },
                       "text batches: domains: domain id 3 is not in 0..<3")
        XCTAssertEqual(message { try TextBatches(corpus: c, context: 0, batchSize: 4, seed: 0) },
                       "text batches: context: must be at least 1, got 0")
        // A domain too short for a window is never drawn when others are allowed.
        let batches = try TextBatches(corpus: c, context: 40, batchSize: 64, seed: 0)
        batches.fill(step: 0)
        XCTAssertFalse(batches.domains.contains(1))
    }

    func testShardDomainsAsDomainShardsOfFeatureData() throws {
        let c = try corpus()
        XCTAssertEqual(try c.shardDomains(2), [[0, 2], [1]])
        XCTAssertEqual(try c.shardDomains(3), [[0], [1], [2]])
        XCTAssertThrowsError(try c.shardDomains(4)) { error in
            XCTAssertEqual("\(error)", "shards: count: shard 3 has no domain: 4 shards but 3 domains in mem")
        }
    }
}
