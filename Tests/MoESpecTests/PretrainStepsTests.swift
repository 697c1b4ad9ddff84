import Foundation
import XCTest
@testable import MoESpec

/// `split.pretrain_steps` (issue 15): the pre-training length in steps, the other way to give it
/// than `split.pretrain_epochs`; at most one of the two; 0 (the default) means no pre-training,
/// as `pretrain_epochs: 0` does, so a sweep can include the run without pre-training.
final class PretrainStepsTests: XCTestCase {
    func testStepsOrEpochsPretrain() throws {
        let steps = try loadSpec("name: s\nexperts: 4\nsplit: {strategy: replicate, pretrain_steps: 300}\n")
        XCTAssertEqual(steps.split.pretrainSteps, 300)
        XCTAssertEqual(steps.split.pretrainEpochs, 0)
        XCTAssertTrue(steps.split.pretrains)
        XCTAssertTrue(try loadSpec("name: s\nexperts: 4\nsplit: {strategy: replicate, pretrain_epochs: 2}\n").split.pretrains)
        let zero = try loadSpec("name: s\nexperts: 4\nsplit: {strategy: replicate, pretrain_steps: 0}\n")
        XCTAssertFalse(zero.split.pretrains, "0 steps: no pre-training")
        XCTAssertEqual(zero, try loadSpec("name: s\nexperts: 4\nsplit: {strategy: replicate}\n"))
        // A zero of one with the other given is no conflict.
        XCTAssertEqual(try loadSpec("name: s\nexperts: 4\nsplit: {strategy: replicate, pretrain_epochs: 0, pretrain_steps: 7}\n").split.pretrainSteps, 7)
    }

    func testBothGivenIsAnErrorAtSteps() throws {
        let both = specError { try loadSpec("name: s\nexperts: 4\nsplit:\n  strategy: replicate\n  pretrain_epochs: 2\n  pretrain_steps: 5\n") }
        XCTAssertEqual(both?.description,
                       "test.yaml:6:19: split.pretrain_steps: and split.pretrain_epochs exclude each other: give the pre-training length in steps or in epochs, got 5 steps and 2 epochs")
        XCTAssertEqual(both?.hint, "remove one of them")
    }

    func testNegativeStepsAreRefused() throws {
        XCTAssertEqual(specError { try loadSpec("name: s\nexperts: 4\nsplit: {strategy: replicate, pretrain_steps: -1}\n") }?.description,
                       "test.yaml:3:46: split.pretrain_steps: must be >= 0, got -1")
    }

    /// `neurons` needs a pre-trained dense FFN: steps satisfy it as epochs do.
    func testNeuronsAcceptsStepsAndNamesThemInTheHint() throws {
        XCTAssertEqual(try loadSpec("name: s\nexperts: 4\nsplit: {strategy: neurons, pretrain_steps: 10}\n").split.pretrainSteps, 10)
        let none = specError { try loadSpec("name: s\nexperts: 4\nsplit: {strategy: neurons}\n") }
        XCTAssertEqual(none?.hint, "or give split.pretrain_steps")
    }

    func testUpcycleFromAndIndependentSeedsExcludeSteps() throws {
        let upcycle = specError { try loadSpec("name: s\nexperts: 4\nsplit: {strategy: replicate, upcycle_from: good/full-dense.yaml, pretrain_steps: 5}\n") }
        XCTAssertEqual(upcycle?.description.hasSuffix("split.upcycle_from: and split.pretrain_steps exclude each other: upcycle from a given checkpoint, or pre-train one here"), true,
                       upcycle?.description ?? "")
        let independent = specError { try loadSpec("name: s\nexperts: 2\nsplit: {strategy: branch, seed_model: independent, pretrain_steps: 5}\n") }
        XCTAssertEqual(independent?.description.hasSuffix("split.pretrain_steps: must be 0 with split.seed_model: independent (each expert starts from its own random initialisation; there is no shared seed model to pre-train), got 5"), true,
                       independent?.description ?? "")
    }

    /// A key at its default is not part of the run id: specs without `pretrain_steps` keep their ids.
    func testDefaultLeavesTheIdentityUnchanged() throws {
        let spec = try loadSpec("name: s\nexperts: 4\nsplit: {strategy: replicate, pretrain_epochs: 2}\n")
        XCTAssertFalse(spec.identityYAML().contains("pretrain_steps"), spec.identityYAML())
        XCTAssertTrue(try loadSpec("name: s\nexperts: 4\nsplit: {strategy: replicate, pretrain_steps: 2}\n").identityYAML().contains("pretrain_steps: 2"))
        XCTAssertEqual(try SpecLoader.loadResolved(yaml: spec.resolvedYAML(), file: "r.yaml", baseDirectory: TestPaths.resources.path), spec)
    }
}
