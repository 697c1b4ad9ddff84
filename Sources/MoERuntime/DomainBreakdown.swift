import Foundation
import MoECore
import MoEData
import MoEHDF5
import MoENN
import MoEStore

/// `moe-run show` on a feature-data (mlp) run whose data has domain ids: which expert serves which
/// domain, and how well each model does on each domain, computed on the run's test split (one
/// forward pass per model, no dropout; the HDF5 records routing only as totals per log window).
///
/// - MoE models: per MoE layer, the share of each domain's routed assignments that each expert
///   received (%, rows sum to 100), from the router's assignments in the forward pass.
/// - Every model in `/models` (branch experts, fused, final…): its accuracy on each domain's test
///   samples; with `split.shard_by: domain` an expert's own domains (d mod E = i) carry a `*`.
/// Transformer LMs are left out: their per-domain metrics are already in `/summary/<model>/domains`.
enum DomainBreakdown {
    static func lines(runFile: H5File, runDirectory: String) -> [String] {
        let layout = RunLayout(directory: runDirectory)
        guard let models = try? runFile.openGroup("models").children(),
              let (data, _) = try? DataTask.load("test", layout: layout), let domains = data.domain, data.count > 0 else { return [] }
        let ids = Array(Set(domains)).sorted()
        var loaded: [(name: String, model: ResidualMLP)] = []
        for name in models {
            let path = "models/" + name
            guard !EnsembleModel.isEnsemble(runFile, at: path),
                  let (model, _) = try? Checkpoint.loadModel(from: runFile, at: path), model.config.features == data.features else { continue }
            loaded.append((name, model))
        }
        guard !loaded.isEmpty else { return [] }
        var lines = ["  per domain, on the test split (\(data.count) samples; computed now by a forward pass):"]
        // Routing shares of the final model (else the first MoE model).
        if let (name, model) = loaded.first(where: { $0.name == "final" && !$0.model.moeLayers.isEmpty })
            ?? loaded.first(where: { !$0.model.moeLayers.isEmpty }) {
            lines += routingLines(model, name: name, data: data, domains: domains, ids: ids)
        }
        // Accuracy of each model on each domain.
        let shardBy = (try? runFile.openGroup("tasks/expert-0").stringAttribute("shard_by")) ?? ""
        let experts = loaded.filter { $0.name.hasPrefix("expert-") }.count
        let names = loaded.map(\.name)
        let width = max(8, names.map(\.count).max() ?? 0) + 2
        lines.append("    accuracy per domain" + (shardBy == "domain" && experts > 0 ? " (* an expert's own domain):" : ":"))
        lines.append("    " + pad("domain", 6) + pad("n", 6) + names.map { pad($0, width) }.joined())
        for d in ids {
            let rows = domains.indices.filter { domains[$0] == d }
            let subset = subsetTensor(data.x, rows: rows)
            let labels = rows.map { data.y[$0] }, doms = rows.map { domains[$0] }
            let cells = loaded.map { entry -> String in
                let accuracy = entry.model.evaluate(x: subset, labels: labels, domains: doms).accuracy
                let own = shardBy == "domain" && experts > 0 && entry.name == "expert-\(d % experts)"
                return pad(String(format: "%.3f", accuracy) + (own ? "*" : " "), width)
            }
            lines.append("    " + pad(String(d), 6) + pad(String(rows.count), 6) + cells.joined())
        }
        return lines
    }

    /// Per MoE layer of `model`: each domain's routed assignments split over the experts (%).
    static func routingLines(_ model: ResidualMLP, name: String, data: Dataset, domains: [Int], ids: [Int]) -> [String] {
        let layers = model.moeLayers
        let blocks = model.blocks.indices.filter { model.blocks[$0].feedForward is MoELayer }
        let experts = layers.first?.router.routing.experts ?? 0
        var counts = [[[Int]]](repeating: [], count: layers.count)   // [layer][domain index][expert]
        let batch = 1024, f = data.features
        domains.withUnsafeBufferPointer { dp in
            var start = 0
            while start < data.count {
                let n = min(batch, data.count - start)
                let context = ForwardContext(training: false, step: 0, seed: 0, domains: dp.baseAddress! + start)
                model.forwardLogits(data.x.data + start * f, rows: n, context: context)
                for (l, layer) in layers.enumerated() {
                    let r = layer.router.routing
                    if counts[l].isEmpty { counts[l] = [[Int]](repeating: [Int](repeating: 0, count: r.experts), count: ids.count) }
                    for e in 0..<r.experts {
                        for a in r.offsets[e]..<r.offsets[e + 1] {
                            counts[l][ids.firstIndex(of: domains[start + r.token[a]])!][e] += 1
                        }
                    }
                }
                start += n
            }
        }
        var lines: [String] = []
        for (l, block) in blocks.enumerated() where !counts[l].isEmpty {
            let e = counts[l][0].count
            lines.append("    \(name), block \(block): share of each domain's routed assignments per expert (%):")
            lines.append("    " + pad("domain", 6) + (0..<max(e, experts)).map { pad("e\($0)", 7) }.joined())
            for (i, d) in ids.enumerated() {
                let total = counts[l][i].reduce(0, +)
                lines.append("    " + pad(String(d), 6) + counts[l][i].map { pad(String(format: "%.1f", total > 0 ? 100 * Double($0) / Double(total) : 0), 7) }.joined())
            }
        }
        return lines
    }

    /// The rows `rows` of `x` as a new tensor.
    static func subsetTensor(_ x: Tensor, rows: [Int]) -> Tensor {
        let f = x.shape.count > 1 ? x.shape[1] : 1
        let out = Tensor(shape: [rows.count, f])
        for (i, r) in rows.enumerated() { (out.data + i * f).update(from: x.data + r * f, count: f) }
        return out
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
