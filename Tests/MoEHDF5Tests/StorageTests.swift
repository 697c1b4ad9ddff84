import MoEHDF5
import XCTest

final class StorageTests: HDF5TestCase {
    func testSmallDatasetsAreContiguousLargeOnesChunkedAndCompressed() throws {
        let file = try H5File.create(path("storage.h5"))
        let small = [Float](repeating: 1, count: 1000)                  // 4 KB
        let large = (0..<200_000).map { Float($0 % 17) }                 // 800 KB, compressible
        try file.createDataset("small", small)
        try file.createDataset("large", large, shape: [2000, 100])

        let smallSet = try file.openDataset("small")
        XCTAssertEqual(try smallSet.layout, .contiguous)
        XCTAssertEqual(try smallSet.filterCount, 0)
        XCTAssertNil(try smallSet.chunkShape)

        let largeSet = try file.openDataset("large")
        XCTAssertEqual(try largeSet.layout, .chunked)
        XCTAssertEqual(try largeSet.filterCount, 2)  // shuffle + deflate
        let chunk = try XCTUnwrap(try largeSet.chunkShape)
        XCTAssertLessThanOrEqual(chunk.reduce(4, *), H5Storage.targetChunkBytes)
        XCTAssertLessThan(largeSet.storageSize, large.count * 4 / 4, "compressed to under a quarter")
        XCTAssertEqual(try largeSet.read(Float.self), large)
    }

    func testExplicitStoragePolicies() throws {
        let file = try H5File.create(path("policy.h5"))
        let values = (0..<100_000).map(Double.init)
        try file.createDataset("plain", values, storage: .contiguous)
        try file.createDataset("packed", [Int32](repeating: 3, count: 10), storage: .compressed)
        XCTAssertEqual(try file.openDataset("plain").layout, .contiguous)
        XCTAssertEqual(try file.openDataset("packed").layout, .chunked)
        XCTAssertEqual(try file.read("plain", as: Double.self).values, values)
        XCTAssertEqual(try file.read("packed", as: Int32.self).values, [Int32](repeating: 3, count: 10))
    }

    func testAppendToOneDimensionalSeries() throws {
        let file = try H5File.create(path("series.h5"))
        let steps = try file.createSeries("metrics/step", of: Int64.self)
        let loss = try file.createSeries("metrics/loss", of: Double.self, chunkRows: 4)
        XCTAssertEqual(try steps.shape, [0])
        for step in 0..<10 {
            try steps.append([Int64(step * 10)])
            try loss.append([1.0 / Double(step + 1)])
        }
        try loss.append([0.01, 0.001])
        XCTAssertEqual(try loss.chunkShape, [4])
        file.close()

        let reopened = try H5File.open(path("series.h5"))
        XCTAssertEqual(try reopened.read("metrics/step", as: Int64.self).values, (0..<10).map { Int64($0 * 10) })
        let (values, shape) = try reopened.read("metrics/loss", as: Double.self)
        XCTAssertEqual(shape, [12])
        XCTAssertEqual(values.suffix(2), [0.01, 0.001])
        XCTAssertEqual(values[3], 0.25)
    }

    func testAppendRowsToTwoDimensionalSeries() throws {
        let file = try H5File.create(path("table.h5"))
        let load = try file.createSeries("router/0/load", of: Int64.self, rowShape: [4])
        try load.append([1, 2, 3, 4])
        try load.append([5, 6, 7, 8, 9, 10, 11, 12])  // two rows at once
        XCTAssertEqual(try load.shape, [3, 4])
        XCTAssertEqual(try load.read(Int64.self), (1...12).map(Int64.init))
        XCTAssertThrowsError(try load.append([Int64(1), 2, 3])) { error in
            guard case HDF5Error.shapeMismatch(_, let object, _) = error else { return XCTFail("unexpected \(error)") }
            XCTAssertEqual(object, "/router/0/load")
        }
        XCTAssertThrowsError(try load.append([1.0, 2.0, 3.0, 4.0])) { error in
            guard case HDF5Error.typeMismatch = error else { return XCTFail("unexpected \(error)") }
        }
        // A fixed-size dataset cannot grow.
        let fixed = try file.createDataset("fixed", [Double(1), 2])
        XCTAssertThrowsError(try fixed.append([3.0]))
    }
}
