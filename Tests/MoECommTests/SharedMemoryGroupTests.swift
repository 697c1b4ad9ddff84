import Foundation
import XCTest
@testable import MoEComm

/// Multi-process tests of `SharedMemoryGroup`: each test starts `moe-comm-peer` processes on a
/// fresh unnamed `SharedMemorySegment` (inherited by descriptor) and compares their outputs with what the contract says. Small slots
/// (4 KiB … 16 KiB) make the chunked and multi-round paths run on small data.
final class SharedMemoryGroupTests: XCTestCase {
    private func group(_ world: Int, slotBytes: Int = 8 << 20) throws -> PeerGroup {
        let g = try PeerGroup(world: world, slotBytes: slotBytes)
        addTeardownBlock { g.finish() }
        return g
    }

    private func assertAllSucceeded(_ outcomes: [Int: PeerGroup.Outcome], _ world: Int, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(outcomes.count, world, file: file, line: line)
        for (r, o) in outcomes { XCTAssertEqual(o.status, 0, "rank \(r): \(o.text.prefix(300))", file: file, line: line) }
    }

    func testAllReduceIsTheSerialRankOrderSumBitForBit() throws {
        for world in [2, 3, 4] {
            let count = 10_037 // 40 148 bytes over 16 KiB slots: 3 chunks, uneven parts
            let g = try group(world, slotBytes: 16 << 10)
            try g.start("allreduce", count: count)
            let outcomes = g.wait()
            assertAllSucceeded(outcomes, world)
            var serial = (0..<count).map { patternValue(rank: 0, index: $0) }
            var reversed = (0..<count).map { patternValue(rank: world - 1, index: $0) }
            for r in 1..<world { for i in 0..<count { serial[i] += patternValue(rank: r, index: i) } }
            for r in stride(from: world - 2, through: 0, by: -1) { for i in 0..<count { reversed[i] += patternValue(rank: r, index: i) } }
            for r in 0..<world {
                let got = outcomes[r]?.output.floats() ?? []
                XCTAssertEqual(got.count, count, "world \(world) rank \(r)")
                XCTAssertTrue(got.map(\.bitPattern) == serial.map(\.bitPattern), "world \(world) rank \(r): not the rank-order sum")
            }
            if world > 2 { // the pattern is sensitive to the order of additions
                XCTAssertNotEqual(serial.map(\.bitPattern), reversed.map(\.bitPattern))
            }
            g.finish()
        }
    }

    func testAllReduceDoubleInRankOrder() throws {
        let world = 3, count = 1_500 // 12 000 bytes over 4 KiB slots: 3 chunks
        let g = try group(world, slotBytes: 4096)
        try g.start("allreduce-double", count: count)
        let outcomes = g.wait()
        assertAllSucceeded(outcomes, world)
        var serial = (0..<count).map { Double(patternValue(rank: 0, index: $0)) * 1.000_000_1 }
        for r in 1..<world { for i in 0..<count { serial[i] += Double(patternValue(rank: r, index: i)) * 1.000_000_1 } }
        for r in 0..<world {
            XCTAssertEqual(outcomes[r]?.output.doubles().map(\.bitPattern), serial.map(\.bitPattern), "rank \(r)")
        }
    }

    func testBroadcastFromRankOneInChunks() throws {
        for world in [2, 4] {
            let count = 10_001
            let g = try group(world, slotBytes: 4096)
            try g.start("broadcast", count: count)
            let outcomes = g.wait()
            assertAllSucceeded(outcomes, world)
            let expected = Data((0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) })
            for r in 0..<world { XCTAssertEqual(outcomes[r]?.output, expected, "world \(world) rank \(r)") }
            g.finish()
        }
    }

    func testAllToAllVUnevenCountsWithZerosLandInRankOrder() throws {
        // unit 3: one round; unit 700 (up to 2 100 floats per destination): several rounds of 4 KiB slots.
        for (world, unit) in [(2, 3), (3, 700), (4, 700), (4, 3)] {
            let g = try group(world, slotBytes: 4096)
            try g.start("alltoallv", count: unit)
            let outcomes = g.wait()
            assertAllSucceeded(outcomes, world)
            for r in 0..<world {
                let data = outcomes[r]?.output ?? Data()
                guard let newline = data.firstIndex(of: UInt8(ascii: "\n")) else { XCTFail("rank \(r): no counts"); continue }
                let counts = String(decoding: data[data.startIndex..<newline], as: UTF8.self).split(separator: " ").compactMap { Int($0) }
                let expectedCounts = (0..<world).map { ((($0 + 2 * r) % 4) * unit) }
                XCTAssertEqual(counts, expectedCounts, "world \(world) rank \(r)")
                XCTAssertTrue(expectedCounts.contains(0) || world == 2 && r == 1, "the pattern includes zero counts")
                var expected: [Float] = []
                for s in 0..<world { for i in 0..<expectedCounts[s] { expected.append(Float(s * 1_000_000 + r * 10_000 + i)) } }
                XCTAssertEqual(Data(data[(newline + 1)...]).floats(), expected, "world \(world) rank \(r)")
            }
            g.finish()
        }
    }

    func testAllGatherVVisitsEveryRankInOrder() throws {
        for (world, count) in [(2, 100), (3, 3_000), (4, 100)] {
            let g = try group(world, slotBytes: 4096)
            try g.start("allgatherv", count: count)
            let outcomes = g.wait()
            assertAllSucceeded(outcomes, world)
            var expected = ""
            for r in 0..<world {
                let bytes = (0..<(r == 0 ? 0 : count * (r + 1))).map { UInt8(truncatingIfNeeded: $0 &+ r &* 31) }
                var h: UInt64 = 1469598103934665603
                for x in bytes { h = (h ^ UInt64(x)) &* 1099511628211 }
                expected += "\(r) \(bytes.count) \(h)\n"
            }
            for r in 0..<world { XCTAssertEqual(outcomes[r]?.text, expected, "world \(world) rank \(r)") }
            g.finish()
        }
    }

    func testSendReceiveRingKeepsOrderAndStreamsALargeMessage() throws {
        for world in [2, 3, 4] {
            let g = try group(world)
            try g.start("sendrecv", count: 1_000_003) // > the 256 KiB mailbox
            let outcomes = g.wait()
            assertAllSucceeded(outcomes, world)
            for r in 0..<world {
                let previous = (r + world - 1) % world
                let expected = (0..<20).map { "\(previous)->\(r) #\($0)\n" }.joined() + "large ok\n"
                XCTAssertEqual(outcomes[r]?.text, expected, "world \(world) rank \(r)")
            }
            g.finish()
        }
    }

    func testBarrierLoop() throws {
        let g = try group(4)
        try g.start("barrier", count: 2_000)
        let outcomes = g.wait()
        assertAllSucceeded(outcomes, 4)
        for r in 0..<4 { XCTAssertEqual(outcomes[r]?.text, "barriers 2000\n") }
    }

    /// Each rank inherits its own descriptor at spawn: the starter may close its handle at once
    /// and the group still works (the scheduler keeps its handle only to abort).
    func testRanksNeedNotTheStartersDescriptor() throws {
        let g = try group(3, slotBytes: 4096)
        try g.start("allreduce", count: 3_000)
        g.closeSegment()
        let outcomes = g.wait()
        assertAllSucceeded(outcomes, 3)
        XCTAssertEqual(outcomes[2]?.output.count, 3_000 * 4)
    }

    func testKilledPeerMakesTheOthersFailWithPeerDied() throws {
        for world in [2, 3, 4] {
            let g = try group(world, slotBytes: 4096)
            let victim = world - 1
            try g.start("allreduce", ranks: Array(0..<victim), count: 10_000, timeout: 60)
            try g.start("hang", ranks: [victim], timeout: 60)
            Thread.sleep(forTimeInterval: 0.5) // the others are blocked inside the allReduce
            let pid = g.processes[victim]?.pid ?? 0
            let killed = Date()
            g.kill9(victim)
            let outcomes = g.wait(limit: 10)
            let elapsed = Date().timeIntervalSince(killed)
            XCTAssertLessThan(elapsed, 30, "survivors notice the death itself, long before the 60 s time-out")
            for r in 0..<victim {
                XCTAssertEqual(outcomes[r]?.status, 1)
                XCTAssertEqual(outcomes[r]?.text, "ERROR \(CollectiveError.peerDied(rank: victim, pid: pid))\n", "world \(world) rank \(r)")
            }
            g.finish()
        }
    }

    func testPeerExitingMidCollectiveMakesTheOthersFail() throws {
        let g = try group(3, slotBytes: 4096)
        try g.start("die", count: 5_000, timeout: 60)
        let started = Date()
        let outcomes = g.wait(limit: 10)
        XCTAssertLessThan(Date().timeIntervalSince(started), 30, "noticed long before the 60 s time-out")
        XCTAssertEqual(outcomes[2]?.status, 3)
        for r in [0, 1] {
            XCTAssertEqual(outcomes[r]?.status, 1)
            XCTAssertTrue(outcomes[r]?.text.hasPrefix("ERROR collective group: rank 2 (process ") == true, outcomes[r]?.text ?? "")
        }
    }

    func testSchedulerAbortUnblocksWaiters() throws {
        let g = try group(3)
        try g.start("wait", ranks: [0, 1], timeout: 60) // rank 2 never comes
        Thread.sleep(forTimeInterval: 0.7)
        let aborted = Date()
        g.abort()
        let outcomes = g.wait(limit: 10)
        XCTAssertLessThan(Date().timeIntervalSince(aborted), 30, "the abort, not the 60 s time-out, ends the wait")
        for r in [0, 1] {
            XCTAssertEqual(outcomes[r]?.status, 1)
            XCTAssertEqual(outcomes[r]?.text, "ERROR \(CollectiveError.aborted(byRank: nil))\n", "rank \(r)")
        }
    }

    func testAbsentRankTimesOutNamingIt() throws {
        let g = try group(3)
        let started = Date()
        try g.start("wait", ranks: [0, 1], timeout: 2)
        let outcomes = g.wait(limit: 10)
        XCTAssertLessThan(Date().timeIntervalSince(started), 6)
        let timedOut = "ERROR \(CollectiveError.timedOut(operation: "barrier", seconds: 2, waitingFor: [2]))\n"
        XCTAssertEqual(timedOut, "ERROR collective group: barrier timed out after 2 s waiting for rank 2\n")
        for r in [0, 1] { XCTAssertEqual(outcomes[r]?.status, 1, "rank \(r)") }
        // The first to time out aborts the group; the other may report that abort instead.
        XCTAssertTrue([0, 1].contains { outcomes[$0]?.text == timedOut }, "\(outcomes.mapValues(\.text))")
        for r in [0, 1] {
            let text = outcomes[r]?.text ?? ""
            XCTAssertTrue(text == timedOut || text == "ERROR \(CollectiveError.aborted(byRank: 1 - r))\n", text)
        }
    }

    /// 16 MiB per rank over the default 8 MiB slots (two chunks per call), six calls in a row:
    /// every value is exact (x = rank, summed over 2 ranks six times: 1, 2, 4, …, 32) and each
    /// rank's statistics count the six calls and the bytes of the contract (its whole buffer sent
    /// each call, and received: its half summed from the peer's slot plus the other half of the result).
    /// The time per call is measured by `make bench` (the data-parallel step's communication).
    func testRepeatedLargeAllReduceIsExactAndCountedInTheStatistics() throws {
        let g = try group(2)
        let count = 4 << 20
        try g.start("repeat", count: count)
        let outcomes = g.wait(limit: 60)
        assertAllSucceeded(outcomes, 2)
        let bytes = 6 * count * 4
        for r in 0..<2 {
            XCTAssertEqual(outcomes[r]?.text, "32.0 32.0 6 \(bytes) \(bytes)\n", "rank \(r)")
        }
    }
}
