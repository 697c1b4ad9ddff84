import Foundation
import MoEData
import MoEFusion
import MoEHDF5
import MoENN

/// `fusion.method: ensemble` on transformer LM experts: Branch-Train-Merge's ensemble
/// (`TransformerEnsemble`, Li et al. 2022), each expert weighted per position by its posterior
/// given the window's prefix, with the prior of `fusion.prior` (`LMEnsembleCheckpoint`:
/// `uniform`, or `validation` = the experts' mean posterior over the validation windows).
///
/// Writes `tasks/fuse.h5`: `/model` (the LM ensemble checkpoint, `kind = "ensemble"`,
/// `posterior = "prefix"`: `/models/fused` and `/models/final`), `/fusion` (attributes
/// `method = "ensemble"`, `weights = "posterior"`, `posterior = "prefix"`, `prior`, `seed`,
/// `seed_model`, `collapsed = 0`, `collapse_reason = ""`), `/fusion/coefficients [E]` (π), and
/// `/fusion/metrics/{expert-<i>, fused}/{val,test}_{loss,accuracy}` by the §5.4 protocol
/// (`LMScores`; fused = the ensemble's mixture).
extension FuseTask {
    func runLMEnsemble(_ loaded: Experts) throws {
        try Fusion.validate(loaded.tensors)
        let probe = try makeProbe(loaded.architecture)
        let corpus = try TextDataTask.load(layout: layout)
        let experts = loaded.tensors.map { loaded.architecture.model($0) as! TransformerLM }
        let batch = spec.eval.batchSize
        let priorKind: LMEnsembleCheckpoint.Prior = spec.fusion.prior == .uniform ? .uniform : .validation
        let prior = priorKind == .uniform ? nil : LMEnsembleCheckpoint.validationPrior(experts: experts, corpus: corpus, batchSize: batch)
        let ensemble = TransformerEnsemble(experts: experts, prior: prior)
        let expertMetrics = zip(loaded.tensors, loaded.sources).map { probe.metrics($0).of($1) }
        let fusedMetrics = Metrics(val: LMScores.score(ensemble, corpus, split: .val, batchSize: batch),
                                   test: LMScores.score(ensemble, corpus, split: .test, batchSize: batch)).of("fuse/model")
        try H5File.createAtomically(layout.taskFile("fuse")) { file in
            try file.setTaskAttributes("fuse")
            try LMEnsembleCheckpoint.write(ensemble, prior: priorKind, to: file, at: "model")
            try writeEnsembleFusion(to: file, posterior: "prefix", detail: ("prior", priorKind.rawValue),
                                    prior: ensemble.prior, experts: expertMetrics, fused: fusedMetrics)
        }
        log.info("fuse: ensemble (BTM, posterior on the window's prefix, \(priorKind.rawValue) prior ["
                 + ensemble.prior.map { String(format: "%.3f", $0) }.joined(separator: ", ") + "]): val loss \(formatMetric(fusedMetrics.valLoss)) "
                 + "(\(formatMetric(LMScores.bitsPerByte(fusedMetrics.valLoss))) bits per byte); experts val loss "
                 + expertMetrics.map { formatMetric($0.valLoss) }.joined(separator: ", "))
    }
}
