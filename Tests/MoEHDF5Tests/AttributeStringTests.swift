import MoEHDF5
import XCTest

final class AttributeStringTests: HDF5TestCase {
    func testNumericAttributesOnFileGroupAndDataset() throws {
        let file = try H5File.create(path("attrs.h5"))
        try file.setAttribute("seed", Int64(1234))
        try file.setAttribute("lr", 3e-4)
        let group = try file.createGroup("models/final")
        try group.setAttribute("sizes", [Int64(64), 128, 10])
        try group.setAttribute("weights", [0.25, 0.75])
        let dataset = try group.createDataset("w", [Float](repeating: 0, count: 4), shape: [2, 2])
        try dataset.setAttribute("count", 7)
        try dataset.setAttribute("count", 8)  // replaces
        file.close()

        let reopened = try H5File.open(path("attrs.h5"))
        XCTAssertEqual(try reopened.attribute("seed", as: Int64.self), 1234)
        XCTAssertEqual(try reopened.attribute("lr", as: Double.self), 3e-4)
        XCTAssertEqual(try reopened.attributeNames(), ["lr", "seed"])
        let models = try reopened.openGroup("/models/final")
        XCTAssertEqual(try models.arrayAttribute("sizes", as: Int64.self), [64, 128, 10])
        XCTAssertEqual(try models.arrayAttribute("weights", as: Double.self), [0.25, 0.75])
        let attribute = try models.openAttribute("sizes")
        XCTAssertEqual(try attribute.dtype, .int64)
        XCTAssertEqual(try attribute.shape, [3])
        attribute.close()
        attribute.close()  // idempotent
        XCTAssertEqual(try reopened.openDataset("models/final/w").attribute("count", as: Int.self), 8)
        XCTAssertFalse(reopened.hasAttribute("missing"))
        XCTAssertThrowsError(try reopened.attribute("missing", as: Double.self)) { error in
            XCTAssertEqual((error as? HDF5Error)?.object, "/@missing")
        }
    }

    func testUTF8StringsInAttributesAndDatasets() throws {
        let text = "Grüße, 世界 — α·β ≤ γ 🚀"
        let yaml = "name: demo\nmodel:\n  hidden: 64\n  note: \"ünïcödé\"\n"
        let file = try H5File.create(path("strings.h5"))
        try file.setAttribute("format", "moe-run/1")
        try file.setAttribute("title", text)
        try file.setAttribute("empty", "")
        try file.createString("spec", yaml)
        try file.createString("nested/plan", "{}")
        file.close()

        let reopened = try H5File.open(path("strings.h5"))
        XCTAssertEqual(try reopened.stringAttribute("format"), "moe-run/1")
        XCTAssertEqual(try reopened.stringAttribute("title"), text)
        XCTAssertEqual(try reopened.stringAttribute("empty"), "")
        XCTAssertEqual(try reopened.readString("spec"), yaml)
        XCTAssertEqual(try reopened.readString("nested/plan"), "{}")
        XCTAssertEqual(try reopened.openDataset("spec").dtype, .string)
        XCTAssertEqual(try reopened.openDataset("spec").shape, [])
        XCTAssertThrowsError(try reopened.readString("missing"))
        XCTAssertThrowsError(try reopened.readScalar("spec", as: Double.self)) { error in
            guard case HDF5Error.typeMismatch = error else { return XCTFail("unexpected \(error)") }
        }
        XCTAssertThrowsError(try reopened.openAttribute("format").read(Int64.self))
    }
}
