import CHDF5
import Foundation
@testable import MoEHDF5
import XCTest

/// `H5Transfer`: every dataset read and write converts types through 64 KiB buffers instead of
/// HDF5's default 1 MiB ones, which it allocates zeroed on each call.
final class TransferBufferTests: HDF5TestCase {
    func testTheTransferListConvertsThrough64KiBBuffers() {
        XCTAssertNotEqual(H5Transfer.list, moe_H5P_DEFAULT(), "a list of its own, not the default (1 MiB)")
        XCTAssertEqual(H5Pget_buffer(H5Transfer.list, nil, nil), 64 * 1024)
    }

    /// Data many times the buffer converts in several passes and reads back unchanged: 10,000
    /// variable-length strings (160 KB of heap references), one 300 KB string, and 50,000
    /// doubles (400 KB) read as Float.
    func testDataLargerThanTheBufferConvertsInPassesUnchanged() throws {
        let strings = (0..<10_000).map { "string \($0): " + String(repeating: "é", count: $0 % 37) }
        let long = String((0..<300_000).map { Character(UnicodeScalar(UInt8(97 + $0 % 26))) })
        let doubles = (0..<50_000).map { Double($0) * 0.1 + 1e-9 }
        let file = try H5File.create(path("large.h5"))
        try file.createStrings("strings", strings)
        try file.createString("long", long)
        try file.createDataset("doubles", doubles)
        file.close()

        let reopened = try H5File.open(path("large.h5"))
        XCTAssertEqual(try reopened.readStrings("strings"), strings)
        XCTAssertEqual(try reopened.readString("long"), long)
        let floats = try reopened.read("doubles", as: Float.self)
        XCTAssertEqual(floats.shape, [50_000])
        XCTAssertEqual(floats.values, doubles.map(Float.init))
        XCTAssertEqual(try reopened.read("doubles", as: Double.self).values, doubles)
    }
}
