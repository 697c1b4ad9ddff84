import Foundation
import XCTest
@testable import MoESpec

/// `fusion.finetune.steps` and `split.overrides[i].steps` (issue 15): the training length of a
/// fine-tune and of one branch expert in optimizer steps, the natural unit of a language model
/// (one epoch of the shipped corpus is about 9,000 steps of 12 windows).
final class FinetuneStepsTests: XCTestCase {
    private let branch = """
        name: s
        experts: 2
        split: {strategy: branch, shard_by: index}
        fusion: {method: average, finetune: FT}

        """

    func testFinetuneStepsReplaceEpochsAndResolveWithoutThem() throws {
        let spec = try loadSpec(branch.replacingOccurrences(of: "FT", with: "{steps: 200, lr: 0.0005}"))
        XCTAssertEqual(spec.fusion.finetune?.steps, 200)
        let yaml = spec.resolvedYAML()
        XCTAssertTrue(yaml.contains("finetune: {steps: 200, lr: 0.0005}"), yaml)
        XCTAssertEqual(try SpecLoader.loadResolved(yaml: yaml, file: "r.yaml", baseDirectory: "/"), spec)
        // Without steps the resolved text is what it was before the key existed (run ids stay).
        let epochs = try loadSpec(branch.replacingOccurrences(of: "FT", with: "{epochs: 2}"))
        XCTAssertNil(epochs.fusion.finetune?.steps)
        XCTAssertTrue(epochs.resolvedYAML().contains("finetune: {epochs: 2, lr: 0.001}"), epochs.resolvedYAML())
    }

    func testFinetuneStepsAndEpochsExcludeEachOther() throws {
        let both = specError { try loadSpec(self.branch.replacingOccurrences(of: "FT", with: "{steps: 20, epochs: 1}")) }
        XCTAssertEqual(both?.description,
                       "test.yaml:4:45: fusion.finetune.steps: and fusion.finetune.epochs exclude each other: fine-tune for a number of steps or of epochs, not both")
        XCTAssertEqual(both?.hint, "remove one of them")
        XCTAssertEqual(specError { try loadSpec(self.branch.replacingOccurrences(of: "FT", with: "{steps: 0}")) }?.description,
                       "test.yaml:4:45: fusion.finetune.steps: must be >= 1, got 0")
    }

    func testExpertStepsOverrideTrainSteps() throws {
        let spec = try loadSpec("""
            name: s
            experts: 2
            split: {strategy: branch, shard_by: index, overrides: [{steps: 30}, {}]}
            train: {steps: 50}

            """)
        XCTAssertEqual(spec.split.overrides?[0].steps, 30)
        let yaml = spec.resolvedYAML()
        XCTAssertTrue(yaml.contains("overrides: [{steps: 30}, {}]"), yaml)
        XCTAssertEqual(try SpecLoader.loadResolved(yaml: yaml, file: "r.yaml", baseDirectory: "/"), spec)
    }

    func testExpertStepsNeedTrainSteps() throws {
        let error = specError { try loadSpec("""
            name: s
            experts: 2
            split: {strategy: branch, shard_by: index, overrides: [{}, {steps: 30}]}
            train: {epochs: 3}

            """) }
        XCTAssertEqual(error?.description,
                       "test.yaml:3:68: split.overrides[1].steps: applies only with train.steps; the experts train for train.epochs (3)")
        XCTAssertEqual(error?.hint, "remove the override's steps, or train for train.steps instead of train.epochs")
    }
}
