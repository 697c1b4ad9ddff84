import Foundation

/// A sweep's complete trials grouped by setting: trials that agree on every *group key* form a
/// group, and the other swept keys (by default `seed` and `*.seed`: replicates) are pooled. Each
/// group has n (its complete trials) and, per metric, n, mean, sd and the 95 % confidence
/// interval of the mean (Student t with n − 1 degrees of freedom; `ReplicateStatistics`).
/// `--group-by KEY` (repeatable) names the group keys instead: every other swept key is pooled.
public struct TrialGroups {
    public struct Group {
        /// The group keys' values, in the order of `groupKeys`.
        public var values: [String]
        /// The trial numbers of its complete trials, in order.
        public var trials: [String]
        /// Per metric: the statistics of its values (absent when no trial has the metric).
        public var statistics: [String: ReplicateStatistics]
        /// Per metric: its trials' values, in trial order.
        public var samples: [String: [Double]] = [:]
    }

    /// The metrics summarised (columns of summary.csv), in order.
    public static let metricColumns = ["val_loss", "val_accuracy", "test_loss", "test_accuracy", "dropped_fraction", "wall_seconds"]

    public let groupKeys: [String]
    /// The swept keys pooled within a group.
    public let pooledKeys: [String]
    public let metrics: [String]
    public private(set) var groups: [Group]

    /// Groups the complete rows of `table` (a summary.csv with `trial` and `status`). Without
    /// `groupBy` the group keys are the swept keys that are not replicate keys; nil when that
    /// pools nothing (no seed swept). Throws when `groupBy` names a key that is not swept.
    public init?(table: CompareTable, sweptKeys: [String], groupBy: [String]?) throws {
        let keys: [String]
        if let groupBy {
            for key in groupBy where !sweptKeys.contains(key) {
                throw ReportError(description: "--group-by: \"\(key)\" is not a swept key; the swept keys are: " + sweptKeys.joined(separator: ", "))
            }
            keys = sweptKeys.filter { groupBy.contains($0) }
        } else {
            keys = sweptKeys.filter { !Report.isReplicateKey($0) }
            if keys.count == sweptKeys.count { return nil }
        }
        groupKeys = keys
        pooledKeys = sweptKeys.filter { !keys.contains($0) }
        guard let ti = table.columns.firstIndex(of: "trial"), let si = table.columns.firstIndex(of: "status") else { return nil }
        metrics = Self.metricColumns.filter { table.columns.contains($0) }
        let keyIndex = groupKeys.map { table.columns.firstIndex(of: $0)! }
        var groups: [Group] = []
        var values: [[String: [Double]]] = []
        for row in table.rows where row[si] == "complete" {
            let setting = keyIndex.map { row[$0] }
            let g: Int
            if let found = groups.firstIndex(where: { $0.values == setting }) {
                g = found
            } else {
                groups.append(Group(values: setting, trials: [], statistics: [:]))
                values.append([:])
                g = groups.count - 1
            }
            groups[g].trials.append(row[ti])
            for m in metrics {
                if let x = Double(row[table.columns.firstIndex(of: m)!]), x.isFinite { values[g][m, default: []].append(x) }
            }
        }
        for g in groups.indices {
            groups[g].samples = values[g]
            for (m, xs) in values[g] { groups[g].statistics[m] = ReplicateStatistics(xs) }
        }
        self.groups = groups
    }

    /// The groups ordered by the mean of `metric` (accuracy descending, anything else ascending,
    /// groups without it last); a group key sorts by its values. Unknown names leave the order.
    public mutating func sort(by column: String) {
        let descending = column.contains("accuracy")
        if let k = groupKeys.firstIndex(of: column) {
            groups = groups.enumerated().sorted { a, b in
                let x = a.element.values[k], y = b.element.values[k]
                if let p = Double(x), let q = Double(y), p != q { return p < q }
                return x != y ? x < y : a.offset < b.offset
            }.map(\.element)
            return
        }
        guard metrics.contains(column) else { return }
        groups = groups.enumerated().sorted { a, b in
            switch (a.element.statistics[column]?.mean, b.element.statistics[column]?.mean) {
            case let (p?, q?) where p != q: return descending ? p > q : p < q
            case (nil, _?): return false
            case (_?, nil): return true
            default: return a.offset < b.offset
            }
        }.map(\.element)
    }

    /// The metrics shown in the printed table: those with a value that differs between trials
    /// (a constant one, such as no drops, says nothing), without `wall_seconds` (in the CSV).
    var shownMetrics: [String] {
        metrics.filter { m in
            m != "wall_seconds" && Set(groups.flatMap { g in g.statistics[m].map { [$0.mean, $0.sd ?? 0] } ?? [] }).count > 1
        }
    }

    /// The printed table: the group keys, `n`, and per shown metric `mean ± sd` and its 95 % CI.
    public var table: CompareTable {
        let shown = shownMetrics
        let columns = groupKeys + ["n"] + shown.flatMap { [$0, $0 + "_ci95"] }
        let rows = groups.map { g in
            g.values + [String(g.trials.count)] + shown.flatMap { m in
                g.statistics[m].map { [$0.meanText, $0.intervalText] } ?? ["", ""]
            }
        }
        return CompareTable(columns: columns, rows: rows)
    }

    /// The heading printed above `table`.
    public var heading: String {
        let pooled = pooledKeys.isEmpty ? "nothing (one trial per group)" : pooledKeys.joined(separator: ", ")
        let by = groupKeys.isEmpty ? "all trials" : groupKeys.joined(separator: ", ")
        return "Grouped by \(by), pooled over \(pooled): n trials, mean ± sd, 95 % CI of the mean (Student t, n − 1 df)"
    }

    /// `summary-groups.csv`: the group keys, `n`, `trials` (space-separated trial numbers), and per
    /// metric `<m>_n`, `<m>_mean`, `<m>_sd`, `<m>_ci95_low`, `<m>_ci95_high` (empty when undefined).
    public func csv() -> String {
        let header = groupKeys + ["n", "trials"] + metrics.flatMap { m in ["_n", "_mean", "_sd", "_ci95_low", "_ci95_high"].map { m + $0 } }
        var out = header.map(Self.csvField).joined(separator: ",") + "\n"
        for g in groups {
            var cells = g.values + [String(g.trials.count), g.trials.joined(separator: " ")]
            for m in metrics {
                guard let s = g.statistics[m] else { cells += ["0", "", "", "", ""]; continue }
                cells += [String(s.n), Self.number(s.mean), s.sd.map(Self.number) ?? "",
                          s.ci95.map { Self.number($0.low) } ?? "", s.ci95.map { Self.number($0.high) } ?? ""]
            }
            out += cells.map(Self.csvField).joined(separator: ",") + "\n"
        }
        return out
    }

    static func number(_ x: Double) -> String { String(format: "%.9g", x) }

    static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
