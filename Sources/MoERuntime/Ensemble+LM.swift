import Foundation
import MoEData
import MoEHDF5
import MoENN
import MoEStore

/// The checkpoint of a Branch-Train-Merge ensemble of transformer LMs (`TransformerEnsemble`,
/// Li et al. 2022), laid out as the MLP ensemble's (`EnsembleModel`, ARCHITECTURE §5.3): a
/// group with attributes `format = "moe-run/1"`, `kind = "ensemble"`, `config` (expert 0's
/// model JSON, `kind = "transformer"`: what tells an LM ensemble from an MLP one), `experts` (E),
/// `posterior = "prefix"` (Bayes' rule on the experts' likelihoods of the window's prefix) and
/// `prior` (`uniform` | `validation`), then `experts/<i>/` (expert i's model checkpoint, §5.3,
/// copied) and `posterior/prior [E]` (float64, π, summing to 1).
///
/// **Priors.** `uniform`: π_j = 1/E. `validation`: BTM's "cached prior" (the DEMix/BTM
/// evaluation code estimates it on held-out validation sequences as an exponential moving
/// average, α = 0.3, of each batch's mean posterior, then keeps it fixed for the test data);
/// here the plain mean, independent of the batch order: with uniform-prior posteriors w_j(t)
/// over every scored position t of every validation window (§5.4 windows, all domains),
///
///     π_j = Σ_windows Σ_t w_j(t) / (scored positions)
///
/// Each window's first position has w = uniform, so every π_j > 0.
enum LMEnsembleCheckpoint {
    enum Prior: String { case uniform, validation }

    /// The ensemble checkpoint at `path` holds transformer experts (its `config` is of kind `transformer`).
    static func isLMEnsemble(_ location: H5Location, at path: String) -> Bool {
        guard EnsembleModel.isEnsemble(location, at: path), let g = try? location.openGroup(path),
              let json = try? g.stringAttribute("config") else { return false }
        struct KindOnly: Decodable { var kind: String? }
        return (try? JSONDecoder().decode(KindOnly.self, from: Data(json.utf8)).kind) == TransformerLM.checkpointKind
    }

    static func write(_ ensemble: TransformerEnsemble, prior: Prior, to location: H5Location, at path: String) throws {
        let group = try location.createGroup(path)
        try group.setAttribute("format", Checkpoint.format)
        try group.setAttribute("kind", "ensemble")
        try group.setAttribute("config", ensemble.experts[0].configJSON)
        try group.setAttribute("experts", Int64(ensemble.experts.count))
        try group.setAttribute("posterior", "prefix")
        try group.setAttribute("prior", prior.rawValue)
        for (i, m) in ensemble.experts.enumerated() { try Checkpoint.writeModel(m, normalization: nil, to: group, at: "experts/\(i)") }
        try group.createDataset("posterior/prior", ensemble.prior)
    }

    /// The ensemble stored at `path`; a checkpoint that breaks the layout is one line naming the object.
    static func load(from location: H5Location, at path: String) throws -> TransformerEnsemble {
        let group = try location.openGroup(path)
        func bad(_ object: String, _ message: String) -> RuntimeError {
            .usage("\(location.filePath):\(object.isEmpty ? group.path : group.absolutePath(object)): \(message)")
        }
        guard group.hasAttribute("experts") else { throw bad("", "an ensemble checkpoint needs the attribute 'experts'") }
        let e = Int(try group.attribute("experts", as: Int64.self))
        guard e >= 1 else { throw bad("experts", "an ensemble needs at least one expert, the attribute says \(e)") }
        var experts: [TransformerLM] = []
        for i in 0..<e {
            guard group.exists("experts/\(i)") else { throw bad("experts/\(i)", "missing (the attribute 'experts' is \(e))") }
            let (model, _) = try Checkpoint.loadAnyModel(from: group, at: "experts/\(i)")
            guard let lm = model as? TransformerLM else {
                throw bad("experts/\(i)", "a \"\(model.checkpointKind)\" model in an ensemble of transformer LMs")
            }
            if let first = experts.first, lm.config.vocab != first.config.vocab || lm.config.context != first.config.context {
                throw bad("experts/\(i)", "vocabulary \(lm.config.vocab) and context \(lm.config.context) differ from expert 0's "
                          + "\(first.config.vocab) and \(first.config.context)")
            }
            experts.append(lm)
        }
        guard group.exists("posterior/prior") else { throw bad("posterior/prior", "missing") }
        let prior = try group.read("posterior/prior", as: Double.self)
        guard prior.shape == [e] else { throw bad("posterior/prior", "has shape \(prior.shape), expected [\(e)]") }
        guard prior.values.allSatisfy({ $0 >= 0 && $0.isFinite }), prior.values.reduce(0, +) > 0 else {
            throw bad("posterior/prior", "needs non-negative finite weights with a positive sum, holds \(prior.values)")
        }
        return TransformerEnsemble(experts: experts, prior: prior.values)
    }

    /// The `validation` prior of the type's documentation, from the validation split of `corpus`
    /// forwarded `batchSize` windows at a time; nil when the split holds no window.
    static func validationPrior(experts: [TransformerLM], corpus: TextCorpus, batchSize: Int) -> [Double]? {
        let uniform = TransformerEnsemble(experts: experts)
        var mass: [Double]? = Array(repeating: 0, count: experts.count)
        let scores = LMScores.score(context: uniform.config.context, corpus, split: .val, batchSize: batchSize) {
            uniform.score($0, batchSize: max(1, batchSize), posteriorSums: &mass)
        }
        guard scores.overall.scored > 0, let mass else { return nil }
        return mass.map { $0 / Double(scores.overall.scored) }
    }
}
