import Foundation
import XCTest

/// The plots of `moe-run report` on a branch run with every stage (pretrain → 3 domain experts →
/// average → fine-tune): one global step axis, a marker on a one-point series, a note saying
/// what every curve was measured on, and every plot rendered to PNG by rsvg-convert.
final class ReportPlotsEndToEndTests: XCTestCase {
    /// x coordinates of each `<polyline class="series">`, by its data-series label.
    private func xs(_ svg: String) -> [String: [Double]] {
        var out: [String: [Double]] = [:]
        for part in svg.components(separatedBy: "<polyline class=\"series\" data-series=\"").dropFirst() {
            let label = String(part.prefix { $0 != "\"" })
            let points = part.components(separatedBy: "points=\"")[1].prefix { $0 != "\"" }
            out[label] = points.split(separator: " ").map { Double($0.split(separator: ",")[0])! }
        }
        return out
    }

    func testStagedRunPlotsShareOneStepAxisAndSayWhatTheyMeasure() throws {
        // 480 train samples, batch 32: pretrain 1 epoch = 15 steps; each expert 3 epochs of its
        // ~160-sample domain = 15 steps; fine-tune 2 epochs = 30 steps; a log row every 5 steps.
        let yaml = tinySpec(name: "stages", epochs: 3).replacingOccurrences(of: "  dropout: 0.1", with: """
              dropout: 0.1
            experts: 3
            split: {strategy: branch, shard_by: domain, pretrain_epochs: 1}
            parallelism: {mode: branch, workers: 2}
            fusion: {method: average, finetune: {epochs: 2}}
            """)
        let dir = try CLI.workspace(yaml)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let runDir = dir + "/" + r.lastLine
        let report = try CLI.run(["report", runDir], in: dir)
        XCTAssertEqual(report.status, 0, report.stderr)

        let loss = try String(contentsOfFile: runDir + "/report/loss.svg", encoding: .utf8)
        let x = xs(loss)
        let pretrain = try XCTUnwrap(x["pretrain: train_loss"]), finetune = try XCTUnwrap(x["finetune: train_loss"])
        let experts = try (0..<3).map { try XCTUnwrap(x["expert-\($0): train_loss"]) }
        XCTAssertEqual(pretrain.count, 3)
        XCTAssertEqual(finetune.count, 6)
        // Global steps: pretrain 5…15, the experts side by side from 20 (their shards differ in
        // size, so in length), the fine-tune after the longest expert.
        for e in experts {
            XCTAssertEqual(e.first!, experts[0].first!, "the experts start together, where the pretrain ended")
            XCTAssertEqual(e.first! - pretrain.last!, pretrain[1] - pretrain[0], accuracy: 0.02, "5 steps after the pretrain's last")
            XCTAssertLessThan(e.last!, finetune.first!)
        }
        XCTAssertTrue(loss.contains(">global training step (each stage continues where its inputs ended)</text>"))
        XCTAssertEqual(loss.components(separatedBy: "<line class=\"stage\"").count - 1, 2, "where the experts and the fine-tune start")
        XCTAssertTrue(loss.contains(">expert-0 … expert-2</text>") && loss.contains(">finetune</text>"))
        // The pretrain's one validation point (10 series: only one-point series get markers).
        XCTAssertEqual(x["pretrain: val_loss"]?.count, 1)
        XCTAssertEqual(loss.components(separatedBy: "<circle cx=").count - 1, 1, "a marker for the one-point series")
        for note in ["solid: training loss, mean over each log window of the task's training batches (an expert's: its shard only)",
                     "dashed: loss on the whole validation split (experts too)",
                     "expert-0: shard 0 by domain; expert-1: shard 1 by domain; expert-2: shard 2 by domain"] {
            XCTAssertTrue(loss.contains("<text class=\"note\"") && loss.contains(">\(note)</text>"), note)
        }

        let barrier = try String(contentsOfFile: runDir + "/report/fusion-barrier.svg", encoding: .utf8)
        XCTAssertTrue(barrier.contains(">measured on the validation samples of each curve's endpoints' domains only (in brackets in the legend)</text>"), barrier)
        XCTAssertTrue(barrier.contains("data-series=\"expert-0 ↔ expert-1 (dom 0, 1)\""), barrier)
        XCTAssertTrue(barrier.contains("data-series=\"fused ↔ expert-2 (dom 2)\""), barrier)

        // `show`: each model's accuracy per domain; expert-d, trained on domain d, carries the *.
        let show = try CLI.run(["show", runDir], in: dir)
        let lines = show.stdout.components(separatedBy: "\n")
        let table = try XCTUnwrap(lines.firstIndex(of: "    accuracy per domain (* an expert's own domain):"), show.stdout)
        let header = lines[table + 1].split(separator: " ").map(String.init)
        XCTAssertEqual(header, ["domain", "n", "best", "expert-0", "expert-1", "expert-2", "final", "fused", "seed"])
        for d in 0..<3 {
            let cells = lines[table + 2 + d].split(separator: " ").map(String.init)
            XCTAssertEqual(cells.filter { $0.hasSuffix("*") }.count, 1, lines[table + 2 + d])
            let column = try XCTUnwrap(header.firstIndex(of: "expert-\(d)"))
            XCTAssertTrue(cells[column].hasSuffix("*"), "expert-\(d) trained on domain \(d): \(lines[table + 2 + d])")
        }

        // Every plot parses and renders.
        let svgs = try FileManager.default.contentsOfDirectory(atPath: runDir + "/report").filter { $0.hasSuffix(".svg") }.sorted()
        XCTAssertEqual(svgs, ["fusion-barrier.svg", "loss.svg"])
        try CLI.assertSVGsRender(svgs, in: runDir + "/report", minBytes: 5000, caller: "ReportPlotsEndToEndTests")
    }
}
