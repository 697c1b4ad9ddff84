import Foundation
import XCTest
@testable import MoESpec

final class OverrideTests: XCTestCase {
    func testOverridesSetNestedValuesListsAndNull() throws {
        let yaml = "name: base\nrouter:\n  capacity_factor: 1.5\ntrain:\n  lr: 0.01\n"
        let spec = try loadSpec(yaml, overrides: [
            "train.lr=0.02", "train.betas=[0.9,0.99]", "router.capacity_factor=null", "train.grad_clip=",
            "model.moe_blocks={every: 1}", "seed=5", "description=a run with spaces",
        ], gate: false)
        XCTAssertEqual(spec.train.lr, 0.02)
        XCTAssertEqual(spec.train.betas, [0.9, 0.99])
        XCTAssertNil(spec.router.capacityFactor)
        XCTAssertNil(spec.train.gradClip, "an empty value is null")
        XCTAssertEqual(spec.model.moeBlocks, .every(1))
        XCTAssertEqual(spec.seed, 5)
        XCTAssertEqual(spec.description, "a run with spaces")
    }

    func testOverrideCreatesMissingIntermediateMappings() throws {
        let spec = try loadSpec("name: base\n", overrides: ["data.split.train=0.7", "data.split.val=0.2", "output.dir=elsewhere"])
        XCTAssertEqual(spec.data.split, .init(train: 0.7, val: 0.2, test: 0.1))
        XCTAssertEqual(spec.output.dir, "elsewhere")
    }

    func testOverrideReplacesANullMapping() throws {
        let yaml = "name: b\nexperts: 2\nsplit: {strategy: branch}\nfusion: {method: average, finetune: null}\n"
        let spec = try SpecLoader.load(yaml: yaml, file: "b.yaml", baseDirectory: nil,
                                       overrides: ["fusion.finetune.epochs=3", "train.lr=0.5"], enforceSupportGate: false)
        XCTAssertEqual(spec.fusion.finetune, .init(epochs: 3, lr: 0.5))
    }

    /// Null on a key that cannot be null removes it (Hydra-style), so its default applies; `~KEY`
    /// (`--unset KEY`) always removes; a nullable key keeps null as its value.
    func testNullAndUnsetRemoveKeys() throws {
        let yaml = "name: base\nexperts: 4\nsplit: {strategy: replicate}\nrouter: {type: switch, capacity_factor: 1.5}\ntrain: {lr: 0.5, epochs: 3}\n"
        let defaults = try loadSpec("name: base\n")
        let removed = try loadSpec(yaml, overrides: ["train.lr=null", "router=null"])
        XCTAssertEqual(removed.train.lr, defaults.train.lr)
        XCTAssertEqual(removed.train.epochs, 3)
        XCTAssertEqual(removed.router, try loadSpec("name: base\nexperts: 4\nsplit: {strategy: replicate}\n").router)
        let unset = try loadSpec(yaml, overrides: ["~train", "~router.capacity_factor", "~model.ffn"])
        XCTAssertEqual(unset.train, defaults.train)
        XCTAssertEqual(unset.router.type, .switch)
        XCTAssertEqual(unset.router.capacityFactor, defaults.router.capacityFactor)
        XCTAssertNil(try loadSpec(yaml, overrides: ["router.capacity_factor=null"]).router.capacityFactor, "null is dropless")
        // Removals come first: a --set after an --unset of its section sets the key on the defaults.
        XCTAssertEqual(try loadSpec(yaml, overrides: ["train.epochs=7", "~train"]).train.epochs, 7)
        XCTAssertEqual(try loadSpec(yaml, overrides: ["train.epochs=7", "~train"]).train.lr, defaults.train.lr)
    }

    func testLaterOverridesWin() throws {
        let spec = try loadSpec("name: base\n", overrides: ["seed=1", "seed=2"])
        XCTAssertEqual(spec.seed, 2)
    }

    func testOverrideErrorsArePositionedInTheArgument() throws {
        let cases: [(String, String)] = [
            ("router.kk=2", "--set:1:8: router.kk: unknown key; did you mean k?"),
            ("train.lrr=1", "--set:1:7: train.lrr: unknown key; did you mean lr?"),
            ("=3", "--set:1:1: =3: malformed key path; expected names made of letters, digits and _ joined by dots"),
            ("train.betas=[0.9, x]", "--set:1:19: train.betas[1]: expected a number, got string \"x\""),
            ("train.betas=[0.9", "--set:1:17: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence at 1:13)"),
            ("experts=2.0", "--set:1:9: experts: expected an integer, got number 2.0"),
            ("name=", "test.yaml:1:1: name: required key is missing"),   // null removes a key that cannot be null
            ("~name=x", "--unset:1:5: name=x: --unset takes a key path, not a value"),
            ("~train.lrr", "--unset:1:7: train.lrr: unknown key; did you mean lr?"),
            ("~train.lr.x", "--unset:1:10: train.lr.x: train.lr has no keys below it"),
        ]
        for (argument, expected) in cases {
            let error = specError { try loadSpec("name: base\n", overrides: [argument]) }
            XCTAssertEqual(error?.description, expected, argument)
        }
    }

    /// Errors in the file are reported before the overrides are looked at.
    func testFileSyntaxErrorsComeFirst() throws {
        let error = specError { try loadSpec("name: [x\n", file: "f.yaml", overrides: ["router.kk=1"]) }
        XCTAssertEqual(error?.file, "f.yaml")
    }
}
