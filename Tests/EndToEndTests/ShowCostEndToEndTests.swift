import Foundation
import XCTest

/// `moe-run show` prints total and active parameters and forward FLOPs per sample (mlp) or per
/// token (transformer), counted by hand here from the tiny specs' shapes.
final class ShowCostEndToEndTests: XCTestCase {
    /// features 8, hidden 16, ffn 16, 2 blocks (block 1: 4 experts, top-2), 3 classes:
    /// embed 16·8 + 16 = 144; block 0: norm 32 + ffn 2·256 + 2·16 = 576; block 1: norm 32 +
    /// router 64 + experts 4·(256 + 16 + 256 + 16) = 2176; final norm 32; head 48 + 3 → 3,075.
    /// Active: the experts count 2/4: 3,075 − 1,088 = 1,987. Matrix weights: 128 + 512 + 64 +
    /// 2048/2 + 48 = 1,776 → 3,552 FLOPs per sample.
    func testMoEMLPRun() throws {
        let dir = try CLI.workspace(tinyMoESpec(name: "cost", epochs: 1))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let show = try CLI.run(["show", r.lastLine], in: dir)
        XCTAssertEqual(show.status, 0, show.stderr)
        // The best and the final model have one architecture, so one line names both.
        XCTAssertTrue(show.stdout.contains("\n  best, final: parameters 3,075 total, 1,987 active per sample; forward 3.55 kFLOP per sample (a training step ≈ 3×)"), show.stdout)
        let task = try CLI.run(["show", r.lastLine + "/tasks/train.h5"], in: dir)
        XCTAssertTrue(task.stdout.contains("\n  parameters 3,075 total, 1,987 active per sample;"), task.stdout)

        // Which expert serves which domain: each domain's row of shares sums to 100 %; the
        // accuracies per domain, weighted by their n, give the summary's test accuracy.
        let lines = show.stdout.components(separatedBy: "\n")
        let routing = try XCTUnwrap(lines.firstIndex(of: "    final, block 1: share of each domain's routed assignments per expert (%):"), show.stdout)
        XCTAssertEqual(lines[routing + 1].split(separator: " "), ["domain", "e0", "e1", "e2", "e3"])
        for d in 0..<4 {
            let cells = lines[routing + 2 + d].split(separator: " ").map { Double($0)! }
            XCTAssertEqual(cells[0], Double(d))
            XCTAssertEqual(cells.dropFirst().reduce(0, +), 100, accuracy: 0.25, lines[routing + 2 + d])
        }
        let accuracy = try XCTUnwrap(lines.firstIndex(of: "    accuracy per domain:"), show.stdout)
        var correct = 0.0, total = 0.0
        for d in 0..<4 {
            let cells = lines[accuracy + 2 + d].split(separator: " ").map { Double($0)! }
            correct += cells[1] * cells[2]
            total += cells[1]
        }
        let summary = try XCTUnwrap(lines.first { $0.hasPrefix("  summary/final: test_accuracy ") })
        let overall = Double(summary.components(separatedBy: "test_accuracy ")[1].prefix(6))!
        XCTAssertEqual(total, 60, "the 10 % test split of 600 samples")
        XCTAssertEqual(correct / total, overall, accuracy: 1e-3, "per-domain accuracies agree with the evaluate task's")
    }

    /// vocab 256, context 16, hidden 32, 2 heads, 2 blocks, tied embeddings, block 1: 4 experts
    /// (ffn 32), top-2: embeddings 8192 + 512; per block attention norm 64 + qkv 3072 + 96 + out
    /// 1024 + 32 + norm 64 = 4352; block 0 ffn 2112; block 1 router 128 + experts 8448; final
    /// norm 64 → 28,160; active 28,160 − 4,224 = 23,936. FLOPs per token: 2 · (2·4096 qkv+out +
    /// 2048 ffn + 128 router + 8192/2 experts) = 28,928, + the tied head 2 · 256 · 32 = 16,384,
    /// + attention 4 · 2 blocks · 16 context · 32 = 4,096 → 49,408.
    func testMoETransformerRun() throws {
        let dir = try CLI.lmWorkspace(steps: 10, moe: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let show = try CLI.run(["show", r.lastLine], in: dir)
        XCTAssertEqual(show.status, 0, show.stderr)
        XCTAssertTrue(show.stdout.contains("\n  final: parameters 28,160 total, 23,936 active per token; forward 49.4 kFLOP per token (a training step ≈ 3×)"), show.stdout)
    }
}
