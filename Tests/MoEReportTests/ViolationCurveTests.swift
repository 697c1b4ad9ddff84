import Foundation
import MoEHDF5
@testable import MoEReport
import XCTest

/// The maximal-violation curve `moe-run report` draws (issue 16 item 4): per log row, the mean
/// over the MoE blocks of `/router/<i>/max_violation`, from a hand-written task file.
final class ViolationCurveTests: XCTestCase {
    private var path = ""

    override func setUp() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("violation-\(UUID().uuidString).h5").path
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: path) }

    func testMeanOverBlocksPerLogRowWithoutUnfinishedRows() throws {
        try H5File.createAtomically(path) { file in
            try file.createDataset("router/1/step", [Int64(20), 40, 60])
            try file.createDataset("router/1/max_violation", [0.5, 0.25, .nan])
            try file.createDataset("router/3/step", [Int64(20), 40, 60])
            try file.createDataset("router/3/max_violation", [1.5, 0.75, 0.1])
        }
        let curve = Report.violationCurve(try H5File.open(path))
        XCTAssertEqual(curve.map(\.x), [20, 40], "a row where a block has no selections (NaN) is left out")
        XCTAssertEqual(curve.map(\.y), [1.0, 0.5])
    }

    func testNoRouterSeriesNoCurve() throws {
        try H5File.createAtomically(path) { file in
            try file.createDataset("metrics/step", [Int64(20)])
            try file.createDataset("router/0/step", [Int64(20)])   // an older file: no max_violation
        }
        XCTAssertTrue(Report.violationCurve(try H5File.open(path)).isEmpty)
    }
}
