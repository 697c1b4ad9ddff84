import Foundation
import MoEHDF5
import XCTest

final class ErrorTests: HDF5TestCase {
    /// A failed system call inside HDF5's file driver ends as `.system` with its errno, in one
    /// line (HDF5's own description adds a timestamp, buffer addresses and sizes).
    func testOpeningAMissingFileNamesThePathAndTheSystemError() throws {
        let missing = path("does-not-exist.h5")
        XCTAssertThrowsError(try H5File.open(missing)) { error in
            XCTAssertEqual(error as? HDF5Error, .system(path: missing, operation: "opening", code: ENOENT))
            XCTAssertEqual("\(error)", "no such file or directory while opening \(missing)")
        }
        XCTAssertThrowsError(try H5File.open(directory.path)) { error in
            XCTAssertEqual("\(error)", "is a directory while opening \(directory.path)")
        }
    }

    /// A file written directly (not atomically) whose flush fails, as on a full disk (here the
    /// file-size limit makes HDF5's writes fail with EFBIG): the error carries the errno in one
    /// line, and closing the file afterwards (here and in `deinit`) does not crash. Nor does this
    /// test process at exit: HDF5's exit handler, which dies with SIGSEGV on a file whose flush
    /// failed (HDF5 1.10.8), is not installed (`HDF5Library`).
    func testFailedFlushOfADirectFileIsReportedAndTheFileAbandonedSafely() throws {
        let file = try H5File.create(path("limited.h5"))
        let previousHandler = signal(SIGXFSZ, SIG_IGN)
        var previousLimit = rlimit()
        getrlimit(RLIMIT_FSIZE_VALUE, &previousLimit)
        var limit = previousLimit
        limit.rlim_cur = 4096
        setrlimit(RLIMIT_FSIZE_VALUE, &limit)
        defer {
            setrlimit(RLIMIT_FSIZE_VALUE, &previousLimit)
            signal(SIGXFSZ, previousHandler)
        }
        // Raw data may already fail here; the file's metadata is written at the flush.
        _ = try? file.createDataset("x", (0..<100_000).map { Float($0).squareRoot() })
        XCTAssertThrowsError(try file.flush()) { error in
            XCTAssertEqual((error as? HDF5Error)?.systemErrorCode, EFBIG, "\(error)")
            XCTAssertEqual("\(error)", "file too large while writing \(path("limited.h5"))")
        }
        file.close()
        file.close()
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

/// `RLIMIT_FSIZE` as `setrlimit` takes it (Glibc imports the constant as an enum case).
#if canImport(Glibc)
private let RLIMIT_FSIZE_VALUE = __rlimit_resource_t(RLIMIT_FSIZE.rawValue)
#else
private let RLIMIT_FSIZE_VALUE = RLIMIT_FSIZE
#endif
