import Foundation
import XCTest
@testable import MoEComm

/// In-process tests of `SharedMemoryGroup`: the segment's life cycle, attach errors, a group of one.
final class SharedMemoryGroupLocalTests: XCTestCase {
    /// The moe-run entries of /dev/shm.
    private func shmEntries() -> Set<String> {
        Set(((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).filter { $0.hasPrefix("moe-run") })
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

    /// The segment is a memfd: it has no name in /dev/shm (nothing a kill could leave there), its
    /// descriptor is close-on-exec until it is passed on, and its size is sealed.
    func testTheSegmentHasNoNameAndASealedSize() throws {
        let before = shmEntries()
        let segment = try SharedMemorySegment(worldSize: 3, slotBytes: 4096, name: "moe-run-unit")
        let target = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(segment.descriptor)")
        XCTAssertEqual(target, "/memfd:moe-run-unit (deleted)")
        XCTAssertEqual(shmEntries().subtracting(before), [], "nothing named in /dev/shm")
        XCTAssertEqual(fcntl(segment.descriptor, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC)
        var st = stat()
        XCTAssertEqual(fstat(segment.descriptor, &st), 0)
        XCTAssertEqual(Int(st.st_size), segment.bytes)
        XCTAssertEqual(segment.bytes, SharedMemoryLayout(worldSize: 3, slotBytes: 4096).totalBytes)
        XCTAssertEqual(ftruncate(segment.descriptor, 4096), -1, "a sealed size cannot shrink under a mapping")
        XCTAssertEqual(errno, EPERM)
        XCTAssertEqual(ftruncate(segment.descriptor, off_t(segment.bytes * 2)), -1, "nor grow")
    }

    func testAttachErrors() throws {
        XCTAssertThrowsError(try SharedMemoryGroup(descriptor: 9_999, rank: 0, worldSize: 2)) {
            XCTAssertEqual($0 as? CollectiveError, .sharedMemory(segment: "descriptor 9999", message: "not an open descriptor: Bad file descriptor"))
        }
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(devNull) }
        XCTAssertThrowsError(try SharedMemoryGroup(descriptor: devNull, rank: 0, worldSize: 2)) {
            XCTAssertEqual($0 as? CollectiveError, .sharedMemory(segment: "descriptor \(devNull)", message: "not a collective group (0 bytes)"))
        }
        let segment = try SharedMemorySegment(worldSize: 2, slotBytes: 4096)
        let fd = segment.descriptor
        XCTAssertThrowsError(try SharedMemoryGroup(descriptor: fd, rank: 0, worldSize: 3)) {
            XCTAssertEqual($0 as? CollectiveError, .sharedMemory(segment: "descriptor \(fd)", message: "a group of 2, expected a group of 3"))
        }
        XCTAssertThrowsError(try SharedMemoryGroup(descriptor: fd, rank: 2, worldSize: 2)) {
            XCTAssertEqual($0 as? CollectiveError, .invalidArgument("rank 2 out of range 0..<2"))
        }
        XCTAssertThrowsError(try SharedMemorySegment(worldSize: 0)) {
            XCTAssertEqual($0 as? CollectiveError, .invalidArgument("world size 0 out of range 1...64"))
        }
        let g = try SharedMemoryGroup(descriptor: fd, rank: 0, worldSize: 2)
        var byte: UInt8 = 0
        XCTAssertThrowsError(try g.broadcast(&byte, bytes: 1, root: 5)) {
            XCTAssertEqual($0 as? CollectiveError, .invalidArgument("broadcast root 5 out of range 0..<2"))
        }
        segment.abort()
        segment.abort() // a second abort changes nothing
        XCTAssertThrowsError(try g.barrier()) { XCTAssertEqual($0 as? CollectiveError, .aborted(byRank: nil)) }
        XCTAssertThrowsError(try SharedMemoryGroup(descriptor: fd, rank: 1, worldSize: 2)) {
            XCTAssertEqual($0 as? CollectiveError, .aborted(byRank: nil))
        }
    }

    /// A rank keeps working on its mapping after every descriptor is closed (the scheduler drops
    /// its segment when the attempt ends; the ranks close theirs once attached).
    func testTheMappingOutlivesTheDescriptors() throws {
        var segment: SharedMemorySegment? = try SharedMemorySegment(worldSize: 1, slotBytes: 4096)
        let g = try SharedMemoryGroup(descriptor: segment!.descriptor, rank: 0, worldSize: 1, timeout: 2)
        segment = nil
        var x: [Float] = [1, 2, 3]
        try x.withUnsafeMutableBufferPointer { try g.allReduceSum($0.baseAddress!, count: 3) }
        try [UInt8](repeating: 7, count: 5).withUnsafeBytes { try g.send($0, to: 0) }
        var buffer = [UInt8](repeating: 0, count: 8)
        XCTAssertEqual(try buffer.withUnsafeMutableBytes { try g.receive(into: $0, from: 0) }, 5)
        XCTAssertEqual(Array(buffer[0..<5]), [7, 7, 7, 7, 7])
    }

    func testGroupOfOneAndMessagesToSelf() throws {
        let segment = try SharedMemorySegment(worldSize: 1, slotBytes: 4096)
        let g = try SharedMemoryGroup(descriptor: segment.descriptor, rank: 0, worldSize: 1, timeout: 2)
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
