import Foundation
import MoEHDF5

/// `moe-run show`: a human summary of a run directory or of any moe-run HDF5 file.
public struct RunSummary {
    public let path: String

    public init(path: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw RuntimeError.io(path: path, message: "no such file or directory")
        }
        if isDir.boolValue {
            let run = (path as NSString).appendingPathComponent("run.h5")
            guard FileManager.default.fileExists(atPath: run) else {
                throw RuntimeError.io(path: path, message: "not a run directory (no run.h5)")
            }
            self.path = run
        } else {
            self.path = path
        }
    }

    public func text() throws -> String {
        let file = try H5File.open(path)
        let kind = file.hasAttribute("kind") ? try file.stringAttribute("kind") : nil
        switch kind {
        case "run": return try runText(file)
        case "task": return try taskText(file)
        case "model": return try "\(path): model checkpoint\n  config \(file.stringAttribute("config"))"
        case "ensemble":
            return try "\(path): ensemble checkpoint (Branch-Train-Merge) of \(file.attribute("experts", as: Int64.self)) experts, "
                + "\(file.stringAttribute("posterior")) domain posterior\n  config \(file.stringAttribute("config"))"
        default:
            if file.exists("x") && file.exists("y") {
                let shape = try file.openDataset("x").shape
                return "\(path): data file, \(shape.first ?? 0) samples × \(shape.dropFirst().first ?? 0) features"
            }
            return "\(path): HDF5 file, not written by moe-run; top level: " + (try file.children()).joined(separator: ", ")
        }
    }

    private func runText(_ file: H5File) throws -> String {
        func attr(_ name: String) -> String { (try? file.stringAttribute(name)) ?? "?" }
        var lines = ["run \(attr("name")) — \(attr("status"))",
                     "  directory  \((path as NSString).deletingLastPathComponent)",
                     "  seed \((try? file.attribute("seed", as: Int64.self)).map(String.init) ?? "?"), spec sha256 \(attr("spec_sha256").prefix(12))…, moe-run \(attr("moe_run_version"))",
                     "  started \(attr("started"))" + (attr("finished").isEmpty ? "" : ", finished \(attr("finished"))")]
        if file.hasAttribute("error") { lines.append("  error \(attr("error"))") }
        if file.exists("summary") {
            for model in try file.openGroup("summary").children() {
                let group = try file.openGroup("summary/" + model)
                let values = try Self.scalarNames(group).map { "\($0) \(formatMetric(try group.readScalar($0, as: Double.self)))" }
                lines.append("  summary/\(model): " + values.joined(separator: ", "))
                lines += try Self.domainTable(group)
            }
        }
        if file.exists("tasks/train/router") { lines += try Self.routerTable(try file.openGroup("tasks/train/router")) }
        if file.exists("tasks/train/stages") { lines += try Self.stageTable(try file.openGroup("tasks/train")) }
        if file.exists("tasks/train/metrics/bytes_sent") { lines += try Self.communicationLines(try file.openGroup("tasks/train/metrics")) }
        if file.exists("tasks/fuse/fusion") { lines += try Self.fusionTable(try file.openGroup("tasks/fuse"), finetuned: Self.finetunedMetrics(file)) }
        if file.exists("models") {
            let models = try file.openGroup("models").children()
            lines.append("  models: " + models.joined(separator: ", "))
            if models.contains("best"), let line = Self.bestLine(try file.openGroup("models/best")) { lines.append(line) }
            lines += Self.costLines(file, models: models)
            lines += DomainBreakdown.lines(runFile: file, runDirectory: (path as NSString).deletingLastPathComponent)
            let experts = models.filter { $0.hasPrefix("expert-") }
            if !models.contains("final"), !experts.isEmpty {
                lines.append("  delivers the \(experts.count) branch experts (/models/expert-<i>); no fused model (fusion.method: none)")
            }
        }
        if file.exists("tasks") { lines.append("  tasks: " + (try file.openGroup("tasks").children()).joined(separator: ", ")) }
        if file.exists(TaskCache.group) {
            // Tasks the task cache took from other runs of the results folder (hard links).
            let reused = try file.openGroup(TaskCache.group).children().map { "\($0) (run \(try file.readString(TaskCache.group + "/" + $0)))" }
            lines.append("  reused: " + reused.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }

    /// "  best: step S of N by val_loss V" from a `/best` group's attributes (BestModel).
    static func bestLine(_ best: H5Group) -> String? {
        guard let step = try? best.attribute("step", as: Int64.self), let metric = try? best.stringAttribute("metric"),
              let value = try? best.attribute("value", as: Double.self) else { return nil }
        return "  best: the model at step \(step), \(metric) \(formatMetric(value)) (the best validation of its training task)"
    }

    private func taskText(_ file: H5File) throws -> String {
        var lines = ["task \((try? file.stringAttribute("task")) ?? "?") — \(path)"]
        if file.exists("metrics/step") {
            let steps: [Int64] = try file.read("metrics/step").values
            let loss: [Double] = try file.read("metrics/train_loss").values
            if let s = steps.last, let l = loss.last { lines.append("  \(steps.count) log rows; last step \(s), train_loss \(formatMetric(l))") }
        }
        if file.exists("router") { lines += try Self.routerTable(try file.openGroup("router")) }
        if file.exists("stages") { lines += try Self.stageTable(file) }
        if file.exists("metrics/bytes_sent") { lines += try Self.communicationLines(try file.openGroup("metrics")) }
        if file.exists("fusion") { lines += try Self.fusionTable(file, finetuned: nil) }
        if file.exists("checkpoints") { lines.append("  checkpoints at steps " + (try file.openGroup("checkpoints").children()).joined(separator: ", ")) }
        if file.exists("model") {
            let task = (try? file.stringAttribute("task")) ?? ""
            let what = ["fuse": "fused model", "pretrain": "pre-trained model", "finetune": "fine-tuned model"][task]
                ?? (task.hasPrefix("expert-") ? "expert model" : "final model")
            lines.append("  \(what) at /model")
            if let model = try? file.openGroup("model"), let cost = try? ModelCost.of(model) { lines.append("  " + cost.text) }
        }
        if file.exists("summary") {
            for model in try file.openGroup("summary").children() {
                let g = try file.openGroup("summary/" + model)
                let values = try Self.scalarNames(g).map { "\($0) \(formatMetric(try g.readScalar($0, as: Double.self)))" }
                lines.append("  " + (model == "final" ? "" : model + ": ") + values.joined(separator: ", "))
                lines += try Self.domainTable(g)
            }
        }
        if file.hasAttribute("shard") {
            // An LM expert counts its items in train tokens.
            let items = file.hasAttribute("train_tokens") ? "\(try file.attribute("train_tokens", as: Int64.self)) train tokens"
                                                          : "\(try file.attribute("train_samples", as: Int64.self)) training samples"
            lines.append("  branch expert on shard \(try file.attribute("shard", as: Int64.self)) (by \(try file.stringAttribute("shard_by"))), " + items)
        }
        return lines.joined(separator: "\n")
    }

    /// One line per distinct cost among `/models/<name>` (`ModelCost`), naming the models it is of.
    static func costLines(_ file: H5File, models: [String]) -> [String] {
        var order: [ModelCost] = [], names: [[String]] = []
        for name in models {
            guard let group = try? file.openGroup("models/" + name), let cost = try? ModelCost.of(group) else { continue }
            if let i = order.firstIndex(of: cost) { names[i].append(name) } else { order.append(cost); names.append([name]) }
        }
        return zip(order, names).map { cost, names in "  \(names.joined(separator: ", ")): \(cost.text)" }
    }

    /// A group's costs per training step (rank 0's view, mean over the whole run): time computing,
    /// moving data and waiting for peers, bytes sent and received, compression error.
    static func communicationLines(_ metrics: H5Group) throws -> [String] {
        func mean(_ name: String) throws -> Double {
            let v = try metrics.read(name, as: Double.self).values
            return v.isEmpty ? .nan : v.reduce(0, +) / Double(v.count)
        }
        let compute = try mean("compute_seconds"), comm = try mean("communication_seconds"), wait = try mean("wait_seconds")
        let total = compute + comm + wait
        var lines = ["  per training step (rank 0, mean): compute " + String(format: "%.2f ms, communication %.2f ms, waiting %.2f ms", 1e3 * compute, 1e3 * comm, 1e3 * wait)
                     + String(format: " (communication + waiting %.1f%% of the step)", total > 0 ? 100 * (comm + wait) / total : 0),
                     "  bytes per step: sent " + formatBytes(try mean("bytes_sent")) + ", received " + formatBytes(try mean("bytes_received"))]
        let error = try mean("compression_error")
        if error > 0 { lines[1] += String(format: "; gradient compression error %.3g (relative, before error feedback)", error) }
        if metrics.exists("bubble_fraction") {
            lines.append(String(format: "  pipeline bubble: rank 0 waits %.1f%% of the step (mean of /metrics/bubble_fraction)", 100 * (try mean("bubble_fraction"))))
        }
        return lines
    }

    private static func formatBytes(_ b: Double) -> String {
        b >= 1_048_576 ? String(format: "%.2f MB", b / 1_048_576) : b >= 1024 ? String(format: "%.1f KB", b / 1024) : String(format: "%.0f B", b)
    }

    /// Layer-wise local training: each stage's blocks and the last validation loss/accuracy of
    /// its auxiliary head (the last stage's head is the stacked model's).
    static func stageTable(_ task: H5Location) throws -> [String] {
        let stages = try task.openGroup("stages").children().compactMap(Int.init).sorted()
        guard !stages.isEmpty else { return [] }
        var lines = ["  layer-wise stages (auxiliary head of each, last validation):",
                     "    stage  blocks   val_loss  val_accuracy"]
        for s in stages {
            let g = try task.openGroup("stages/\(s)")
            let first = try g.attribute("first_block", as: Int64.self), last = try g.attribute("last_block", as: Int64.self)
            var loss = "–", acc = "–"
            let lossPath = "metrics/eval/stage_\(s)_val_loss", accPath = "metrics/eval/stage_\(s)_val_accuracy"
            if task.exists(lossPath), let l = try task.read(lossPath, as: Double.self).values.last { loss = formatMetric(l) }
            if task.exists(accPath), let a = try task.read(accPath, as: Double.self).values.last { acc = formatMetric(a) }
            lines.append("    " + pad(String(s), 5) + "  " + pad(first == last ? "\(first)" : "\(first)-\(last)", 6) + "   " + pad(loss, 8) + "  " + pad(acc, 12))
        }
        return lines
    }

    /// The scalar metrics of a summary group (not its `domains` sub-group), sorted by name.
    static func scalarNames(_ group: H5Group) throws -> [String] {
        try group.children().sorted().filter { group.kind(of: $0) == .dataset }
    }

    /// A language model's `domains/<name>/<split>_{loss, accuracy, bits_per_byte}` as a table:
    /// one row per domain, one column per metric present (sorted), empty without `domains`.
    static func domainTable(_ summary: H5Group) throws -> [String] {
        guard summary.kind(of: "domains") == .group else { return [] }
        let domains = try summary.openGroup("domains")
        let names = try domains.children()
        guard let first = names.first else { return [] }
        let columns = try scalarNames(try domains.openGroup(first))
        let width = max(6, names.map(\.count).max() ?? 0)
        var lines = ["    per domain:", "    " + "domain".padding(toLength: width, withPad: " ", startingAt: 0)
                     + columns.map { pad($0, max(9, $0.count + 2)) }.joined()]
        for name in names {
            let g = try domains.openGroup(name)
            let cells = try columns.map { c in
                pad(g.exists(c) ? formatMetric(try g.readScalar(c, as: Double.self)) : "-", max(9, c.count + 2))
            }
            lines.append("    " + name.padding(toLength: width, withPad: " ", startingAt: 0) + cells.joined())
        }
        return lines
    }

    /// The last row of each MoE layer's router series: every expert's share of the routed
    /// assignments (mean load over the last log window, in %), the dropped fraction and the
    /// coefficient of variation of the load.
    static func routerTable(_ router: H5Group) throws -> [String] {
        let blocks = try router.children().compactMap(Int.init).sorted()
        guard !blocks.isEmpty else { return [] }
        var lines: [String] = [], biasLines: [String] = []
        for block in blocks {
            let g = try router.openGroup(String(block))
            let steps: [Int64] = try g.read("step").values
            let (load, shape) = try g.read("load", as: Double.self)
            guard let step = steps.last, shape.count == 2, shape[0] > 0 else { continue }
            let e = shape[1]
            let last = Array(load[(shape[0] - 1) * e ..< shape[0] * e])
            let total = last.reduce(0, +)
            let dropped: [Double] = try g.read("dropped_fraction").values
            let cv: [Double] = try g.read("load_cv").values
            let violation: [Double] = g.exists("max_violation") ? try g.read("max_violation").values : []
            if lines.isEmpty {
                lines.append("  router load at step \(step), share of routed tokens per expert (%):")
                lines.append("    block" + (0..<e).map { pad("e\($0)", 6) }.joined() + pad("dropped", 9) + pad("cv", 7)
                             + (violation.isEmpty ? "" : pad("maxvio", 8)))
            }
            let shares = last.map { pad(String(format: "%.1f", total > 0 ? 100 * $0 / total : 0), 6) }.joined()
            lines.append("    " + pad(String(block), 5) + shares + pad(String(format: "%.1f%%", 100 * (dropped.last ?? 0)), 9)
                         + pad(String(format: "%.3f", cv.last ?? .nan), 7)
                         + (violation.isEmpty ? "" : pad(String(format: "%.3f", violation.last ?? .nan), 8)))
            if g.exists("expert_bias") {
                // router.balance: bias: the selection-only bias after the last logged step.
                let (bias, biasShape) = try g.read("expert_bias", as: Double.self)
                if biasShape.count == 2, biasShape[0] > 0, biasShape[1] == e {
                    if biasLines.isEmpty {
                        biasLines.append("  expert bias at step \(step) (added to the scores to choose experts, never to the gates):")
                    }
                    biasLines.append("    " + pad(String(block), 5)
                                     + bias[(biasShape[0] - 1) * e ..< biasShape[0] * e].map { pad(String(format: "%+.3f", $0), 8) }.joined())
                }
            }
        }
        return lines + biasLines
    }
}

/// `text` right-aligned in `width` columns.
private func pad(_ text: String, _ width: Int) -> String {
    String(repeating: " ", count: max(0, width - text.count)) + text
}
