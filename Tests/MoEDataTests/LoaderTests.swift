import MoECore
@testable import MoEData
import MoEHDF5
import XCTest

final class LoaderTests: DataTestCase {
    func testHDF5RoundtripWithDomains() throws {
        let original = try makeDataset(rows: 25, classes: 6)
        try original.write(hdf5: path("data.h5"))
        let loaded = try Dataset.load(hdf5: path("data.h5"))
        XCTAssertTrue(loaded.bitwiseEqual(original))
        XCTAssertEqual(loaded.classes, 6, "the classes attribute survives even though label 5 is used")
        XCTAssertEqual(loaded.count, 25)
        XCTAssertEqual(loaded.features, 3)
        XCTAssertEqual(loaded.domainCount, 3)
        // The file is plain HDF5 in the §5.4 layout.
        let file = try H5File.open(path("data.h5"))
        XCTAssertEqual(try file.openDataset("x").dtype, .float32)
        XCTAssertEqual(try file.openDataset("y").dtype, .int64)
        XCTAssertEqual(try file.openDataset("domain").shape, [25])
    }

    func testHDF5GroupAndAcceptedTypes() throws {
        try H5File.createAtomically(path("typed.h5")) { file in
            let group = try file.createGroup("data/train")
            try group.createDataset("x", [0.5, 1.5, 2.5, 3.5], shape: [2, 2])  // float64
            try group.createDataset("y", [Int32(1), 0])                        // int32
        }
        let loaded = try Dataset.load(hdf5: path("typed.h5"), group: "data/train")
        XCTAssertEqual(loaded.x.array, [0.5, 1.5, 2.5, 3.5])
        XCTAssertEqual(loaded.y, [1, 0])
        XCTAssertNil(loaded.domain)
        XCTAssertEqual(loaded.classes, 2)
        XCTAssertThrowsError(try Dataset.load(hdf5: path("typed.h5"), group: "data/val")) { error in
            XCTAssertEqual(error as? DataError, .missingDataset(file: path("typed.h5"), name: "data/val"))
        }
    }

    /// Writes a file with the given datasets and returns the loader's error.
    private func loadError(_ build: (H5File) throws -> Void) throws -> DataError? {
        let target = path("bad-\(UUID().uuidString).h5")
        try H5File.createAtomically(target, build)
        do {
            _ = try Dataset.load(hdf5: target)
            return nil
        } catch let error as DataError {
            XCTAssertTrue(error.description.hasPrefix(target), error.description)
            return error
        }
    }

    func testHDF5ErrorsNameTheFileAndProblem() throws {
        let missingY = try loadError { try $0.createDataset("x", [Float](repeating: 0, count: 4), shape: [2, 2]) }
        guard case .missingDataset(_, "y") = missingY else { return XCTFail("got \(String(describing: missingY))") }

        let lengths = try loadError { file in
            try file.createDataset("x", [Float](repeating: 0, count: 6), shape: [3, 2])
            try file.createDataset("y", [Int64(0), 1])
        }
        guard case .shapeMismatch(_, let message) = lengths else { return XCTFail("got \(String(describing: lengths))") }
        XCTAssertTrue(message.contains("y has 2 labels but x has 3 rows"), message)

        let negative = try loadError { file in
            try file.createDataset("x", [Float](repeating: 0, count: 4), shape: [2, 2])
            try file.createDataset("y", [Int64(0), -3])
        }
        XCTAssertEqual(negative.map { "\($0)" }?.hasSuffix("y[1] is -3: labels are class ids 0, 1, 2, … (dataset 'y', row 1)"), true)

        let rank = try loadError { file in
            try file.createDataset("x", [Float](repeating: 0, count: 4))
            try file.createDataset("y", [Int64](repeating: 0, count: 4))
        }
        guard case .shapeMismatch = rank else { return XCTFail("got \(String(describing: rank))") }

        let type = try loadError { file in
            try file.createDataset("x", [Int64](repeating: 0, count: 4), shape: [2, 2])
            try file.createDataset("y", [Int64(0), 1])
        }
        guard case .wrongType(_, "x", _, "int64") = type else { return XCTFail("got \(String(describing: type))") }

        let floatLabels = try loadError { file in
            try file.createDataset("x", [Float](repeating: 0, count: 4), shape: [2, 2])
            try file.createDataset("y", [0.0, 1.0])
        }
        guard case .wrongType(_, "y", _, "float64") = floatLabels else { return XCTFail("got \(String(describing: floatLabels))") }

        XCTAssertThrowsError(try Dataset.load(hdf5: path("absent.h5"))) { error in
            XCTAssertEqual(error as? DataError, .notHDF5(file: path("absent.h5"), problem: .missing))
            XCTAssertEqual("\(error)", "\(path("absent.h5")): no such file")
        }
    }

    func testCSVWithHeaderLabelAndDomain() throws {
        let text = "f0, f1,label,domain\r\n1.5,2,0,1\r\n\r\n-3e2,4.25,2.0,0\r\n"
        try text.write(toFile: path("d.csv"), atomically: true, encoding: .utf8)
        let data = try Dataset.load(csv: path("d.csv"))
        XCTAssertEqual(data.x.shape, [2, 2])
        XCTAssertEqual(data.x.array, [1.5, 2, -300, 4.25])
        XCTAssertEqual(data.y, [0, 2])
        XCTAssertEqual(data.domain, [1, 0])
        XCTAssertEqual(data.classes, 3)

        // Label column "y" anywhere, no domain column.
        let simple = try Dataset.parseCSV("y,a,b,c\n1,0,0,0\n0,1,1,1\n", source: "inline.csv")
        XCTAssertEqual(simple.features, 3)
        XCTAssertNil(simple.domain)
        XCTAssertEqual(simple.x.array, [0, 0, 0, 1, 1, 1])
    }

    func testCSVErrorsGiveFileAndLine() throws {
        let source = path("bad.csv")
        try "a,b,y\n1,2,0\n3,oops,1\n".write(toFile: source, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Dataset.load(csv: source)) { error in
            XCTAssertEqual(error as? DataError, .badNumber(file: source, line: 3, column: "b", text: "oops"))
            XCTAssertEqual("\(error)", "\(source):3: column 'b': 'oops' is not a valid number")
        }
        XCTAssertThrowsError(try Dataset.parseCSV("a,b,y\n1,2,0\n\n1,2\n", source: "s.csv")) { error in
            XCTAssertEqual(error as? DataError, .wrongColumnCount(file: "s.csv", line: 4, expected: 3, found: 2))
            XCTAssertEqual("\(error)", "s.csv:4: expected 3 columns, found 2")
        }
        XCTAssertThrowsError(try Dataset.parseCSV("a,b,y\n1,2,0.5\n", source: "s.csv")) { error in
            XCTAssertEqual("\(error)", "s.csv:2: column 'y': '0.5' is not a whole number; labels are class ids 0, 1, 2, …")
        }
        XCTAssertThrowsError(try Dataset.parseCSV("a,b\n1,2\n", source: "s.csv")) { error in
            guard case DataError.badHeader(_, let message) = error else { return XCTFail("got \(error)") }
            XCTAssertTrue(message.contains("no label column"), message)
        }
        XCTAssertThrowsError(try Dataset.parseCSV("a,y\n1,-1\n", source: "s.csv")) { error in
            XCTAssertEqual(error as? DataError, .negativeInCSV(file: "s.csv", line: 2, column: "y", value: -1))
            XCTAssertEqual("\(error)", "s.csv:2: column 'y': -1 is negative; labels are class ids 0, 1, 2, …")
        }
        XCTAssertThrowsError(try Dataset.parseCSV("", source: "s.csv"))
        XCTAssertThrowsError(try Dataset.load(csv: path("missing.csv"))) { error in
            guard case DataError.unreadable(let file, _) = error else { return XCTFail("got \(error)") }
            XCTAssertEqual(file, path("missing.csv"))
        }
    }

    func testShippedDigits() throws {
        let file = repositoryRoot.appendingPathComponent("experiments/data/digits.h5").path
        let digits = try Dataset.load(hdf5: file)
        XCTAssertEqual(digits.x.shape, [1797, 64])
        XCTAssertEqual(digits.classes, 10)
        XCTAssertNil(digits.domain)
        XCTAssertEqual(digits.classCounts(), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
        XCTAssertEqual(digits.x.array.min(), 0)
        XCTAssertEqual(digits.x.array.max(), 16)
        XCTAssertEqual(Array(digits.x.array[0..<8]), [0, 0, 5, 13, 9, 1, 0, 0])
        XCTAssertEqual(Array(digits.y[0..<10]), Array(0..<10))
        let attributes = try H5File.open(file)
        XCTAssertEqual(try attributes.stringAttribute("licence"), "CC BY 4.0")
    }
}

/// HDF5's multi-line messages become one line naming the cause.
final class HDF5MessageTests: XCTestCase {
    func testOneLineMessages() {
        XCTAssertEqual(DataError.oneLine("truncated file: eof = 3000, sblock->base_addr = 0, stored_eof = 10048"),
                       "the file has 3000 of its 10048 bytes")
        XCTAssertEqual(DataError.oneLine("file read failed: time = Fri Dec  4 07:59:36 2026\n, filename = 'd', file descriptor = 3, errno = 21, error message = 'Is a directory', buf = 0x7f"),
                       "file read failed: Is a directory")
        XCTAssertEqual(DataError.oneLine("bad object header version number\nsecond line"), "bad object header version number")
    }
}
