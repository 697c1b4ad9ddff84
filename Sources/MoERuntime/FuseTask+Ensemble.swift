import Foundation
import MoEData
import MoEFusion
import MoEHDF5
import MoENN
import MoEPlan
import MoEStore

/// `fusion.method: ensemble` (Branch-Train-Merge's output ensemble, see `EnsembleModel`): the fuse
/// task fits the domain posterior on the validation split and stores the ensemble checkpoint.
/// Transformer LM experts go to `runLMEnsemble` (FuseTask+LMEnsemble.swift).
///
/// Writes `tasks/fuse.h5`: `/model` (the ensemble checkpoint, `kind = "ensemble"`: `/models/fused`
/// and `/models/final`), `/fusion` (attributes `method = "ensemble"`, `weights = "posterior"`,
/// `posterior = "gaussian"`, `assignment`, `seed_model`, `collapsed = 0`), `/fusion/coefficients
/// [E]` (the prior π), `/fusion/metrics/{expert-<i>, fused}/{val,test}_{loss,accuracy}` (fused =
/// the ensemble: the mixture's NLL and accuracy).
extension FuseTask {
    func runEnsemble() throws {
        let loaded = try loadExperts()
        if case .transformer = loaded.architecture { return try runLMEnsemble(loaded) }
        let (val, test) = try fusionSplits()
        try Fusion.validate(loaded.tensors)
        let norm = loaded.architecture.normalization
        let experts = try (0..<spec.experts).map { i in
            try Checkpoint.loadModel(from: try H5File.open(layout.taskFile("expert-\(i)")),
                                     at: spec.handoffGroup(layout.taskFile("expert-\(i)"), layout: layout) ?? "model", for: "an ensemble").0
        }
        let ensemble = EnsembleModel.fit(experts: experts, val: val, byDomain: spec.split.shardBy == .domain, batchSize: spec.eval.batchSize)
        let batch = spec.eval.batchSize
        let expertMetrics = experts.map { m in Self.metrics(val: val, test: test) { m.evaluate(x: $0.x, labels: $0.y, domains: $0.domain, batchSize: batch) } }
        let fusedMetrics = Self.metrics(val: val, test: test) { ensemble.evaluate(x: $0.x, labels: $0.y, batchSize: batch) }
        try H5File.createAtomically(layout.taskFile("fuse")) { file in
            try file.setTaskAttributes("fuse")
            try ensemble.write(to: file, at: "model", normalization: norm)
            try writeEnsembleFusion(to: file, posterior: "gaussian", detail: ("assignment", ensemble.assignment),
                                    prior: ensemble.prior, experts: expertMetrics, fused: fusedMetrics)
        }
        log.info("fuse: ensemble (BTM, Gaussian domain posterior by \(ensemble.assignment)): val loss \(formatMetric(fusedMetrics.valLoss)) acc "
                 + "\(formatMetric(fusedMetrics.valAccuracy)); experts val acc " + expertMetrics.map { formatMetric($0.valAccuracy) }.joined(separator: ", "))
    }
}

extension FuseTask {
    /// The `/fusion` group of an ensemble, MLP or LM: `method = "ensemble"`, `weights =
    /// "posterior"`, `posterior` (how each expert's weight is found) and its `detail` attribute,
    /// `seed`, `seed_model`, `collapsed = 0`, `collapse_reason = ""`, the prior π as
    /// `coefficients [E]`, and the metrics of every expert and of the ensemble (`fused`).
    func writeEnsembleFusion(to file: H5File, posterior: String, detail: (name: String, value: String), prior: [Double],
                             experts: [Metrics], fused: Metrics) throws {
        let g = try file.createGroup("fusion")
        try g.setAttribute("method", "ensemble")
        try g.setAttribute("weights", "posterior")
        try g.setAttribute("posterior", posterior)
        try g.setAttribute(detail.name, detail.value)
        try g.setAttribute("seed", Int64(spec.seed))
        try g.setAttribute("seed_model", spec.split.seedModel.rawValue)
        try g.setAttribute("collapsed", Int64(0))
        try g.setAttribute("collapse_reason", "")
        try g.createDataset("coefficients", prior)
        try Self.writeMetrics(zip((0..<experts.count).map { "expert-\($0)" } + ["fused"], experts + [fused]), to: g)
    }
}
