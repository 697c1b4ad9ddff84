import Foundation
import XCTest
@testable import MoESpec

/// The experiments shipped in experiments/ are valid and runnable by this version.
final class ShippedExperimentsTests: XCTestCase {
    let experiments = TestPaths.repository.appendingPathComponent("experiments")

    func testQuickstartIsSmallAndDense() throws {
        let spec = try SpecLoader.load(path: experiments.appendingPathComponent("quickstart.yaml").path)
        XCTAssertEqual(spec.name, "quickstart")
        XCTAssertEqual(spec.experts, 1)
        XCTAssertEqual(spec.data.source, .synthetic(.init(features: 16, classes: 4, domains: 4, samples: 4000,
                                                          separation: 6.0, labelNoise: 0)))
        XCTAssertEqual([spec.model.hidden, spec.model.ffn, spec.model.blocks], [64, 256, 2])
        XCTAssertEqual([spec.train.epochs, spec.train.batchSize], [20, 64])
        XCTAssertEqual(spec.output.dir, "results")
    }

    func testDigitsDenseReadsTheShippedFile() throws {
        let spec = try SpecLoader.load(path: experiments.appendingPathComponent("digits-dense.yaml").path)
        XCTAssertEqual(spec.name, "digits-dense")
        guard case .file(let file) = spec.data.source else { return XCTFail("expected a file source") }
        XCTAssertEqual(file.path, "data/digits.h5")
        XCTAssertEqual(file.resolvedPath, experiments.appendingPathComponent("data/digits.h5").standardizedFileURL.path)
        XCTAssertEqual(file.resolvedFormat, .hdf5)
        XCTAssertEqual(spec.experts, 1)
    }

    func testEveryShippedExperimentValidates() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: experiments.path).filter { $0.hasSuffix(".yaml") }
        XCTAssertTrue(names.contains("quickstart.yaml") && names.contains("digits-dense.yaml"))
        for name in names {
            XCTAssertNoThrow(try SpecLoader.load(path: experiments.appendingPathComponent(name).path), name)
        }
    }
}
