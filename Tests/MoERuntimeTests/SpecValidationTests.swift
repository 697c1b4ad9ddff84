import Foundation
import MoERuntime
import MoESpec
import XCTest

/// `SpecValidation` (what `validate` and `plan` print) on sweeps: where trial errors and warnings
/// point. Regression cases of the spec fuzzer: a sweep section given by `--set` used to give
/// trial messages without a position.
final class SpecValidationTests: XCTestCase {
    func spec(_ yaml: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-run-validation-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try yaml.write(toFile: dir + "/s.yaml", atomically: true, encoding: .utf8)
        return dir + "/s.yaml"
    }

    /// A sweep section from `--set`: each trial's warning points at its value in that argument,
    /// and a warning of only some trials names them.
    func testSweepFromAnOverridePointsIntoTheOverride() throws {
        let path = try spec("name: dense\nexperts: 1\n")
        let argument = "sweep={parameters: {router.k: [1, 2]}}"
        let v = try SpecValidation.validate(specPath: path, overrides: [argument])
        let column = { (value: String) in argument.distance(from: argument.startIndex, to: argument.range(of: value)!.lowerBound) + 1 }
        let reason = "router.k: has no effect with experts: 1 (a dense model has no router or MoE blocks)"
        XCTAssertEqual(v.warningLines, ["--set:1:\(column("1,")): \(reason) (trial 1)", "--set:1:\(column("2]")): \(reason) (trial 2)"])
        XCTAssertNil(v.trialError)
        XCTAssertEqual(v.sweep?.trials.count, 2)
    }

    /// An error caused by the user's own `--set` in some trials stays located in that `--set`;
    /// one caused by a swept value points at the value in the file.
    func testTrialErrorsPointAtWhatTheUserWrote() throws {
        let path = try spec("name: moe\nexperts: 4\nsplit: {strategy: replicate}\nsweep:\n  parameters:\n    experts: [2, 4]\n")
        let own = try SpecValidation.validate(specPath: path, overrides: ["router.k=3"])
        XCTAssertEqual(own.trialError?.description, "--set:1:10: router.k: must be between 1 and experts (2), got 3")
        XCTAssertEqual(own.trialError?.hint, "trial 1/2 (experts=2); 1 of 2 trials invalid (trial 1)")
        let swept = try SpecValidation.validate(specPath: path, overrides: ["router.k=4", "sweep.parameters.experts=[8, 3]"])
        XCTAssertEqual(swept.trialError?.description, "--set:1:10: router.k: must be between 1 and experts (3), got 4")
        let fromFile = try SpecValidation.validate(specPath: try spec("name: moe\nexperts: 4\nsplit: {strategy: replicate}\nsweep:\n  parameters:\n    router.k: [1, 8]\n"), overrides: [])
        XCTAssertEqual(fromFile.trialError.map { String($0.description.split(separator: "/").last!) },
                       "s.yaml:6:19: router.k: must be between 1 and experts (4), got 8")
    }
}
