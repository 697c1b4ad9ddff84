import MoEHDF5
import XCTest

final class RoundtripTests: HDF5TestCase {
    /// Writes `values` with `shape`, reads them back with shape, dtype and via `read(into:)`.
    private func roundtrip<T: H5Numeric & Equatable>(_ values: [T], shape: [Int], dtype: H5DType,
                                                     file: H5File, name: String,
                                                     line: UInt = #line) throws {
        try file.createDataset(name, values, shape: shape)
        let dataset = try file.openDataset(name)
        XCTAssertEqual(try dataset.dtype, dtype, line: line)
        XCTAssertEqual(try dataset.shape, shape, line: line)
        let (read, readShape) = try dataset.readWithShape(T.self)
        XCTAssertEqual(read, values, line: line)
        XCTAssertEqual(readShape, shape, line: line)
        var buffer = [T](repeating: values[0], count: values.count)
        try buffer.withUnsafeMutableBufferPointer { try dataset.read(into: $0) }
        XCTAssertEqual(buffer, values, line: line)
    }

    func testEveryDTypeAndRank() throws {
        let file = try H5File.create(path("roundtrip.h5"))
        let shapes: [[Int]] = [[], [5], [3, 4], [2, 3, 4], [2, 1, 3, 2]]
        for (rank, shape) in shapes.enumerated() {
            let n = shape.reduce(1, *)
            try roundtrip((0..<n).map { Float($0) * 0.5 - 1 }, shape: shape, dtype: .float32, file: file, name: "f32_\(rank)")
            try roundtrip((0..<n).map { Double($0) / 3 }, shape: shape, dtype: .float64, file: file, name: "f64_\(rank)")
            try roundtrip((0..<n).map { Int64($0) * 1_000_000_007 - 5 }, shape: shape, dtype: .int64, file: file, name: "i64_\(rank)")
            try roundtrip((0..<n).map { Int32($0) - 7 }, shape: shape, dtype: .int32, file: file, name: "i32_\(rank)")
            try roundtrip((0..<n).map { $0 * 3 }, shape: shape, dtype: .int64, file: file, name: "int_\(rank)")
        }
        file.close()
        // Reopen read-only and read again: the data really is in the file.
        let reopened = try H5File.open(path("roundtrip.h5"))
        XCTAssertEqual(try reopened.read("f32_2", as: Float.self).shape, [3, 4])
        XCTAssertEqual(try reopened.read("i64_3", as: Int64.self).values[5], 5 * 1_000_000_007 - 5)
    }

    func testSpecialFloatValuesSurviveBitExactly() throws {
        let file = try H5File.create(path("special.h5"))
        let values: [Float] = [.infinity, -.infinity, .leastNonzeroMagnitude, -0.0, .greatestFiniteMagnitude, .nan]
        try file.createDataset("x", values)
        let read = try file.read("x", as: Float.self).values
        XCTAssertEqual(read.map(\.bitPattern), values.map(\.bitPattern))
    }

    func testBufferWriteAndEmptyDataset() throws {
        let file = try H5File.create(path("buffer.h5"))
        let values: [Float] = (0..<12).map(Float.init)
        _ = try values.withUnsafeBufferPointer { try file.createDataset("m", from: $0, shape: [4, 3]) }
        XCTAssertEqual(try file.read("m", as: Float.self).values, values)
        try file.createDataset("empty", [Double](), shape: [0, 3])
        let (empty, shape) = try file.read("empty", as: Double.self)
        XCTAssertEqual(empty, [])
        XCTAssertEqual(shape, [0, 3])
    }

    func testScalarsAndWidthConversion() throws {
        let file = try H5File.create(path("scalars.h5"))
        try file.createScalar("loss", 0.125)
        try file.createScalar("step", Int64(42))
        XCTAssertEqual(try file.openDataset("loss").shape, [])
        XCTAssertEqual(try file.readScalar("loss", as: Double.self), 0.125)
        XCTAssertEqual(try file.readScalar("step", as: Int64.self), 42)
        // Widths convert within a kind ...
        XCTAssertEqual(try file.readScalar("loss", as: Float.self), 0.125)
        XCTAssertEqual(try file.readScalar("step", as: Int32.self), 42)
        try file.createDataset("labels32", [Int32(1), 2, 3])
        XCTAssertEqual(try file.read("labels32", as: Int64.self).values, [1, 2, 3])
        // ... but not across kinds.
        XCTAssertThrowsError(try file.read("labels32", as: Float.self)) { error in
            guard case HDF5Error.typeMismatch(_, let object, let expected, let found) = error else {
                return XCTFail("unexpected \(error)")
            }
            XCTAssertEqual(object, "/labels32")
            XCTAssertEqual(expected, "float32")
            XCTAssertEqual(found, "int32")
        }
    }

    func testShapeMustMatchValueCount() throws {
        let file = try H5File.create(path("shape.h5"))
        XCTAssertThrowsError(try file.createDataset("bad", [Float](repeating: 0, count: 5), shape: [2, 3])) { error in
            guard case HDF5Error.shapeMismatch = error else { return XCTFail("unexpected \(error)") }
            XCTAssertTrue("\(error)".contains("/bad"))
        }
        try file.createDataset("ok", [Float](repeating: 0, count: 6), shape: [2, 3])
        var small = [Float](repeating: 0, count: 5)
        XCTAssertThrowsError(try small.withUnsafeMutableBufferPointer { try file.openDataset("ok").read(into: $0) })
    }
}
