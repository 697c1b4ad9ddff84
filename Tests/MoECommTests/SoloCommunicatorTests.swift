import XCTest
@testable import MoEComm

final class SoloCommunicatorTests: XCTestCase {
    func testGroupOfOneIsTheIdentity() throws {
        let c = SoloCommunicator()
        var x: [Float] = [1, 2, 3]
        try x.withUnsafeMutableBufferPointer { try c.allReduceSum($0.baseAddress!, count: 3) }
        XCTAssertEqual(x, [1, 2, 3])
        var out = [Float](repeating: 0, count: 3)
        let counts = try out.withUnsafeMutableBufferPointer { o in
            try x.withUnsafeBufferPointer { try c.allToAllV(send: $0.baseAddress!, sendCounts: [3], receive: o.baseAddress!, receiveCapacity: 3) }
        }
        XCTAssertEqual(counts, [3]); XCTAssertEqual(out, x)
        XCTAssertThrowsError(try x.withUnsafeBufferPointer { xs in
            try out.withUnsafeMutableBufferPointer { try c.allToAllV(send: xs.baseAddress!, sendCounts: [3], receive: $0.baseAddress!, receiveCapacity: 2) }
        }) { XCTAssertEqual($0 as? CollectiveError, .invalidArgument("allToAllV: receiving 3 floats into room for 2")) }
        let message: [UInt8] = [7, 8]
        try message.withUnsafeBytes { try c.send($0, to: 0) }
        var buffer = [UInt8](repeating: 0, count: 4)
        let n = try buffer.withUnsafeMutableBytes { try c.receive(into: $0, from: 0) }
        XCTAssertEqual(n, 2); XCTAssertEqual(Array(buffer[0..<2]), message)
    }
}
