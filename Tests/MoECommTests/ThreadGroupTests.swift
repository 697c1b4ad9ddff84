import Foundation
import XCTest
@testable import MoEComm

/// The in-process test communicator keeps the `Communicator` contract: rank-order sums (the bits
/// of a serial sum), broadcasts, uneven all-to-alls, gathers in rank order, ordered messages,
/// and failures that end every rank instead of hanging.
final class ThreadGroupTests: XCTestCase {
    /// The all-to-all pattern of the multi-process tests: rank s sends `(s + 2d) % 4 · k` floats to d.
    private func allToAllCount(source s: Int, destination d: Int, unit k: Int) -> Int { ((s + 2 * d) % 4) * k }
    private func allToAllValue(source s: Int, destination d: Int, index i: Int) -> Float { Float(s * 1_000_000 + d * 10_000 + i) }

    func testAllReduceIsTheSerialRankOrderSumBitForBit() throws {
        for world in [1, 2, 3, 5] {
            let count = 1_001
            let results = try ThreadGroup.run(world: world) { comm -> [Float] in
                var x = (0..<count).map { patternValue(rank: comm.rank, index: $0) }
                try x.withUnsafeMutableBufferPointer { try comm.allReduceSum($0.baseAddress!, count: count) }
                var d = (0..<3).map { Double(patternValue(rank: comm.rank, index: $0)) * 1.000_000_1 }
                try comm.allReduceSum(&d)
                return x + d.map(Float.init)
            }
            var serial = (0..<count).map { patternValue(rank: 0, index: $0) }
            for r in 1..<max(world, 1) where world > 1 { for i in 0..<count { serial[i] += patternValue(rank: r, index: i) } }
            var doubles = (0..<3).map { Double(patternValue(rank: 0, index: $0)) * 1.000_000_1 }
            for r in 1..<max(world, 1) where world > 1 { for i in 0..<3 { doubles[i] += Double(patternValue(rank: r, index: i)) * 1.000_000_1 } }
            let expected = serial + doubles.map(Float.init)
            for (r, got) in results.enumerated() {
                XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "world \(world) rank \(r)")
            }
            if world >= 3 {
                var reversed = (0..<count).map { patternValue(rank: world - 1, index: $0) }
                for r in stride(from: world - 2, through: 0, by: -1) { for i in 0..<count { reversed[i] += patternValue(rank: r, index: i) } }
                XCTAssertNotEqual(reversed.map(\.bitPattern), serial.map(\.bitPattern), "the pattern shows the order of additions")
            }
        }
    }

    func testBroadcastAllToAllVAllGatherVAndMessages() throws {
        let world = 3, k = 5
        let results = try ThreadGroup.run(world: world) { [self] comm -> [String] in
            let me = comm.rank
            var out: [String] = []
            // Broadcast from rank 1.
            var bytes = [UInt8](repeating: UInt8(me), count: 7)
            try bytes.withUnsafeMutableBytes { try comm.broadcast($0.baseAddress!, bytes: 7, root: 1) }
            out.append(bytes.map(String.init).joined())
            // All-to-all with uneven counts (zeros included): rank s sends (s + 2d) % 4 · k floats to d.
            let counts = (0..<world).map { d in allToAllCount(source: me, destination: d, unit: k) }
            var send: [Float] = []
            for d in 0..<world { send += (0..<counts[d]).map { allToAllValue(source: me, destination: d, index: $0) } }
            var receive = [Float](repeating: -1, count: 4 * k * world)
            let got = try comm.allToAllV(send: send, sendCounts: counts, receive: &receive, receiveCapacity: receive.count)
            XCTAssertEqual(got, (0..<world).map { allToAllCount(source: $0, destination: me, unit: k) })
            var expected: [Float] = []
            for s in 0..<world { expected += (0..<got[s]).map { allToAllValue(source: s, destination: me, index: $0) } }
            XCTAssertEqual(Array(receive.prefix(expected.count)), expected, "rank \(me)")
            // All-gather of different lengths, visited in rank order.
            let mine = [UInt8](repeating: UInt8(65 + me), count: me)
            var seen = ""
            try mine.withUnsafeBytes { b in
                try comm.allGatherV(b) { r, data in seen += "\(r):" + String(decoding: data, as: UTF8.self) + " " }
            }
            out.append(seen)
            // A ring of messages, two per pair, in order.
            let next = (me + 1) % world, previous = (me + world - 1) % world
            for i in 0..<2 { try [UInt8(me * 10 + i)].withUnsafeBytes { try comm.send($0, to: next) } }
            var buffer = [UInt8](repeating: 0, count: 4)
            for _ in 0..<2 {
                let n = try buffer.withUnsafeMutableBytes { try comm.receive(into: $0, from: previous) }
                out.append("\(n):\(buffer[0])")
            }
            return out
        }
        for r in 0..<world {
            let previous = (r + world - 1) % world
            XCTAssertEqual(results[r], ["1111111", "0: 1:B 2:CC ", "1:\(previous * 10)", "1:\(previous * 10 + 1)"], "rank \(r)")
        }
    }

    func testAFailingRankAbortsTheOthers() {
        XCTAssertThrowsError(try ThreadGroup.run(world: 3) { comm -> Int in
            if comm.rank == 2 { throw CollectiveError.invalidArgument("rank 2 gives up") }
            try comm.barrier()
            return 0
        }) { XCTAssertEqual($0 as? CollectiveError, .invalidArgument("rank 2 gives up"), "the first-hand error, not the others' aborts") }

        let group = ThreadGroup(worldSize: 2, timeout: 0.3)
        let comm = group.communicators()[0]
        XCTAssertThrowsError(try comm.barrier()) {
            XCTAssertEqual($0 as? CollectiveError, .timedOut(operation: "barrier", seconds: 0.3, waitingFor: [1]))
        }
        group.abort(by: 1)
        XCTAssertThrowsError(try comm.barrier()) { XCTAssertEqual($0 as? CollectiveError, .aborted(byRank: 1)) }
    }

    func testStatisticsCountCallsAndBytes() throws {
        let stats = try ThreadGroup.run(world: 2) { comm -> CommStatistics in
            var x = [Float](repeating: 1, count: 100)
            try x.withUnsafeMutableBufferPointer { try comm.allReduceSum($0.baseAddress!, count: 100) }
            try comm.barrier()
            return comm.statistics
        }
        for s in stats {
            XCTAssertEqual(s.calls, 2)
            XCTAssertEqual(s.bytesSent, 400)
            XCTAssertEqual(s.bytesReceived, 400)
        }
    }
}
