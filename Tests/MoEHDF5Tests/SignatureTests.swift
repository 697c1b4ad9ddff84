import Foundation
import MoEHDF5
import XCTest

/// `H5Signature` tells an HDF5 file from anything else before HDF5 opens it.
final class SignatureTests: HDF5TestCase {
    private let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]

    private func write(_ name: String, _ bytes: [UInt8]) -> String {
        FileManager.default.createFile(atPath: path(name), contents: Data(bytes))
        return path(name)
    }

    func testRealFilesAndUserBlocks() throws {
        try H5File.createAtomically(path("real.h5")) { try $0.createDataset("x", [Float(1)]) }
        XCTAssertNil(H5Signature.problem(at: path("real.h5")))
        // After a user block of 512 or 2048 bytes (HDF5 looks at 0, 512, 1024, 2048, …).
        XCTAssertNil(H5Signature.problem(at: write("block512.h5", [UInt8](repeating: 0, count: 512) + signature + [1, 2, 3])))
        XCTAssertNil(H5Signature.problem(at: write("block2048.h5", [UInt8](repeating: 7, count: 2048) + signature)))
        // Not at a power-of-two offset: not a signature.
        XCTAssertEqual(H5Signature.problem(at: write("offset.h5", [UInt8](repeating: 0, count: 100) + signature)), .noSignature(text: false))
    }

    func testWhatIsNotHDF5() throws {
        XCTAssertEqual(H5Signature.problem(at: path("absent.h5")), .missing)
        XCTAssertEqual(H5Signature.problem(at: directory.path), .directory)
        XCTAssertEqual(H5Signature.problem(at: write("empty.h5", [])), .empty)
        XCTAssertEqual(H5Signature.problem(at: write("short.h5", Array(signature.prefix(5)))), .noSignature(text: false))
        XCTAssertEqual(H5Signature.problem(at: write("text.h5", Array("a,b,y\n1,2,0\n".utf8))), .noSignature(text: true))
        XCTAssertEqual(H5Signature.problem(at: write("binary.h5", [0, 1, 2, 200, 255])), .noSignature(text: false))
        XCTAssertEqual(H5Signature.Problem.noSignature(text: true).description, "not an HDF5 file (no HDF5 signature; it looks like text)")
        XCTAssertEqual(H5Signature.Problem.empty.description, "not an HDF5 file: the file is empty (0 bytes)")
    }
}
