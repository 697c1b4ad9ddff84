import Foundation
import MoEHDF5
import XCTest

final class AtomicWriteTests: HDF5TestCase {
    struct Boom: Error {}

    func testAtomicWriteLeavesOnlyTheFinishedFile() throws {
        let target = path("task.h5")
        try H5File.createAtomically(target) { file in
            XCTAssertFalse(FileManager.default.fileExists(atPath: target), "not visible while being written")
            XCTAssertFalse(FileManager.default.fileExists(atPath: target + ".tmp"), "built in memory, written when complete")
            try file.createDataset("x", [Float(1), 2, 3])
            try file.setAttribute("status", "complete")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: target))
        XCTAssertFalse(FileManager.default.fileExists(atPath: target + ".tmp"))
        let file = try H5File.open(target)
        XCTAssertEqual(try file.read("x", as: Float.self).values, [1, 2, 3])
        XCTAssertEqual(try file.stringAttribute("status"), "complete")
    }

    func testFailingClosureLeavesNoFile() throws {
        let target = path("failed.h5")
        XCTAssertThrowsError(try H5File.createAtomically(target) { file in
            try file.createDataset("x", [Float(1)])
            throw Boom()
        }) { error in
            XCTAssertTrue(error is Boom)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: target))
        XCTAssertFalse(FileManager.default.fileExists(atPath: target + ".tmp"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), [])
    }

    func testReplacingKeepsOldFileUntilTheNewOneIsComplete() throws {
        let target = path("replace.h5")
        try H5File.createAtomically(target) { try $0.createScalar("version", Int64(1)) }
        XCTAssertThrowsError(try H5File.createAtomically(target) { file in
            try file.createScalar("version", Int64(2))
            throw Boom()
        })
        XCTAssertEqual(try H5File.open(target).readScalar("version", as: Int64.self), 1)
        try H5File.createAtomically(target) { try $0.createScalar("version", Int64(3)) }
        XCTAssertEqual(try H5File.open(target).readScalar("version", as: Int64.self), 3)
    }

    func testObjectsEscapingTheClosureAreRefused() throws {
        let target = path("leak.h5")
        var leaked: H5Dataset?
        XCTAssertThrowsError(try H5File.createAtomically(target) { file in
            leaked = try file.createDataset("x", [Float(1)])
        }) { error in
            XCTAssertTrue("\(error)".contains("still open"), "\(error)")
        }
        leaked = nil
        XCTAssertNil(leaked)
        XCTAssertFalse(FileManager.default.fileExists(atPath: target))
        XCTAssertFalse(FileManager.default.fileExists(atPath: target + ".tmp"))
    }

    /// A full disk, met by `/dev/full` (every write fails with ENOSPC) behind the tmp file's name:
    /// the error names the file being replaced and the system's cause, the previous version
    /// stays, nothing is left behind, and HDF5 keeps working (it never saw the failure).
    func testFullDiskNamesTheFileAndKeepsThePreviousVersion() throws {
        let target = path("model.h5")
        try H5File.createAtomically(target) { try $0.createScalar("version", Int64(1)) }
        try FileManager.default.createSymbolicLink(atPath: target + ".tmp", withDestinationPath: "/dev/full")
        XCTAssertThrowsError(try H5File.createAtomically(target) { file in
            try file.createDataset("x", [Float](repeating: 1, count: 100_000))
        }) { error in
            XCTAssertEqual(error as? HDF5Error, .system(path: target, operation: "writing", code: ENOSPC))
            XCTAssertEqual("\(error)", "no space left on device while writing \(target)")
            XCTAssertEqual((error as? HDF5Error)?.systemErrorCode, ENOSPC)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["model.h5"], "the tmp name is removed")
        XCTAssertEqual(try H5File.open(target).readScalar("version", as: Int64.self), 1)
        try H5File.createAtomically(target) { try $0.createScalar("version", Int64(2)) }
        XCTAssertEqual(try H5File.open(target).readScalar("version", as: Int64.self), 2)
    }

    /// A directory that does not exist (as a vanished or unmounted run directory) fails at the
    /// first system call, with its errno.
    func testMissingDirectoryFailsWithTheSystemError() throws {
        let target = path("gone/run.h5")
        XCTAssertThrowsError(try H5File.createAtomically(target) { try $0.createScalar("x", Int64(1)) }) { error in
            XCTAssertEqual(error as? HDF5Error, .system(path: target, operation: "writing", code: ENOENT))
        }
    }
}
