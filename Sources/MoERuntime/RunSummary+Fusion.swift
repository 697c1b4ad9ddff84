import MoEHDF5

/// `moe-run show` on a fusion run (issue 6 item 5): experts vs fused vs fine-tuned, the
/// coefficients, the loss barriers and the collapse warning.
extension RunSummary {
    /// Lines for the `/fusion` group of a fuse task (`fuse`); `finetuned`: the fine-tuned model's
    /// (val loss, val acc, test loss, test acc) from the run summary, when there is one.
    static func fusionTable(_ fuse: H5Location, finetuned: [Double]?) throws -> [String] {
        let g = try fuse.openGroup("fusion")
        let method = try g.stringAttribute("method"), weights = try g.stringAttribute("weights")
        let coefficients: [Double] = try g.read("coefficients", as: Double.self).values
        let seedModel = (try? g.stringAttribute("seed_model")).map { ", seed model \($0)" } ?? ""
        var lines = ["  fusion: \(method)" + (["greedy_soup", "slerp"].contains(method) ? "" : " (weights \(weights))") + seedModel,
                     "    model        val_loss  val_acc  test_loss  test_acc  coefficient"]
        func row(_ name: String, _ v: [Double], _ c: String) -> String {
            "    " + name.padding(toLength: 11, withPad: " ", startingAt: 0)
                + [(v[0], 10), (v[1], 9), (v[2], 11), (v[3], 10)].map { fit(formatMetric($0.0), $0.1) }.joined() + fit(c, 13)
        }
        func metrics(_ model: String) throws -> [Double] {
            try ["val_loss", "val_accuracy", "test_loss", "test_accuracy"].map { try g.readScalar("metrics/\(model)/\($0)", as: Double.self) }
        }
        var blockLines: [String] = []
        if g.exists("metrics/moe") {
            // Expert merging of a replicate MoE: coefficients [M, E], one row per MoE block.
            let blocks = (try? g.stringAttribute("moe_blocks"))?.split(separator: ",").map(String.init) ?? []
            let e = blocks.isEmpty ? coefficients.count : coefficients.count / blocks.count
            lines[0] = "  fusion: expert merging (weights \(weights))"
            lines.append(row("moe", try metrics("moe"), ""))
            for (j, b) in blocks.enumerated() where e > 0 {
                blockLines.append("    block \(b) expert coefficients: " + coefficients[(j * e)..<((j + 1) * e)].map { String(format: "%.4f", $0) }.joined(separator: ", "))
            }
        } else {
            for (i, c) in coefficients.enumerated() { lines.append(row("expert-\(i)", try metrics("expert-\(i)"), String(format: "%.4f", c))) }
        }
        lines.append(row("fused", try metrics("fused"), ""))
        if let finetuned { lines.append(row("finetuned", finetuned, "")) }
        lines += blockLines
        if g.exists("barrier") {
            var parts: [String] = []
            for path in try g.openGroup("barrier").children() {
                parts.append("\(path) \(formatMetric(try g.readScalar("barrier/\(path)/barrier", as: Double.self)))"
                             + " / \(formatMetric(try g.readScalar("barrier/\(path)/error_barrier", as: Double.self)))")
            }
            lines.append("    barriers, loss / error (val, 11 points): " + parts.joined(separator: ", "))
        }
        if let donor = try? g.stringAttribute("expert_evidence_from") {
            lines.append("    the experts' metrics and expert-expert curves: reused from run \(donor) (same experts)")
        }
        if try g.attribute("collapsed", as: Int64.self) == 1 {
            lines.append("  warning: " + (try g.stringAttribute("collapse_reason")))
        }
        return lines
    }

    /// The fine-tuned model's metrics from a run file's `/summary/final`, when a finetune task ran.
    static func finetunedMetrics(_ run: H5File) -> [Double]? {
        guard run.exists("tasks/finetune") else { return nil }
        let names = ["val_loss", "val_accuracy", "test_loss", "test_accuracy"]
        return names.map { (try? run.readScalar("summary/final/\($0)", as: Double.self)) ?? .nan }
    }
}

/// `text` right-aligned in `width` columns.
private func fit(_ text: String, _ width: Int) -> String {
    String(repeating: " ", count: max(0, width - text.count)) + text
}
