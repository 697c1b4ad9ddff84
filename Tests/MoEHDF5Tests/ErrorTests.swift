import MoEHDF5
import XCTest

final class ErrorTests: HDF5TestCase {
    func testOpeningAMissingFileNamesThePath() throws {
        let missing = path("does-not-exist.h5")
        XCTAssertThrowsError(try H5File.open(missing)) { error in
            guard let error = error as? HDF5Error, case .file(let file, let operation, let message) = error else {
                return XCTFail("unexpected \(error)")
            }
            XCTAssertEqual(file, missing)
            XCTAssertEqual(operation, "open file")
            XCTAssertTrue(message.lowercased().contains("no such file"), message)
            XCTAssertTrue(error.description.hasPrefix(missing), error.description)
        }
    }

    func testOpeningANonHDF5FileCarriesHDF5sMessage() throws {
        let text = path("not.h5")
        try "plain text".write(toFile: text, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try H5File.open(text)) { error in
            XCTAssertEqual((error as? HDF5Error)?.file, text)
            XCTAssertFalse("\(error)".contains("unknown HDF5 error"), "\(error)")
        }
    }

    func testMissingObjectsNameFileAndObject() throws {
        let filePath = path("objects.h5")
        let file = try H5File.create(filePath)
        try file.createGroup("g")
        XCTAssertThrowsError(try file.openDataset("g/missing")) { error in
            XCTAssertEqual(error as? HDF5Error, .notFound(file: filePath, object: "/g/missing"))
            XCTAssertEqual("\(error)", "\(filePath):/g/missing: no such object")
        }
        let group = try file.openGroup("g")
        XCTAssertThrowsError(try group.read("deeper/x", as: Float.self)) { error in
            XCTAssertEqual((error as? HDF5Error)?.object, "/g/deeper/x")
        }
        XCTAssertThrowsError(try file.openGroup("nothing")) { error in
            XCTAssertEqual((error as? HDF5Error)?.object, "/nothing")
        }
    }

    func testHDF5sInnermostMessageIsReported() throws {
        let filePath = path("dup.h5")
        let file = try H5File.create(filePath)
        try file.createDataset("x", [Float(1)])
        XCTAssertThrowsError(try file.createDataset("x", [Float(2)])) { error in
            guard case HDF5Error.object(let errorFile, let object, let operation, let message) = error else {
                return XCTFail("unexpected \(error)")
            }
            XCTAssertEqual(errorFile, filePath)
            XCTAssertEqual(object, "/x")
            XCTAssertEqual(operation, "create dataset")
            XCTAssertTrue(message.contains("already exists"), message)
        }
        // Writing into a read-only file fails with the file named.
        file.close()
        let readOnly = try H5File.open(filePath)
        XCTAssertThrowsError(try readOnly.createGroup("g")) { error in
            XCTAssertEqual((error as? HDF5Error)?.file, filePath)
        }
    }
}
