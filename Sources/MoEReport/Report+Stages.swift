import Foundation
import MoEHDF5

/// A run's training stages on one global step axis: each training task's local steps 1…S are
/// shifted by the offset where its inputs ended, `offset(t) = max over upstream tasks u of
/// (offset(u) + steps(u))` along the plan's `depends_on` edges (`steps(u)` = the task file's
/// `steps` attribute, else its last logged step; 0 for tasks that do not train). So a branch
/// run reads pretrain 0…P, then the experts side by side over P…P+E (they train in parallel
/// from the same seed), then the fine-tune from P+E on.
struct StageAxis {
    /// The offset of each task id.
    var offsets: [String: Double] = [:]
    /// Where a later stage starts, with the tasks that start there (for a vertical marker).
    var boundaries: [(x: Double, label: String)] = []

    init(runDirectory: String, taskFiles: [String]) {
        var steps: [String: Double] = [:]
        for path in taskFiles {
            let id = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
            guard let file = try? H5File.open(path) else { continue }
            if let s = try? file.attribute("steps", as: Int64.self) {
                steps[id] = Double(s)
            } else if let last = Report.numbers(file, "metrics/step")?.values.last {
                steps[id] = last
            }
        }
        let plan = Self.dependencies(runDirectory + "/run.h5")
        var memo: [String: Double] = [:]
        func offset(_ id: String, _ depth: Int) -> Double {
            if let o = memo[id] { return o }
            guard depth < 1000 else { return 0 }
            let o = (plan[id] ?? []).map { offset($0, depth + 1) + (steps[$0] ?? 0) }.max() ?? 0
            memo[id] = o
            return o
        }
        var starts: [Double: [String]] = [:]
        for id in plan.keys.sorted() where steps[id] != nil {
            let o = offset(id, 0)
            offsets[id] = o
            if o > 0 { starts[o, default: []].append(id) }
        }
        boundaries = starts.keys.sorted().map { x in
            let ids = starts[x]!.sorted()
            return (x: x, label: ids.count <= 2 ? ids.joined(separator: ", ") : "\(ids.first!) … \(ids.last!)")
        }
    }

    /// The plan's `depends_on` lists by task id (run.h5's `/plan` JSON); empty when unreadable.
    static func dependencies(_ runFile: String) -> [String: [String]] {
        guard let file = try? H5File.open(runFile), let text = try? file.readString("plan"),
              let json = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let tasks = json["tasks"] as? [[String: Any]] else { return [:] }
        var out: [String: [String]] = [:]
        for t in tasks {
            guard let id = t["id"] as? String else { continue }
            out[id] = t["depends_on"] as? [String] ?? []
        }
        return out
    }

    /// `points` shifted by the offset of `task`.
    func shifted(_ points: [(x: Double, y: Double)], task: String) -> [(x: Double, y: Double)] {
        let o = offsets[task] ?? 0
        return points.map { (x: $0.x + o, y: $0.y) }
    }
}
