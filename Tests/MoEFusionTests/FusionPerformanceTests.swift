import XCTest
import Foundation
import MoECore
@testable import MoEFusion

/// Fusing 4 models of 2M parameters (two [1000, 1000] tensors): the brief asks for well under a
/// second per method on one core. The bound asserted is looser (3 s) because the test machines
/// are shared; the measured times are printed.
final class FusionPerformanceTests: XCTestCase {
    func testFourModelsOfTwoMillionParameters() throws {
        var rng = RNG(seed: 1, purpose: "fusion-performance")
        func model() -> NamedTensors {
            NamedTensors(["blocks/0/w1", "blocks/0/w2"].map { name in
                (name: name, shape: [1000, 1000], values: (0..<1_000_000).map { _ in rng.uniform(-1, 1) })
            })
        }
        let base = model()
        let models = (0..<4).map { _ in model() }
        XCTAssertEqual(models[0].parameterCount, 2_000_000)
        func time(_ label: String, _ body: () throws -> Void) rethrows -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            print("fusion timing: \(label) of 4 × 2M parameters: \(String(format: "%.3f", seconds)) s")
            return seconds
        }
        let ties = try time("ties (density 0.2)") { _ = try Fusion.ties(base: base, models: models, density: 0.2, lambda: 1) }
        let dareTies = try time("dare_ties (density 0.2)") { _ = try Fusion.dareTies(base: base, models: models, density: 0.2, seed: 3) }
        let average = try time("average") { _ = try Fusion.average(models) }
        let slerp = try time("slerp (2 models)") { _ = try Fusion.slerp(models[0], models[1], t: 0.5) }
        for t in [ties, dareTies, average, slerp] { XCTAssertLessThan(t, 3) }
    }
}
