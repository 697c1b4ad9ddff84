import XCTest
@testable import MoEFusion

/// A one-tensor model `w` with the given values (shape `[values.count]`).
func vectorModel(_ values: [Float], name: String = "w") -> NamedTensors {
    NamedTensors([(name: name, shape: [values.count], values: values)])
}

/// A model with tensors `a [2, 2]` and `b [3]`.
func twoTensorModel(a: [Float], b: [Float]) -> NamedTensors {
    NamedTensors([(name: "a", shape: [2, 2], values: a), (name: "b", shape: [3], values: b)])
}

func assertClose(_ got: [Float]?, _ expected: [Double], accuracy: Double = 1e-6,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard let got else { return XCTFail("missing tensor", file: file, line: line) }
    XCTAssertEqual(got.count, expected.count, "count", file: file, line: line)
    for (j, (g, e)) in zip(got, expected).enumerated() {
        XCTAssertEqual(Double(g), e, accuracy: accuracy, "element \(j): got \(got), expected \(expected)", file: file, line: line)
    }
}

func assertThrows(_ expected: FusionError, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected \(expected), nothing was thrown", file: file, line: line)
    } catch let error as FusionError {
        XCTAssertEqual(error, expected, file: file, line: line)
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
    }
}
