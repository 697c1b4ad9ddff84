import Foundation
import XCTest
@testable import MoEComm

/// In-process tests of `SharedMemoryGroup`: the file's life cycle, attach errors, a group of one.
final class SharedMemoryGroupLocalTests: XCTestCase {
    private func freshPath() -> String {
        let path = "/dev/shm/moe-run-test-\(getpid())-\(UUID().uuidString.prefix(8))"
        addTeardownBlock { SharedMemoryGroup.remove(path: path) }
        return path
    }

    func testLayoutIsAlignedAndFitsTheFile() throws {
        let layout = SharedMemoryLayout(worldSize: 4, slotBytes: SharedMemoryLayout.normalisedSlotBytes(5000))
        XCTAssertEqual(layout.slotBytes, 5056)
        XCTAssertEqual(layout.headerBytes % 4096, 0)
        XCTAssertGreaterThanOrEqual(layout.headerBytes, layout.mailboxOffset(from: 3, to: 3) + SharedMemoryLayout.mailboxControlBytes)
        XCTAssertEqual(layout.slotOffset(0), layout.resultOffset + layout.slotBytes)
        XCTAssertEqual(layout.totalBytes, layout.ringOffset(from: 3, to: 3) + layout.mailboxBytes)
        for part in 0...4 { XCTAssertEqual(SharedMemoryGroup.partBoundary(part, of: 4, count: 1000, alignment: 16) % (part == 4 ? 1000 : 16), 0) }
    }

    func testAttachErrors() throws {
        let path = freshPath()
        XCTAssertThrowsError(try SharedMemoryGroup(path: path, rank: 0, worldSize: 2)) { error in
            guard case CollectiveError.sharedMemory(let p, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(p, path)
        }
        try SharedMemoryGroup.create(path: path, worldSize: 2, slotBytes: 4096)
        XCTAssertThrowsError(try SharedMemoryGroup(path: path, rank: 0, worldSize: 3)) {
            XCTAssertEqual($0 as? CollectiveError, .sharedMemory(path: path, message: "a group of 2, expected a group of 3"))
        }
        XCTAssertThrowsError(try SharedMemoryGroup(path: path, rank: 2, worldSize: 2)) {
            XCTAssertEqual($0 as? CollectiveError, .invalidArgument("rank 2 out of range 0..<2"))
        }
        XCTAssertThrowsError(try SharedMemoryGroup.create(path: path, worldSize: 0)) {
            XCTAssertEqual($0 as? CollectiveError, .invalidArgument("world size 0 out of range 1...64"))
        }
        let g = try SharedMemoryGroup(path: path, rank: 0, worldSize: 2)
        var byte: UInt8 = 0
        XCTAssertThrowsError(try g.broadcast(&byte, bytes: 1, root: 5)) {
            XCTAssertEqual($0 as? CollectiveError, .invalidArgument("broadcast root 5 out of range 0..<2"))
        }
        SharedMemoryGroup.abort(path: path)
        XCTAssertThrowsError(try g.barrier()) { XCTAssertEqual($0 as? CollectiveError, .aborted(byRank: nil)) }
        XCTAssertThrowsError(try SharedMemoryGroup(path: path, rank: 1, worldSize: 2)) {
            XCTAssertEqual($0 as? CollectiveError, .aborted(byRank: nil))
        }
        SharedMemoryGroup.abort(path: path + "-missing") // must not throw or crash
        SharedMemoryGroup.remove(path: path)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }

    func testGroupOfOneAndMessagesToSelf() throws {
        let path = freshPath()
        try SharedMemoryGroup.create(path: path, worldSize: 1, slotBytes: 4096)
        let g = try SharedMemoryGroup(path: path, rank: 0, worldSize: 1, timeout: 2)
        var x: [Float] = [1, 2, 3]
        try x.withUnsafeMutableBufferPointer { try g.allReduceSum($0.baseAddress!, count: 3) }
        XCTAssertEqual(x, [1, 2, 3])
        try g.barrier()
        for m in 0..<3 { try [UInt8](repeating: UInt8(m), count: m + 1).withUnsafeBytes { try g.send($0, to: 0) } }
        var buffer = [UInt8](repeating: 9, count: 8)
        for m in 0..<3 {
            let n = try buffer.withUnsafeMutableBytes { try g.receive(into: $0, from: 0) }
            XCTAssertEqual(Array(buffer[0..<n]), [UInt8](repeating: UInt8(m), count: m + 1))
        }
        let huge = [UInt8](repeating: 0, count: 1 << 20)
        XCTAssertThrowsError(try huge.withUnsafeBytes { try g.send($0, to: 0) })
        XCTAssertEqual(g.statistics.calls, 9)
        XCTAssertEqual(g.statistics.bytesSent, 6)
    }
}
