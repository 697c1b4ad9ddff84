import Foundation
import MoEFusion
@testable import MoERuntime
import XCTest

/// The fuse task's refusal of experts whose architectures differ: one line naming the tensor and
/// the expert's checkpoint (the CLI cannot produce such experts: overrides change no architecture).
final class FuseTaskTests: XCTestCase {
    func testArchitectureMismatchNamesTheTensorAndTheExpertFile() throws {
        let a = NamedTensors([(name: "embed/weight", shape: [2, 3], values: [Float](repeating: 0.5, count: 6)),
                              (name: "blocks/0/ffn/w1", shape: [4, 2], values: [Float](repeating: 1, count: 8))])
        var b = a
        b.shapes["blocks/0/ffn/w1"] = [2, 4]
        let layout = RunLayout(directory: "/runs/x")
        do {
            try Fusion.validate([a, a, b])
            XCTFail("validate accepted a shape mismatch")
        } catch let error as FusionError {
            let message = FuseTask.architectureError(error, layout: layout, basePath: "seed").description
            XCTAssertEqual(message, "/runs/x/tasks/expert-2.h5:/model: cannot fuse: tensor blocks/0/ffn/w1 has shape [2, 4] in model 2, expected [4, 2]; the experts must share one architecture")
            XCTAssertFalse(message.contains("\n"))
        }
        var c = a
        c.names.removeLast()
        c.values["blocks/0/ffn/w1"] = nil
        c.shapes["blocks/0/ffn/w1"] = nil
        do {
            try Fusion.validate([a, c])
            XCTFail("validate accepted a missing tensor")
        } catch let error as FusionError {
            XCTAssertEqual(FuseTask.architectureError(error, layout: layout, basePath: "seed").description,
                           "/runs/x/tasks/expert-1.h5:/model: cannot fuse: tensor blocks/0/ffn/w1 is missing from model 1; the experts must share one architecture")
        }
    }

    func testBarrierIsTheLargestExcessOverTheChord() {
        XCTAssertEqual(FuseTask.Curve.barrier([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]), 0)
        let bump = FuseTask.alphas.map { 1 + 2 * $0 * (1 - $0) }  // 1 at the ends, 1.5 in the middle
        XCTAssertEqual(FuseTask.Curve.barrier(bump), 0.5, accuracy: 1e-12)
        let line = FuseTask.alphas.map { 2 - $0 }
        XCTAssertEqual(FuseTask.Curve.barrier(line), 0, accuracy: 1e-12)
        XCTAssertEqual(FuseTask.alphas.count, 11)
    }
}
