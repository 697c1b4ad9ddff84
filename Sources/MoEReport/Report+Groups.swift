import Foundation

extension Report {
    /// The grouping of a sweep's charts: `groups`, else every trial its own group (nothing pooled).
    var chartGroups: TrialGroups? {
        if let groups { return groups }
        return (try? TrialGroups(table: table, sweptKeys: sweptKeys, groupBy: sweptKeys)) ?? nil
    }

    /// Writes `summary-groups.csv` next to summary.csv (`TrialGroups.csv`) when trials are grouped;
    /// returns its path.
    public func writeGroups() throws -> String? {
        guard let groups else { return nil }
        let path = directory + "/summary-groups.csv"
        do {
            try groups.csv().write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw ReportError(description: "\(path): cannot write: \(error.localizedDescription)", exitCode: 1)
        }
        return path
    }

    /// What a summary metric was measured on (summary.csv: the run's `final` model, else its first).
    static func metricNote(_ metric: String) -> String {
        if metric == "dropped_fraction" { return "the training task's router: share of assignments dropped by capacity, mean over MoE layers and log windows" }
        let split = metric.hasPrefix("test") ? "test" : "validation"
        return "each trial's final model (run.h5 /summary/final, else its first model) on the whole \(split) split"
    }

    /// A sweep's `<metric>-vs-<key>.svg`: the final metric against each group key's values, one
    /// line per combination of the other group keys. When trials are pooled (seeds), a point is
    /// the group's mean, its error bar the 95 % confidence interval of the mean (Student t, n − 1
    /// df; none for n = 1) and every trial's value a hollow dot.
    func metricCharts() -> [(String, String)] {
        guard let g = chartGroups else { return [] }
        var out: [(String, String)] = []
        let metrics = ["test_accuracy", "test_loss", "val_accuracy", "val_loss", "dropped_fraction"].filter(g.metrics.contains)
        let pooled = !g.pooledKeys.isEmpty
        for (k, key) in g.groupKeys.enumerated() {
            var distinct: [String] = []
            for group in g.groups where !distinct.contains(group.values[k]) { distinct.append(group.values[k]) }
            guard distinct.count > 1 else { continue }
            let numeric = distinct.allSatisfy { Double($0) != nil }
            if numeric { distinct.sort { Double($0)! < Double($1)! } }
            let others = g.groupKeys.indices.filter { $0 != k }
            for metric in metrics {
                var series: [ChartSeries] = [], counts: Set<Int> = []
                for group in g.groups {
                    guard let s = group.statistics[metric] else { continue }
                    let name = others.isEmpty ? metric : others.map { "\(g.groupKeys[$0])=\(group.values[$0])" }.joined(separator: " ")
                    let x = numeric ? Double(group.values[k])! : Double(distinct.firstIndex(of: group.values[k])!)
                    if !series.contains(where: { $0.label == name }) { series.append(ChartSeries(label: name, points: [])) }
                    let i = series.firstIndex { $0.label == name }!
                    series[i].points.append((x: x, y: s.mean))
                    if pooled {
                        series[i].replicates += (group.samples[metric] ?? []).map { (x: x, y: $0) }
                        if let ci = s.ci95 { series[i].errorBars.append((x: x, low: ci.low, high: ci.high)) }
                    }
                    counts.insert(s.n)
                }
                for i in series.indices { series[i].points.sort { $0.x < $1.x } }
                // A metric that is the same in every trial (no drops when dropless) says nothing.
                guard Set(series.flatMap { $0.points.map(\.y) + $0.replicates.map(\.y) }).count > 1 else { continue }
                var title = "\(metric) vs \(key)"
                if pooled {
                    let n = counts.count == 1 ? "n = \(counts.first!)" : "n = \(counts.min()!)–\(counts.max()!)"
                    title += " (mean ± 95 % CI over \(g.pooledKeys.joined(separator: ", ")), \(n); dots: each trial)"
                }
                out.append(("\(metric)-vs-\(Self.safe(key)).svg",
                            LineChart(title: title, xLabel: key, yLabel: metric, series: series,
                                      categories: numeric ? nil : distinct, xTickValues: numeric ? distinct.map { Double($0)! } : nil,
                                      note: [Self.metricNote(metric)]).svg()))
            }
        }
        return out
    }
}
