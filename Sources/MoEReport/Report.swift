import Foundation
import MoEHDF5

/// `moe-run report DIR`: the compare table of a sweep (its summary.csv, only the columns that
/// vary) or of a run (its models' final metrics), and standalone SVG plots with an index.html in
/// `DIR/report/`:
/// - `loss.svg` (a run: training loss and validation loss, dashed, per training task) or
///   `train_loss.svg` and `val_loss.svg` (a sweep: one line per trial, labelled by its values);
/// - `router-violation.svg` (a run) or `max_violation.svg` (a sweep: one line per trial): the
///   maximal violation of the expert load over training (`violationCurve`), for MoE runs;
/// - `router-<task|trial-N>-<block>.svg`: the share of samples each expert received at each log
///   step, per MoE layer (a heat map, experts × steps);
/// - `fusion-barrier.svg` (a sweep: `fusion-barrier-trial-N.svg`) when a file of the run has
///   `/fusion/barrier/<a>--<b>/{alpha, val_loss}` (fused ↔ expert curves dashed);
/// - a sweep's `<metric>-vs-<key>.svg`: the final metric against each swept key's values, one
///   line per combination of the other swept keys; a swept `seed` is a replicate: points are the
///   mean over seeds (each seed a dot) and router heat maps and fusion curves are drawn for the
///   first seed only.
public struct Report {
    public let directory: String
    public let isSweep: Bool
    /// The table shown (sorted, only varying columns for a sweep).
    public private(set) var table: CompareTable
    /// The SVG files written (names in `DIR/report/`), in order.
    public private(set) var plots: [String] = []
    /// A sweep's trials grouped by setting (pooled over seeds, or as `--group-by` says); nil for a
    /// run, or a sweep without replicates and without `--group-by`.
    public private(set) var groups: TrialGroups?
    /// The keys `--group-by` named (nil: the default grouping).
    let groupBy: [String]?

    public var reportDirectory: String { directory + "/report" }

    /// Reads `directory` (a sweep directory holding summary.csv, or a run directory holding
    /// run.h5) and sorts its table by `sort` when given; `groupBy` names a sweep's group keys.
    public init(directory: String, sort: String?, groupBy: [String]? = nil) throws {
        let dir = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        self.directory = dir
        let fm = FileManager.default
        if fm.fileExists(atPath: dir + "/summary.csv") {
            isSweep = true
            table = try CompareTable.csv(path: dir + "/summary.csv")
        } else if fm.fileExists(atPath: dir + "/run.h5") {
            isSweep = false
            table = try Self.runTable(dir + "/run.h5")
        } else {
            throw ReportError(description: "\(directory): neither a sweep directory (summary.csv) nor a run directory (run.h5)")
        }
        self.groupBy = groupBy
        if let sort { table = try table.sorted(by: sort) }
        if isSweep {
            groups = try TrialGroups(table: table, sweptKeys: sweptKeys, groupBy: groupBy)
            if let sort { groups?.sort(by: sort) }
        } else if groupBy != nil {
            throw ReportError(description: "--group-by: \(dir) is a run directory; groups are formed from the trials of a sweep directory")
        }
    }

    /// The table as printed: for a sweep only the columns that vary between trials (always
    /// `trial` and `status`; never `run_dir`, which is in summary.csv); a run's table in full.
    public var shownTable: CompareTable {
        isSweep ? table.varying(keep: ["trial", "status"], drop: ["run_dir"]) : table
    }

    /// Writes the plots and index.html; returns the path of index.html.
    public mutating func write() throws -> String {
        do {
            try FileManager.default.createDirectory(atPath: reportDirectory, withIntermediateDirectories: true)
        } catch {
            throw ReportError(description: "\(reportDirectory): cannot create: \(error.localizedDescription)", exitCode: 1)
        }
        var charts: [(String, String)] = []   // (file name, svg)
        if isSweep { charts += sweepCharts() } else { charts += runCharts(runDirectory: directory, tag: nil) }
        for (name, svg) in charts {
            let path = reportDirectory + "/" + name
            do {
                try svg.write(toFile: path, atomically: true, encoding: .utf8)
            } catch {
                throw ReportError(description: "\(path): cannot write: \(error.localizedDescription)", exitCode: 1)
            }
        }
        plots = charts.map(\.0)
        let index = reportDirectory + "/index.html"
        try? html().write(toFile: index, atomically: true, encoding: .utf8)
        return index
    }

    func html() -> String {
        let title = (isSweep ? "Sweep " : "Run ") + (directory as NSString).lastPathComponent
        var out = """
        <!DOCTYPE html>
        <html><head><meta charset="utf-8"><title>\(SVG.escape(title))</title>
        <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}img{max-width:100%;border:1px solid #ddd;margin:6px 0}figure{margin:1em 0}</style>
        </head><body>
        <h1>\(SVG.escape(title))</h1>
        <p>\(SVG.escape(directory))</p>
        <h2>\(isSweep ? "Trials (columns that vary)" : "Final metrics")</h2>

        """
        out += shownTable.html()
        if let groups {
            out += "<h2>\(SVG.escape(groups.heading))</h2>\n" + groups.table.html()
            out += "<p>Also in <a href=\"../summary-groups.csv\">summary-groups.csv</a></p>\n"
        }
        if isSweep { out += "<p>All columns: <a href=\"../summary.csv\">summary.csv</a>, <a href=\"../summary.h5\">summary.h5</a></p>\n" }
        out += "<h2>Plots</h2>\n"
        for p in plots { out += "<figure><img src=\"\(SVG.escape(p))\" alt=\"\(SVG.escape(p))\"><figcaption>\(SVG.escape(p))</figcaption></figure>\n" }
        return out + "</body></html>\n"
    }

    // MARK: Runs

    /// One row per model in run.h5's `/summary`: its metrics.
    static func runTable(_ path: String) throws -> CompareTable {
        let file: H5File
        do { file = try H5File.open(path) } catch { throw ReportError(description: "\(path): cannot open: \(error)") }
        let names = ["val_loss", "val_accuracy", "test_loss", "test_accuracy"]
        var rows: [[String]] = []
        if file.exists("summary") {
            for model in try file.openGroup("summary").children().sorted() {
                rows.append([model] + names.map { n in
                    (try? file.readScalar("summary/\(model)/\(n)", as: Double.self)).map { String(format: "%.6g", $0) } ?? ""
                })
            }
        }
        return CompareTable(columns: ["model"] + names, rows: rows)
    }

    /// The finished task files of a run directory (`tasks/*.h5`), sorted.
    static func taskFiles(_ runDirectory: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: runDirectory + "/tasks")) ?? []
        return names.filter { $0.hasSuffix(".h5") && !$0.hasSuffix(".partial.h5") }.sorted().map { runDirectory + "/tasks/" + $0 }
    }

    /// A numeric dataset as Double, whatever its stored type (float64, float32, int64, int32).
    static func numbers(_ file: H5File, _ path: String) -> (values: [Double], shape: [Int])? {
        if let r = try? file.read(path, as: Double.self) { return r }
        if let r = try? file.read(path, as: Float.self) { return (r.values.map(Double.init), r.shape) }
        if let r = try? file.read(path, as: Int64.self) { return (r.values.map(Double.init), r.shape) }
        if let r = try? file.read(path, as: Int32.self) { return (r.values.map(Double.init), r.shape) }
        return nil
    }

    /// (step, value) of `/metrics/<series>` (or `/metrics/eval/<series>`) in an open task file.
    static func curve(_ file: H5File, _ group: String, _ name: String) -> [(x: Double, y: Double)] {
        guard file.exists("\(group)/step"), file.exists("\(group)/\(name)"),
              let steps = numbers(file, "\(group)/step")?.values,
              let values = numbers(file, "\(group)/\(name)")?.values else { return [] }
        return zip(steps, values).map { (x: $0, y: $1) }
    }

    /// A run's plots: `loss.svg` with every training task on one global step axis (`StageAxis`),
    /// router heat maps, and the fusion barrier curves; each says what its data is.
    func runCharts(runDirectory: String, tag: String?) -> [(String, String)] {
        var out: [(String, String)] = []
        var series: [ChartSeries] = []
        var barrier: [ChartSeries] = [], barrierData: Set<String> = []
        var heatmaps: [(String, String)] = []
        var violation: [ChartSeries] = []
        let tasks = Self.taskFiles(runDirectory)
        let training = tasks.filter { path in (try? H5File.open(path))?.exists("metrics/train_loss") ?? false }
        let axis = StageAxis(runDirectory: runDirectory, taskFiles: training)
        let staged = !axis.boundaries.isEmpty
        let stepLabel = staged ? "global training step (each stage continues where its inputs ended)" : "training step"
        var shards: [String] = []
        for path in tasks {
            guard let file = try? H5File.open(path) else { continue }
            let task = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
            let prefix = training.count > 1 ? task + ": " : ""
            let train = axis.shifted(Self.curve(file, "metrics", "train_loss"), task: task)
            if !train.isEmpty { series.append(ChartSeries(label: prefix + "train_loss", points: train)) }
            let val = axis.shifted(Self.curve(file, "metrics/eval", "val_loss"), task: task)
            if !val.isEmpty { series.append(ChartSeries(label: prefix + "val_loss", points: val, dashed: true)) }
            let m = axis.shifted(Self.violationCurve(file), task: task)
            if !m.isEmpty { violation.append(ChartSeries(label: task, points: m)) }
            if let shard = try? file.attribute("shard", as: Int64.self) {
                shards.append("\(task): shard \(shard)" + ((try? file.stringAttribute("shard_by")).map { " by \($0)" } ?? ""))
            }
            if file.exists("router"), let blocks = try? file.openGroup("router").children() {
                for block in blocks.sorted() {
                    if let svg = Self.routerHeatMap(file, block: block, title: "Router load — \(tag ?? task), block \(block)",
                                                    shift: axis.offsets[task] ?? 0, xLabel: stepLabel) {
                        heatmaps.append(("router-\(Self.safe(tag ?? task))-\(Self.safe(block)).svg", svg))
                    }
                }
            }
            barrier += Self.barrierSeries(file)
            barrierData.formUnion(Self.barrierData(file))
        }
        if let run = try? H5File.open(runDirectory + "/run.h5") {
            barrier += Self.barrierSeries(run)
            barrierData.formUnion(Self.barrierData(run))
        }
        if !series.isEmpty {
            var note = ["solid: training loss, mean over each log window of the task's training batches"
                        + (shards.isEmpty ? "" : " (an expert's: its shard only)"),
                        "dashed: loss on the whole validation split (experts too)"]
            if !shards.isEmpty { note.append(SVG.truncate(shards.joined(separator: "; "), 120)) }
            var chart = LineChart(title: "Loss — " + (runDirectory as NSString).lastPathComponent,
                                  xLabel: stepLabel, yLabel: "cross-entropy loss", series: series, note: note)
            chart.markers = axis.boundaries
            out.append(("loss.svg", chart.svg()))
        }
        if !violation.isEmpty {
            var chart = LineChart(title: "Maximal violation of the expert load — " + (runDirectory as NSString).lastPathComponent,
                                  xLabel: stepLabel, yLabel: "max violation", series: violation, note: [Self.violationNote])
            chart.markers = axis.boundaries
            out.append(("router-violation.svg", chart.svg()))
        }
        out += heatmaps
        if !barrier.isEmpty {
            out.append(("fusion-barrier.svg", LineChart(title: "Loss along the interpolation between experts",
                                                        xLabel: "interpolation α", yLabel: "validation loss", series: barrier,
                                                        note: Self.barrierNote(barrierData)).svg()))
        }
        return out
    }

    /// What the barrier curves were measured on: each `/fusion/barrier/<pair>` group's `data`
    /// attribute ("val", or "val, domains 0, 1": the validation samples of the endpoints' domains).
    static func barrierData(_ file: H5File) -> Set<String> {
        guard file.exists("fusion/barrier"), let pairs = try? file.openGroup("fusion/barrier").children() else { return [] }
        return Set(pairs.compactMap { try? file.openGroup("fusion/barrier/\($0)").stringAttribute("data") })
    }

    static func barrierNote(_ data: Set<String>) -> [String] {
        let domains = data.contains { $0.contains("domain") }
        return [domains ? "measured on the validation samples of each curve's endpoints' domains only (in brackets in the legend)"
                        : "measured on the whole validation split",
                "α = 0: the first model named, α = 1: the second; dashed: fused ↔ expert"]
    }

    /// One series per `/fusion/barrier/<a>--<b>` group (validation loss against α).
    static func barrierSeries(_ file: H5File) -> [ChartSeries] {
        guard file.exists("fusion/barrier"), let pairs = try? file.openGroup("fusion/barrier").children() else { return [] }
        return pairs.sorted().compactMap { pair in
            guard let a = numbers(file, "fusion/barrier/\(pair)/alpha")?.values,
                  let l = numbers(file, "fusion/barrier/\(pair)/val_loss")?.values else { return nil }
            let data = (try? file.openGroup("fusion/barrier/\(pair)").stringAttribute("data")).flatMap { d -> String? in
                guard let r = d.range(of: "domain") else { return nil }
                return " (" + d[r.lowerBound...].replacingOccurrences(of: "domains ", with: "dom ").replacingOccurrences(of: "domain ", with: "dom ") + ")"
            } ?? ""
            return ChartSeries(label: pair.replacingOccurrences(of: "--", with: " ↔ ") + data, points: zip(a, l).map { (x: $0, y: $1) },
                               dashed: pair.hasPrefix("fused"))
        }
    }

    /// The heat map of `/router/<block>/load` ([steps, experts]) as shares of each step's total.
    /// The maximal violation over training of a task file (Wang et al. 2024, "Auxiliary-Loss-Free
    /// Load Balancing", MaxVio = max_e c_e / mean(c) − 1, c = selections before capacity): per log
    /// row, the mean over the MoE blocks of `/router/<i>/max_violation`; empty without router series.
    static func violationCurve(_ file: H5File) -> [(x: Double, y: Double)] {
        guard file.exists("router"), let blocks = try? file.openGroup("router").children() else { return [] }
        let curves = blocks.sorted().map { curve(file, "router/\($0)", "max_violation") }.filter { !$0.isEmpty }
        guard let first = curves.first, curves.allSatisfy({ $0.count == first.count }) else { return [] }
        return first.indices.map { r in (x: first[r].x, y: curves.reduce(0) { $0 + $1[r].y } / Double(curves.count)) }
            .filter { $0.y.isFinite }
    }

    static let violationNote = "max_e c_e / mean(c) − 1 per log window of training batches (c = each expert's selections "
        + "before capacity), mean over the MoE blocks; 0 = perfectly even"

    static func routerHeatMap(_ file: H5File, block: String, title: String, shift: Double = 0, xLabel: String = "training step") -> String? {
        guard let load = numbers(file, "router/\(block)/load"), load.shape.count == 2,
              let steps = numbers(file, "router/\(block)/step")?.values else { return nil }
        let rows = load.shape[0], experts = load.shape[1]
        guard rows > 0, experts > 0 else { return nil }
        var values = [[Double]](repeating: [Double](repeating: 0, count: rows), count: experts)
        for r in 0..<rows {
            let total = (0..<experts).reduce(0.0) { $0 + load.values[r * experts + $1] }
            for e in 0..<experts { values[e][r] = total > 0 ? load.values[r * experts + e] / total : 0 }
        }
        return HeatMap(title: title, xLabel: xLabel, yLabel: "expert", rowNames: (0..<experts).map(String.init),
                       columnValues: (steps.count == rows ? steps : (0..<rows).map(Double.init)).map { $0 + shift },
                       values: values, scaleLabel: "share of samples",
                       note: ["the task's training batches: each expert's share of the routed assignments per log window"]).svg()
    }

    static func safe(_ s: String) -> String {
        String(s.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
    }

    // MARK: Sweeps

    /// The swept keys: the columns between `trial` and `status`.
    var sweptKeys: [String] {
        guard let t = table.columns.firstIndex(of: "trial"), let s = table.columns.firstIndex(of: "status"), t < s else { return [] }
        return Array(table.columns[(t + 1)..<s])
    }

    /// The run directory of a row: as written, else next to the sweep directory (moved results).
    func runDirectory(_ row: [String]) -> String? {
        guard let i = table.columns.firstIndex(of: "run_dir"), !row[i].isEmpty else { return nil }
        if FileManager.default.fileExists(atPath: row[i] + "/run.h5") { return row[i] }
        let sibling = (directory as NSString).deletingLastPathComponent + "/" + (row[i] as NSString).lastPathComponent
        return FileManager.default.fileExists(atPath: sibling + "/run.h5") ? sibling : nil
    }

    func label(_ row: [String], keys: [String]) -> String {
        keys.compactMap { k in table.columns.firstIndex(of: k).map { "\(k)=\(row[$0])" } }.joined(separator: " ")
    }

    /// A swept key that replicates a setting rather than changing it: `seed` and `*.seed`.
    static func isReplicateKey(_ key: String) -> Bool { key == "seed" || key.hasSuffix(".seed") }

    func sweepCharts() -> [(String, String)] {
        let keys = sweptKeys
        let chartGroups = self.chartGroups
        let ti = table.columns.firstIndex(of: "trial")!
        let si = table.columns.firstIndex(of: "status")!
        let rows = table.rows.filter { $0[si] == "complete" }.sorted { (Int($0[ti]) ?? 0) < (Int($1[ti]) ?? 0) }
        var out: [(String, String)] = []
        var train: [ChartSeries] = [], val: [ChartSeries] = [], violation: [ChartSeries] = []
        var heatmaps: [(String, String)] = []
        let firstReplicate = Dictionary(uniqueKeysWithValues: (chartGroups?.pooledKeys ?? []).map { key in
            (key, rows.first.map { $0[table.columns.firstIndex(of: key)!] } ?? "")
        })
        for row in rows {
            guard let dir = runDirectory(row) else { continue }
            let name = label(row, keys: keys)
            // Router heat maps of the first replicate (seed) of each setting only.
            let mapRouter = firstReplicate.allSatisfy { row[table.columns.firstIndex(of: $0.key)!] == $0.value }
            let files = Self.taskFiles(dir)
            let main = files.first { ($0 as NSString).lastPathComponent == "train.h5" }
                ?? files.first { (try? H5File.open($0))?.exists("metrics/train_loss") ?? false }
            guard let path = main, let file = try? H5File.open(path) else { continue }
            let t = Self.curve(file, "metrics", "train_loss")
            if !t.isEmpty { train.append(ChartSeries(label: name, points: t)) }
            let v = Self.curve(file, "metrics/eval", "val_loss")
            if !v.isEmpty { val.append(ChartSeries(label: name, points: v)) }
            let m = Self.violationCurve(file)
            if !m.isEmpty { violation.append(ChartSeries(label: name, points: m)) }
            if mapRouter {
                let barrier = files.compactMap { try? H5File.open($0) }.flatMap(Self.barrierSeries)
                if !barrier.isEmpty {
                    heatmaps.append(("fusion-barrier-trial-\(row[ti]).svg",
                                     LineChart(title: "Interpolation between experts — \(name)", xLabel: "interpolation α",
                                               yLabel: "validation loss", series: barrier,
                                               note: Self.barrierNote(Set(files.compactMap { try? H5File.open($0) }.flatMap(Self.barrierData)))).svg()))
                }
            }
            if mapRouter, file.exists("router"), let blocks = try? file.openGroup("router").children() {
                for block in blocks.sorted() {
                    if let svg = Self.routerHeatMap(file, block: block, title: "Router load — \(name), block \(block)") {
                        heatmaps.append(("router-trial-\(row[ti])-\(Self.safe(block)).svg", svg))
                    }
                }
            }
        }
        // With replicate keys (seed), the trials of one setting share a colour, each seed its dashes.
        let settingKeys = keys.filter { !(chartGroups?.pooledKeys ?? []).contains($0) }
        if settingKeys.count < keys.count {
            var settings: [String] = []
            for row in rows {
                let setting = label(row, keys: settingKeys)
                if !settings.contains(setting) { settings.append(setting) }
            }
            let patterns = [nil, "7 4", "2 3", "10 3 2 3"]
            let style = { (series: inout [ChartSeries]) in
                for i in series.indices {
                    guard let row = rows.first(where: { self.label($0, keys: keys) == series[i].label }) else { continue }
                    let setting = self.label(row, keys: settingKeys)
                    let replicate = rows.filter { self.label($0, keys: settingKeys) == setting }
                        .firstIndex { self.label($0, keys: keys) == series[i].label } ?? 0
                    series[i].colorIndex = settings.firstIndex(of: setting) ?? 0
                    series[i].dashPattern = patterns[replicate % patterns.count]
                }
            }
            style(&train)
            style(&val)
            style(&violation)
        }
        if !train.isEmpty {
            out.append(("train_loss.svg", LineChart(title: "Training loss per trial", xLabel: "training step",
                                                    yLabel: "training loss", series: train,
                                                    note: ["each trial's training task (train.h5, else its first training task): mean over each log window of its training batches"]).svg()))
        }
        if !val.isEmpty {
            out.append(("val_loss.svg", LineChart(title: "Validation loss per trial", xLabel: "training step",
                                                  yLabel: "validation loss", series: val,
                                                  note: ["each trial's training task (train.h5, else its first training task) on the whole validation split"]).svg()))
        }
        if !violation.isEmpty {
            out.append(("max_violation.svg", LineChart(title: "Maximal violation of the expert load per trial", xLabel: "training step",
                                                       yLabel: "max violation", series: violation,
                                                       note: [Self.violationNote]).svg()))
        }
        out += metricCharts()
        return out + heatmaps
    }
}
