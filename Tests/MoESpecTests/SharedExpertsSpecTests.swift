import Foundation
import XCTest
@testable import MoESpec

/// `model.shared_experts` and `model.shared_ffn` (issue 16, DeepSeekMoE shared experts): decoded,
/// resolved and round-tripped; defaults leave every run id unchanged. The errors and warnings
/// are in the bad-spec corpus (`shared-experts-*`, `shared-ffn-*`).
final class SharedExpertsSpecTests: XCTestCase {
    func testKeysDecodeAndRoundTripThroughTheResolvedSpec() throws {
        let spec = try loadSpec("name: s\nexperts: 8\nmodel: {ffn: 32, shared_experts: 2, shared_ffn: 64}\nsplit: {strategy: replicate}\n")
        XCTAssertEqual(spec.model.sharedExperts, 2)
        XCTAssertEqual(spec.model.sharedFFN, 64)
        XCTAssertEqual(try SpecLoader.loadResolved(yaml: spec.resolvedYAML(), file: "r.yaml", baseDirectory: TestPaths.resources.path), spec)
        let corpus = TestPaths.repository.appendingPathComponent("experiments/data/text-domains.h5").path
        let lm = try loadSpec("name: s\nexperts: 4\nmodel: {kind: transformer, shared_experts: 1}\ndata: {source: text, path: \(corpus)}\nsplit: {strategy: replicate}\n")
        XCTAssertEqual(lm.model.sharedExperts, 1)
        XCTAssertNil(lm.model.sharedFFN, "null = model.ffn")
    }

    /// A key at its default is not part of the run id: specs without shared experts keep their ids.
    func testDefaultsLeaveTheIdentityUnchanged() throws {
        let plain = try loadSpec("name: s\nexperts: 4\nsplit: {strategy: replicate}\n")
        XCTAssertEqual(plain.model.sharedExperts, 0)
        XCTAssertFalse(plain.identityYAML().contains("shared"), plain.identityYAML())
        let explicit = try loadSpec("name: s\nexperts: 4\nmodel: {shared_experts: 0, shared_ffn: null}\nsplit: {strategy: replicate}\n")
        XCTAssertEqual(explicit.identityYAML(), plain.identityYAML())
        let shared = try loadSpec("name: s\nexperts: 4\nmodel: {shared_experts: 1, shared_ffn: 8}\nsplit: {strategy: replicate}\n")
        XCTAssertTrue(shared.identityYAML().contains("shared_experts: 1"), shared.identityYAML())
        XCTAssertTrue(shared.identityYAML().contains("shared_ffn: 8"), shared.identityYAML())
        XCTAssertTrue(ExperimentSpec.keysNewerThanScheme1.isSuperset(of: ["model.shared_experts", "model.shared_ffn"]))
    }
}
