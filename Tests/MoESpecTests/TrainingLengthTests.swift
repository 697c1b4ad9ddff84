import Foundation
import XCTest
@testable import MoESpec

/// `train.steps` (issue 13): an alternative to `train.epochs` for every model kind, exactly one
/// of the two; a spec with neither trains for the default epochs.
final class TrainingLengthTests: XCTestCase {
    func testStepsReplaceEpochs() throws {
        let spec = try loadSpec("name: s\ntrain: {steps: 2000, batch_size: 12}\n")
        XCTAssertEqual(spec.train.steps, 2000)
        XCTAssertEqual(spec.train.totalSteps(stepsPerEpoch: 7), 2000, "steps do not depend on the epoch length")
        let epochs = try loadSpec("name: s\ntrain: {epochs: 3}\n")
        XCTAssertNil(epochs.train.steps)
        XCTAssertEqual(epochs.train.totalSteps(stepsPerEpoch: 7), 21)
        let neither = try loadSpec("name: s\n")
        XCTAssertNil(neither.train.steps)
        XCTAssertEqual(neither.train.epochs, 10, "neither given: the epochs default")
        XCTAssertNil(try loadSpec("name: s\ntrain: {steps: null, epochs: 2}\n").train.steps, "null = train for epochs")
    }

    /// The resolved spec writes `steps` without `epochs` (reading it back must not find both),
    /// and `epochs` with `steps: null`.
    func testResolvedSpecWritesOneOfTheTwo() throws {
        let steps = try loadSpec("name: s\ntrain: {steps: 50}\n")
        let yaml = steps.resolvedYAML()
        XCTAssertTrue(yaml.contains("\n  steps: 50\n"), yaml)
        XCTAssertFalse(yaml.contains("epochs: 10"), yaml)
        XCTAssertEqual(try SpecLoader.loadResolved(yaml: yaml, file: "r.yaml", baseDirectory: "/"), steps)
        let epochs = try loadSpec("name: s\ntrain: {epochs: 4}\n").resolvedYAML()
        XCTAssertTrue(epochs.contains("\n  epochs: 4\n  steps: null\n"), epochs)
    }

    func testBothGivenIsAnErrorAtSteps() throws {
        let both = specError { try loadSpec("name: s\ntrain:\n  steps: 5\n  epochs: 2\n") }
        XCTAssertEqual(both?.description,
                       "test.yaml:3:10: train.steps: and train.epochs exclude each other: train for a number of steps or of epochs, not both")
        XCTAssertEqual(both?.hint, "remove one of them (e.g. --unset train.epochs)")
        // An override that adds steps to a spec with epochs is refused the same way; removing
        // epochs first makes it valid.
        let set = specError { try loadSpec("name: s\ntrain: {epochs: 2}\n", overrides: ["train.steps=9"]) }
        XCTAssertEqual(set?.description,
                       "--set:1:13: train.steps: and train.epochs exclude each other: train for a number of steps or of epochs, not both")
        XCTAssertEqual(try loadSpec("name: s\ntrain: {epochs: 2}\n", overrides: ["~train.epochs", "train.steps=9"]).train.steps, 9)
    }

    func testStepsMustBePositive() throws {
        XCTAssertEqual(specError { try loadSpec("name: s\ntrain: {steps: 0}\n") }?.description,
                       "test.yaml:2:16: train.steps: must be >= 1, got 0")
        XCTAssertEqual(specError { try loadSpec("name: s\ntrain: {steps: 2.5}\n") }?.description.hasPrefix("test.yaml:2:16: train.steps:"), true)
    }

    /// The training loop counts steps: a spec with `train.steps` runs (it was refused until then).
    func testStepsSpecsAreRunnable() throws {
        XCTAssertNoThrow(try SupportGate.checkRunnable(try loadSpec("name: s\ntrain:\n  steps: 30\n")))
        XCTAssertNoThrow(try SupportGate.checkRunnable(try loadSpec("name: s\ntrain: {epochs: 2}\n")))
    }
}
