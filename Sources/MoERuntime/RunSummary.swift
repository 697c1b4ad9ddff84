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
        if file.exists("summary") {
            for model in try file.openGroup("summary").children() {
                let group = try file.openGroup("summary/" + model)
                let values = try group.children().sorted().map { "\($0) \(formatMetric(try group.readScalar($0, as: Double.self)))" }
                lines.append("  summary/\(model): " + values.joined(separator: ", "))
            }
        }
        if file.exists("models") { lines.append("  models: " + (try file.openGroup("models").children()).joined(separator: ", ")) }
        if file.exists("tasks") { lines.append("  tasks: " + (try file.openGroup("tasks").children()).joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }

    private func taskText(_ file: H5File) throws -> String {
        var lines = ["task \((try? file.stringAttribute("task")) ?? "?") — \(path)"]
        if file.exists("metrics/step") {
            let steps: [Int64] = try file.read("metrics/step").values
            let loss: [Double] = try file.read("metrics/train_loss").values
            if let s = steps.last, let l = loss.last { lines.append("  \(steps.count) log rows; last step \(s), train_loss \(formatMetric(l))") }
        }
        if file.exists("checkpoints") { lines.append("  checkpoints at steps " + (try file.openGroup("checkpoints").children()).joined(separator: ", ")) }
        if file.exists("model") { lines.append("  final model at /model") }
        if file.exists("summary/final") {
            let g = try file.openGroup("summary/final")
            lines.append("  " + (try g.children().sorted().map { "\($0) \(formatMetric(try g.readScalar($0, as: Double.self)))" }).joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }
}
