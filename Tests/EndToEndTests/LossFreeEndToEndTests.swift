import Foundation
import MoEHDF5
import XCTest

/// End-to-end: sigmoid routers and loss-free balancing (`router.score: sigmoid`,
/// `router.balance: bias`) through the built binary, for both model kinds: the expert bias in
/// the checkpoint and in the router series, the numpy recomputation of the forward pass with
/// the bias in selection (check_run.py), and exact resume of the bias.
final class LossFreeEndToEndTests: XCTestCase {
    private func run(_ yaml: String, _ args: [String] = []) throws -> String {
        let dir = try CLI.workspace(yaml)
        let r = try CLI.run(["spec.yaml", "--quiet"] + args, in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        return dir + "/" + r.lastLine
    }

    /// The bias in the final checkpoint and the last row of its series agree, and it moved.
    private func assertBiasSeries(_ runDir: String, block: Int, experts: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let train = try H5File.open(runDir + "/tasks/train.h5")
        let bias = try train.read("model/blocks/\(block)/moe/router/expert_bias", as: Float.self)
        XCTAssertEqual(bias.shape, [experts], file: file, line: line)
        XCTAssertTrue(bias.values.contains { $0 != 0 }, "the bias moved: \(bias.values)", file: file, line: line)
        let series = try train.read("router/\(block)/expert_bias", as: Double.self)
        let rows = try train.read("router/\(block)/step", as: Int64.self).values.count
        XCTAssertEqual(series.shape, [rows, experts], file: file, line: line)
        XCTAssertEqual(Array(series.values.suffix(experts)), bias.values.map(Double.init), "last row = final bias", file: file, line: line)
        XCTAssertEqual(try train.read("router/\(block)/gate_mass", as: Double.self).shape, [rows, experts], file: file, line: line)
        let violation = try train.read("router/\(block)/max_violation", as: Double.self).values
        XCTAssertEqual(violation.count, rows, file: file, line: line)
        XCTAssertTrue(violation.allSatisfy { $0 >= 0 }, "max_i c_i / mean c − 1 ≥ 0: \(violation)", file: file, line: line)
        XCTAssertFalse(train.exists("optimizer/blocks/\(block)/moe/router/expert_bias"), "a buffer has no optimizer state", file: file, line: line)
        let show = try CLI.run(["show", runDir], in: runDir)
        let row = "    " + String(repeating: " ", count: 5 - String(block).count) + String(block)
            + bias.values.map { String(format: "%+.3f", Double($0)).leftPadded(to: 8) }.joined()
        XCTAssertTrue(show.stdout.contains("expert bias at step \(try train.read("router/\(block)/step", as: Int64.self).values.last!)"), show.stdout,
                      file: file, line: line)
        XCTAssertTrue(show.stdout.contains(row), "\(row) in \(show.stdout)", file: file, line: line)
    }

    func testSigmoidLossFreeMLPIsRecomputedByNumpy() throws {
        for router in ["{type: topk, k: 2, score: sigmoid, balance: bias, bias_rate: 0.01, capacity_factor: 1.0, min_capacity: 2}",
                       "{type: switch, score: sigmoid, balance: bias, bias_rate: 0.01}",
                       "{type: topk, k: 2, balance: bias, bias_rate: 0.01}"] {
            let runDir = try run(tinyMoESpec(name: "lossfree", router: router))
            try assertBiasSeries(runDir, block: 1, experts: 4)
            try CLI.assertNumpyReproduces(runDir, models: ["final"])
        }
    }

    func testSigmoidLossFreeLMIsRecomputedByNumpy() throws {
        let dir = try CLI.lmWorkspace(steps: 60, moe: true)
        let r = try CLI.run(["spec.yaml", "--quiet", "--set", "router.score=sigmoid", "--set", "router.balance=bias",
                             "--set", "router.bias_rate=0.01"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let runDir = dir + "/" + r.lastLine
        try assertBiasSeries(runDir, block: 1, experts: 4)
        try CLI.assertNumpyReproduces(runDir, models: ["final"])
    }

    func testKilledLossFreeRunResumesToTheSameBias() throws {
        let (a, b) = try killedAndResumedMoERun(name: "lossfreeresume", router: "{type: topk, k: 2, score: sigmoid, balance: bias, bias_rate: 0.002}")
        for name in ["model/blocks/1/moe/router/expert_bias", "model/blocks/1/moe/router/weight", "model/head/weight"] {
            XCTAssertEqual(try a.read(name, as: Float.self).values.map(\.bitPattern), try b.read(name, as: Float.self).values.map(\.bitPattern), name)
        }
        for name in ["expert_bias", "max_violation", "gate_mass", "load"] {
            XCTAssertEqual(try a.read("router/1/" + name, as: Double.self).values.map(\.bitPattern),
                           try b.read("router/1/" + name, as: Double.self).values.map(\.bitPattern), name)
        }
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
