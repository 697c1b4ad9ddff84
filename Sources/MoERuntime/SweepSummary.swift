import Foundation
import MoEHDF5
import MoESpec

/// The table of a sweep, one row per trial, written as `summary.csv` and `summary.h5` in the
/// sweep directory. Columns: `trial`, the swept keys (their values as YAML), `status`
/// (complete, failed, interrupted, invalid, not run), the final model's metrics from the run's
/// `/summary` (`val_loss`, `val_accuracy`, `test_loss`, `test_accuracy`; empty when not
/// evaluated), `dropped_fraction` (MoE runs: mean over MoE layers and log steps of the training
/// task's `/router/<block>/dropped_fraction`), `wall_seconds` (as measured by the sweep; for a
/// trial skipped as complete, `finished` − `started` of its run.h5), `run_dir` and `error`.
public struct SweepSummary {
    public struct Row {
        public var trial: SweepTrial
        public var status: String
        public var seconds: Double?
        public var error: String?
    }

    public static let metricColumns = ["val_loss", "val_accuracy", "test_loss", "test_accuracy", "dropped_fraction"]

    let plan: SweepPlan
    let rows: [Row]

    /// Wall times by run directory from the summary.csv of an earlier invocation (a trial skipped
    /// as complete keeps the time it took when it ran).
    var previous: [String: Double] {
        guard let text = try? String(contentsOfFile: plan.directory + "/summary.csv", encoding: .utf8) else { return [:] }
        let lines = text.split(separator: "\n").map { Self.csvFields(String($0)) }
        guard let header = lines.first, let w = header.firstIndex(of: "wall_seconds"), let d = header.firstIndex(of: "run_dir") else { return [:] }
        var out: [String: Double] = [:]
        for fields in lines.dropFirst() where fields.count > max(w, d) {
            if let seconds = Double(fields[w]) { out[fields[d]] = seconds }
        }
        return out
    }

    /// The fields of one CSV line as `csvField` writes them.
    static func csvFields(_ line: String) -> [String] {
        var fields: [String] = [], field = "", quoted = false
        var chars = Array(line)[...]
        while let c = chars.popFirst() {
            if quoted {
                if c == "\"" {
                    if chars.first == "\"" { field.append("\""); chars.removeFirst() } else { quoted = false }
                } else { field.append(c) }
            } else if c == "\"" && field.isEmpty {
                quoted = true
            } else if c == "," {
                fields.append(field)
                field = ""
            } else {
                field.append(c)
            }
        }
        return fields + [field]
    }

    /// Column names, in order.
    var columns: [String] {
        ["trial"] + plan.sweep.parameters.map(\.keyPath) + ["status"] + Self.metricColumns + ["wall_seconds", "run_dir", "error"]
    }

    /// The cells of every row (text; empty = missing).
    func table() -> [[String]] {
        let previous = self.previous
        return rows.map { row in
            var cells = [String(row.trial.number)] + row.trial.overrides.map { Self.cell($0.value) } + [row.status]
            let metrics = row.trial.layout.map { Self.metrics(of: $0) } ?? [:]
            cells += Self.metricColumns.map { metrics[$0].map(Self.number) ?? "" }
            let seconds = row.seconds ?? previous[row.trial.layout?.directory ?? ""] ?? metrics["wall_seconds"]
            cells += [seconds.map { String(format: "%.2f", $0) } ?? "", row.trial.layout?.directory ?? "", row.error ?? ""]
            return cells
        }
    }

    /// Writes `summary.csv` and `summary.h5` (each replaced atomically).
    func write() throws {
        let cells = table()
        let columns = self.columns
        var csv = columns.map(Self.csvField).joined(separator: ",") + "\n"
        for row in cells { csv += row.map(Self.csvField).joined(separator: ",") + "\n" }
        let csvPath = plan.directory + "/summary.csv"
        do {
            try csv.write(toFile: csvPath, atomically: true, encoding: .utf8)
        } catch {
            throw RuntimeError.io(path: csvPath, message: "cannot write: \(error.localizedDescription)")
        }
        let numeric = Set(columns.enumerated().filter { c in
            c.element != "run_dir" && c.element != "status" && c.element != "error"
                && cells.allSatisfy { $0[c.offset].isEmpty || Double($0[c.offset]) != nil }
        }.map(\.offset))
        try H5File.createAtomically(plan.directory + "/summary.h5") { file in
            try file.setAttribute("format", "moe-run/1")
            try file.setAttribute("kind", "sweep")
            try file.setAttribute("name", plan.name)
            try file.setAttribute("spec", plan.specPath)
            try file.setAttribute("sweep", plan.sweep.yamlText)
            try file.setAttribute("sweep_hash", plan.hash)
            try file.createStrings("columns", columns)
            for (c, column) in columns.enumerated() {
                let path = "trials/" + column
                if numeric.contains(c) {
                    try file.createDataset(path, cells.map { Double($0[c]) ?? .nan })
                } else {
                    try file.createStrings(path, cells.map { $0[c] })
                }
            }
        }
    }

    /// A swept value in a cell: numbers and words plain, anything else as YAML.
    static func cell(_ value: SpecValue) -> String { value.yamlText }

    static func number(_ x: Double) -> String { String(format: "%.6g", x) }

    static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// The final metrics of the run at `layout` (see the type's documentation), by column name.
    static func metrics(of layout: RunLayout) -> [String: Double] {
        guard let file = try? H5File.open(layout.runFile) else { return [:] }
        var out: [String: Double] = [:]
        if file.exists("summary"), let models = try? file.openGroup("summary").children(), !models.isEmpty {
            let model = models.contains("final") ? "final" : models.sorted()[0]
            for name in ["val_loss", "val_accuracy", "test_loss", "test_accuracy"] where file.exists("summary/\(model)/\(name)") {
                out[name] = try? file.readScalar("summary/\(model)/\(name)", as: Double.self)
            }
        }
        let iso = ISO8601DateFormatter()
        if let s = try? file.stringAttribute("started"), let f = try? file.stringAttribute("finished"),
           let start = iso.date(from: s), let finish = iso.date(from: f) {
            out["wall_seconds"] = finish.timeIntervalSince(start)
        }
        if let train = try? H5File.open(layout.taskFile("train")), train.exists("router"),
           let blocks = try? train.openGroup("router").children() {
            var sum = 0.0, n = 0
            for block in blocks where train.exists("router/\(block)/dropped_fraction") {
                let v = (try? train.read("router/\(block)/dropped_fraction", as: Double.self).values) ?? []
                sum += v.reduce(0, +)
                n += v.count
            }
            if n > 0 { out["dropped_fraction"] = sum / Double(n) }
        }
        return out
    }
}
