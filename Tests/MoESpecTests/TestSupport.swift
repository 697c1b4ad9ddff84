import Foundation
import XCTest
@testable import MoESpec

/// Paths of the test resources and the repository, found from this file's location (no
/// Package.swift resources needed).
enum TestPaths {
    static let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let resources = testsDirectory.appendingPathComponent("Resources")
    static let repository = testsDirectory.deletingLastPathComponent().deletingLastPathComponent()
}

/// Loads `yaml` as the file `name` (positions use `name`), relative paths against `base`.
func loadSpec(_ yaml: String, file: String = "test.yaml", base: URL = TestPaths.resources,
              overrides: [String] = [], gate: Bool = true) throws -> ExperimentSpec {
    try SpecLoader.load(yaml: yaml, file: file, baseDirectory: base.path, overrides: overrides, enforceSupportGate: gate)
}

/// The error `body` throws, as a SpecError; fails the test when it throws nothing else.
func specError(_ body: () throws -> Any, file: StaticString = #filePath, line: UInt = #line) -> SpecError? {
    do {
        _ = try body()
        XCTFail("expected a SpecError, got a spec", file: file, line: line)
    } catch let error as SpecError {
        return error
    } catch {
        XCTFail("expected a SpecError, got \(error)", file: file, line: line)
    }
    return nil
}
