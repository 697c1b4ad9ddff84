import Foundation
import MoEHDF5

/// `moe-run ls [DIR]`: the runs under a results folder (any depth up to 4: `results/<name>/<id>/`,
/// a spec's folder, or one run directory), one row each: status, name, run id, the swept values
/// (when a sweep's summary.csv below DIR lists the run), the final model's key metrics (from
/// run.h5's `/summary/final`, else its first model) and the age (now − finished, else started).
/// Rows are sorted by start time, oldest first (the newest last, next to the prompt).
public struct RunList {
    public static let metricColumns = ["val_loss", "test_loss", "test_accuracy", "test_bits_per_byte"]

    public let directory: String
    public private(set) var table: CompareTable

    public init(directory: String, now: Date = Date()) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw ReportError(description: "\(directory): no such directory")
        }
        self.directory = directory
        let root = Self.canonical(directory)
        let runs = Self.runDirectories(root, depth: 0)
        // One run directory: its sweep, if any, is next to it.
        let swept = Self.sweptValues(runs == [root] ? (root as NSString).deletingLastPathComponent : root)
        var rows: [(started: String, cells: [String: String])] = []
        for dir in runs {
            guard let file = try? H5File.open(dir + "/run.h5") else { continue }
            func attr(_ name: String) -> String { (try? file.stringAttribute(name)) ?? "" }
            var cells = ["status": attr("status").isEmpty ? "?" : attr("status"), "name": attr("name"),
                         "id": (dir as NSString).lastPathComponent,
                         "swept": swept[Self.canonical(dir)] ?? ""]
            if file.exists("summary"), let models = try? file.openGroup("summary").children(), !models.isEmpty {
                let model = models.contains("final") ? "final" : models.sorted()[0]
                for m in Self.metricColumns where file.exists("summary/\(model)/\(m)") {
                    if let v = try? file.readScalar("summary/\(model)/\(m)", as: Double.self) { cells[m] = String(format: "%.4g", v) }
                }
            }
            let iso = ISO8601DateFormatter()
            let stamp = attr("finished").isEmpty ? attr("started") : attr("finished")
            cells["age"] = iso.date(from: stamp).map { Self.age(now.timeIntervalSince($0)) } ?? ""
            rows.append((attr("started"), cells))
        }
        rows.sort { $0.started != $1.started ? $0.started < $1.started : ($0.cells["id"] ?? "") < ($1.cells["id"] ?? "") }
        let metrics = Self.metricColumns.filter { m in rows.contains { $0.cells[m] != nil } }
        var columns = ["status", "name", "id"]
        if rows.contains(where: { !($0.cells["swept"] ?? "").isEmpty }) { columns.append("swept") }
        columns += metrics + ["age"]
        table = CompareTable(columns: columns, rows: rows.map { r in columns.map { r.cells[$0] ?? "" } })
    }

    /// Directories holding run.h5 at or below `dir` (not inside a run's `tasks` or `report`).
    static func runDirectories(_ dir: String, depth: Int) -> [String] {
        if FileManager.default.fileExists(atPath: dir + "/run.h5") { return [dir] }
        guard depth < 4, let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        return names.sorted().flatMap { name -> [String] in
            let path = dir + "/" + name
            var isDir: ObjCBool = false
            guard !name.hasPrefix("."), FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else { return [] }
            return runDirectories(path, depth: depth + 1)
        }
    }

    /// `key=value …` of every trial in the summary.csv files below `dir`, by canonical run directory.
    static func sweptValues(_ directory: String) -> [String: String] {
        // Absolute paths only: Foundation's path operations trap on some relative ones (".").
        let dir = canonical(directory)
        var out: [String: String] = [:]
        guard let enumerator = FileManager.default.enumerator(atPath: dir) else { return out }
        while let rel = enumerator.nextObject() as? String {
            if rel.hasSuffix("/tasks") || rel.hasSuffix("/report") || rel.hasSuffix("/checkpoints") { enumerator.skipDescendants(); continue }
            guard (rel as NSString).lastPathComponent == "summary.csv",
                  let table = try? CompareTable.csv(path: dir + "/" + rel),
                  let t = table.columns.firstIndex(of: "trial"), let s = table.columns.firstIndex(of: "status"), t < s,
                  let d = table.columns.firstIndex(of: "run_dir") else { continue }
            let sweepDir = (dir + "/" + rel as NSString).deletingLastPathComponent
            for row in table.rows where !row[d].isEmpty {
                let label = ((t + 1)..<s).map { "\(table.columns[$0])=\(row[$0])" }.joined(separator: " ")
                // run_dir is as the sweep wrote it (relative to where it ran): match by name/id.
                let runDir = (row[d] as NSString).lastPathComponent
                let sibling = (sweepDir as NSString).deletingLastPathComponent + "/" + runDir
                out[canonical(sibling)] = label
            }
        }
        return out
    }

    static func canonical(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path }

    /// `42s`, `5m`, `3h`, `2d`.
    static func age(_ seconds: TimeInterval) -> String {
        let s = max(0, seconds)
        if s < 60 { return "\(Int(s))s" }
        if s < 3600 { return "\(Int(s / 60))m" }
        if s < 86400 { return "\(Int(s / 3600))h" }
        return "\(Int(s / 86400))d"
    }
}
