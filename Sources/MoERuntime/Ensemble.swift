import Foundation
import MoECore
import MoEData
import MoEHDF5
import MoENN
import MoEStore

/// `fusion.method: ensemble` — Branch-Train-Merge's output ensemble (Li et al. 2022, "Branch-Train-
/// Merge: Embarrassingly Parallel Training of Expert Language Models", §3): the experts are kept
/// apart and their predictions mixed,
///
///     p(y | x) = Σ_i w_i(x) · softmax(f_i(x))_y,    w_i(x) = P(expert i | x),
///
/// with the domain posterior from Bayes' rule, P(i | x) ∝ π_i · p(x | i). BTM takes p(x | i) from
/// each expert language model's likelihood of the context; a classifier has no likelihood of its
/// input, so here p(x | i) is a diagonal Gaussian over the (standardised) input features, fitted on
/// the validation split, and nothing about the label is needed at test time:
///
/// - Validation sample assignment a(x): with `split.shard_by: domain` and domain ids, the expert
///   whose shard holds the sample's domain (d mod E, as the shards are cut); otherwise the expert
///   with the lowest cross-entropy on (x, y) (labels used only here, on validation).
/// - π_i = (n_i + 1) / (n + E) (Laplace-smoothed share of validation samples assigned to i);
///   μ_i, σ²_i the mean and population variance per feature of those samples, σ²_i + `varianceFloor`;
///   an expert with fewer than 2 samples gets the mean and variance of the whole validation split.
/// - log w_i(x) = log π_i − ½ Σ_f [log 2πσ²_if + (x_f − μ_if)² / σ²_if] − logsumexp_j(same for j).
/// - Loss: the mixture's NLL −log Σ_i exp(log w_i(x) + log softmax(f_i(x))_y), computed in float64
///   with log-sum-exp; accuracy: argmax_y of Σ_i w_i(x) softmax(f_i(x))_y.
///
/// Checkpoint (a group with `format = "moe-run/1"`, `kind = "ensemble"`, `config` (the experts'
/// model JSON), `experts` (E), `posterior = "gaussian"`, `assignment` ("domain" | "lowest_loss"),
/// `variance_floor`): `experts/<i>/` (expert i's model checkpoint, §5.3, copied), `posterior/prior
/// [E]`, `posterior/mean [E, features]`, `posterior/variance [E, features]` (float64, in the
/// standardised input space), and `input/{mean, std}` when inputs are standardised.
struct EnsembleModel {
    static let varianceFloor = 1e-3

    var experts: [ResidualMLP]
    var prior: [Double]
    var mean: [[Double]]
    var variance: [[Double]]
    var assignment: String

    var features: Int { experts[0].config.features }
    var classes: Int { experts[0].config.classes }

    /// Fits the posterior on `val` (standardised): `domains` assigns by domain id when given.
    static func fit(experts: [ResidualMLP], val: Dataset, byDomain: Bool, batchSize: Int) -> EnsembleModel {
        let e = experts.count, f = val.features, n = val.count
        var assign = [Int](repeating: 0, count: n)
        let assignment: String
        if byDomain, let d = val.domain {
            assignment = "domain"
            for r in 0..<n { assign[r] = d[r] % e }
        } else {
            assignment = "lowest_loss"
            let losses = experts.map { perSampleLogProbabilities($0, x: val.x, labels: val.y, batchSize: batchSize) }
            for r in 0..<n { assign[r] = (0..<e).max { losses[$0][r] < losses[$1][r] }! }
        }
        func moments(_ rows: [Int]) -> ([Double], [Double]) {
            var m = [Double](repeating: 0, count: f), v = [Double](repeating: 0, count: f)
            for r in rows { let x = val.x.row(r); for j in 0..<f { m[j] += Double(x[j]) } }
            for j in 0..<f { m[j] /= Double(max(rows.count, 1)) }
            for r in rows { let x = val.x.row(r); for j in 0..<f { let d = Double(x[j]) - m[j]; v[j] += d * d } }
            for j in 0..<f { v[j] = v[j] / Double(max(rows.count, 1)) + varianceFloor }
            return (m, v)
        }
        let all = moments(Array(0..<n))
        var prior: [Double] = [], mean: [[Double]] = [], variance: [[Double]] = []
        for i in 0..<e {
            let rows = (0..<n).filter { assign[$0] == i }
            prior.append(Double(rows.count + 1) / Double(n + e))
            let (m, v) = rows.count >= 2 ? moments(rows) : all
            mean.append(m); variance.append(v)
        }
        return EnsembleModel(experts: experts, prior: prior, mean: mean, variance: variance, assignment: assignment)
    }

    /// log softmax(f(x))_y of every row (float64), in batches, no dropout.
    static func perSampleLogProbabilities(_ model: ResidualMLP, x: Tensor, labels: [Int], batchSize: Int) -> [Double] {
        let all = logSoftmax(model, x: x, batchSize: batchSize)
        let c = model.config.classes
        return (0..<x.rows).map { all[$0 * c + labels[$0]] }
    }

    /// log softmax(f(x)) of every row, `[rows · classes]` (float64).
    static func logSoftmax(_ model: ResidualMLP, x: Tensor, batchSize: Int) -> [Double] {
        let n = x.rows, c = model.config.classes
        var out = [Double](repeating: 0, count: n * c)
        var start = 0
        while start < n {
            let rows = min(batchSize, n - start)
            model.forwardLogits(x.row(start), rows: rows, context: ForwardContext(training: false, step: 0, seed: 0, domains: nil))
            let logits = model.logits
            for r in 0..<rows {
                var m = -Double.infinity
                for k in 0..<c { m = max(m, Double(logits[r * c + k])) }
                var s = 0.0
                for k in 0..<c { s += exp(Double(logits[r * c + k]) - m) }
                let lse = m + log(s)
                for k in 0..<c { out[(start + r) * c + k] = Double(logits[r * c + k]) - lse }
            }
            start += rows
        }
        return out
    }

    /// log w_i(x) for one standardised row.
    func logPosterior(_ x: UnsafePointer<Float>) -> [Double] {
        var l = (0..<experts.count).map { i -> Double in
            var s = log(prior[i])
            for j in 0..<features {
                let d = Double(x[j]) - mean[i][j]
                s -= 0.5 * (log(2 * Double.pi * variance[i][j]) + d * d / variance[i][j])
            }
            return s
        }
        let m = l.max()!
        let lse = m + log(l.reduce(0) { $0 + exp($1 - m) })
        for i in l.indices { l[i] -= lse }
        return l
    }

    /// Mixture NLL and accuracy over a standardised data set.
    func evaluate(x: Tensor, labels: [Int], batchSize: Int) -> (loss: Double, accuracy: Double) {
        let n = x.rows, c = classes
        guard n > 0 else { return (0, 0) }
        let logProbs = experts.map { Self.logSoftmax($0, x: x, batchSize: batchSize) }
        var total = 0.0, correct = 0
        for r in 0..<n {
            let lw = logPosterior(x.row(r))
            var mixture = [Double](repeating: 0, count: c)
            for k in 0..<c {
                let terms = lw.indices.map { lw[$0] + logProbs[$0][r * c + k] }
                let m = terms.max()!
                mixture[k] = m.isFinite ? m + log(terms.reduce(0) { $0 + exp($1 - m) }) : m
            }
            total -= mixture[labels[r]]
            if mixture.indices.max(by: { mixture[$0] < mixture[$1] }) == labels[r] { correct += 1 }
        }
        return (total / Double(n), Double(correct) / Double(n))
    }

    func write(to location: H5Location, at path: String, normalization: Standardization?) throws {
        let group = try location.createGroup(path)
        try group.setAttribute("format", Checkpoint.format)
        try group.setAttribute("kind", "ensemble")
        try group.setAttribute("config", Checkpoint.configJSON(experts[0].config))
        try group.setAttribute("experts", Int64(experts.count))
        try group.setAttribute("posterior", "gaussian")
        try group.setAttribute("assignment", assignment)
        try group.setAttribute("variance_floor", Self.varianceFloor)
        for (i, m) in experts.enumerated() { try Checkpoint.writeModel(m, normalization: normalization, to: group, at: "experts/\(i)") }
        try group.createDataset("posterior/prior", prior)
        try group.createDataset("posterior/mean", mean.flatMap { $0 }, shape: [experts.count, features])
        try group.createDataset("posterior/variance", variance.flatMap { $0 }, shape: [experts.count, features])
        try normalization?.write(to: group, path: "input")
    }

    /// Is the group at `path` an ensemble checkpoint?
    static func isEnsemble(_ location: H5Location, at path: String) -> Bool {
        guard let g = try? location.openGroup(path), g.hasAttribute("kind") else { return false }
        return (try? g.stringAttribute("kind")) == "ensemble"
    }

    static func load(from location: H5Location, at path: String) throws -> (EnsembleModel, Standardization?) {
        let group = try location.openGroup(path)
        let e = Int(try group.attribute("experts", as: Int64.self))
        var experts: [ResidualMLP] = []
        var norm: Standardization?
        for i in 0..<e {
            let (m, n) = try Checkpoint.loadModel(from: group, at: "experts/\(i)", for: "an ensemble")
            experts.append(m)
            if i == 0 { norm = n }
        }
        guard let first = experts.first else {
            throw RuntimeError.io(path: location.filePath, message: "\(group.absolutePath("experts")): an ensemble needs at least one expert")
        }
        let f = first.config.features
        let prior = try group.read("posterior/prior", as: Double.self)
        let mean = try group.read("posterior/mean", as: Double.self)
        let variance = try group.read("posterior/variance", as: Double.self)
        for (name, shape) in [("posterior/prior", prior.shape), ("posterior/mean", mean.shape), ("posterior/variance", variance.shape)] {
            let expected = name == "posterior/prior" ? [e] : [e, f]
            guard shape == expected else {
                throw RuntimeError.io(path: location.filePath, message: "\(group.absolutePath(name)) has shape \(shape), expected \(expected)")
            }
        }
        let rows = { (v: [Double]) in (0..<e).map { Array(v[($0 * f)..<(($0 + 1) * f)]) } }
        return (EnsembleModel(experts: experts, prior: prior.values, mean: rows(mean.values), variance: rows(variance.values),
                              assignment: (try? group.stringAttribute("assignment")) ?? ""), norm)
    }
}
