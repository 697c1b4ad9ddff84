import Foundation
import MoEData
import MoEFusion
import MoEHDF5
import MoENN
import MoEPlan
import MoESpec
import MoEStore

/// The `fuse` task of `split.strategy: branch` (issue 6): the experts' checkpoints fused into one
/// model by `fusion.method`, with the evidence of when fusion works.
///
/// 1. Load `tasks/expert-<i>.h5:/model` as `NamedTensors`; architectures must match tensor by
///    tensor (`Fusion.validate`; the error names the tensor and the expert's file). θ₀ (`/models/seed`)
///    is the pre-trained seed, or the initialisation from the spec seed.
/// 2. Measure every expert on the FULL validation and test splits.
/// 3. Coefficients (`fusion.weights`, one per expert): `uniform` 1/E; `data_size` n_i/Σn (FedAvg,
///    n_i = the expert's `train_samples`); `val_loss` softmax(−L_i/`temperature`) of the validation
///    losses of step 2; an explicit list (divided by its sum when `normalize`); `optimized`: the
///    weights on the simplex minimising the validation loss of the fused model
///    (`Fusion.optimizedWeights`, pairwise compass search from uniform, seeded by the spec seed,
///    at most `optimizedBudget` fusions).
/// 4. The method: `average` Σ w_i θ_i; `greedy_soup` (ordered by validation accuracy, a model
///    joins only if the uniform soup's validation accuracy rises strictly); `task_arithmetic`,
///    `ties`, `dare`, `dare_ties` on τ_i = θ_i − θ₀ with `lambda`, `density`, `rescale`, `normalize`
///    (DARE's masks seeded by the spec seed); `slerp` of expert 0 and 1 at `t`; `fisher`: the
///    diagonal Fisher of each expert from `fisher_samples` validation batches of `train.batch_size`
///    rows, θ = Σ w_i(F_i+ε)θ_i / Σ w_i(F_i+ε) with `epsilon`.
/// 5. Evidence: the fused model's metrics; interpolation curves θ(α) = (1−α)θ_a + αθ_b at
///    α = 0, 0.1, …, 1 for expert 0–1 (every pair when E ≤ 4) and fused–expert i (on the
///    validation samples of the endpoints' domains with domain shards, see `barrierDomains`), with the loss
///    barrier max_α [L(α) − ((1−α)L(0) + αL(1))] (and the same on the error); the collapse flag
///    (see `collapse`).
///
/// Writes `tasks/fuse.h5`: `/model` (the fused checkpoint, §5.3), `/seed` (θ₀ when it is not a
/// pre-trained model of its own task), `/fusion` (attributes: method, every parameter used,
/// `collapsed` (see `collapse`), `collapse_reason`, `max_expert_barrier`, `max_expert_error_barrier`,
/// `barrier_threshold`),
/// `/fusion/coefficients [E]`, `/fusion/fisher/expert-<i>/<tensor>` (`fisher`: each expert's diagonal Fisher F_i),
/// `/fusion/metrics/<model>/{val_loss, val_accuracy, test_loss, test_accuracy}`,
/// `/fusion/barrier/<a>--<b>/{alpha, val_loss, barrier, val_accuracy, error_barrier}`, `/fusion/tensors/{names (one string,
/// a tensor name per line), distance [T, E], task_vector_norm [T, E], …}` (per-tensor statistics,
/// `Fusion.statistics`; see `writeStatistics`).
///
/// The experts may be of either model kind (`ExpertArchitecture`): residual MLPs, measured on the
/// val/test rows (`MLPFusionProbe`), or transformer LMs, measured by the §5.4 protocol
/// (`LMFusionProbe`: loss = mean nats per predicted token, accuracy = next-token accuracy, the
/// Fisher from training-mode backward passes on validation windows, the barrier threshold on
/// ln(vocab)); `/model` and `/seed` are checkpoints of the experts' kind, so the `finetune`
/// task loads the fused model by name into the model the spec describes.
///
/// `mix` (FuseTask+Mix.swift), `ensemble` (FuseTask+Ensemble.swift) and, after a `replicate` MoE,
/// `average` as expert merging (FuseTask+ExpertMerge.swift) have their own steps and records.
final class FuseTask {
    struct Metrics {
        var valLoss: Double, valAccuracy: Double, testLoss: Double, testAccuracy: Double
        /// A transformer LM's §5.4 sums of val and test (`LMScores`), and the checkpoint they
        /// measure (`<task>/<group>`): written as `sums/<split>` for the evaluate task to reuse.
        var lmScores: [TextSplit: LMScores] = [:]
        var model: String? = nil

        /// These metrics, recorded as those of the checkpoint `model` (`<task>/<group>`).
        func of(_ model: String) -> Metrics {
            var m = self
            m.model = model
            return m
        }
    }

    /// Fusions `weights: optimized` may evaluate (each a validation pass).
    static let optimizedBudget = 200
    /// Collapse: a loss barrier between two experts above this fraction of the chance-level loss
    /// ln(classes) (a straight path whose middle loses at least half of what a uniform guess loses).
    static let barrierThresholdFraction = 0.5

    let spec: ExperimentSpec
    let layout: RunLayout
    let log: RunLog

    init(spec: ExperimentSpec, layout: RunLayout, log: RunLog) {
        self.spec = spec
        self.layout = layout
        self.log = log
    }

    /// The validation and test splits every fusion evaluates on (validation samples are required:
    /// coefficients, barriers and the collapse check are measured on them).
    func fusionSplits() throws -> (val: Dataset, test: Dataset) {
        let (val, _) = try DataTask.load("val", layout: layout)
        let (test, _) = try DataTask.load("test", layout: layout)
        guard val.count > 0 else {
            throw RuntimeError.io(path: layout.taskFile("data"), message: "fusion needs validation samples (data.split.val is 0)")
        }
        return (val, test)
    }

    func run() throws {
        if spec.fusion.method == .mix { return try runMix() }
        if spec.fusion.method == .ensemble { return try runEnsemble() }
        if spec.split.strategy == .replicate { return try runExpertMerge() }
        let loaded = try loadExperts()
        let (experts, architecture) = (loaded.tensors, loaded.architecture)
        let (base, baseStored) = try loadBase(architecture)
        try checkArchitectures(experts, base: base)
        let probe = try makeProbe(architecture)
        // The experts' metrics and curves, measured by another fuse task of the same experts (`ExpertEvidence`).
        let evidenceKey = evidenceKey(sources: loaded.sources)
        let donor = evidenceKey.flatMap { donorEvidence(key: $0, experts: experts.count, probe: probe) }
        if let donor { log.info("fuse: the experts' metrics and curves reused from run \(donor.donor) (same experts)") }
        let expertMetrics = donor?.metrics ?? zip(experts, loaded.sources).map { probe.metrics($0).of($1) }
        let f = spec.fusion

        var fisherBatches = 0
        var fishers: [NamedTensors] = []
        if f.method == .fisher {
            fishers = try experts.map { e in
                let r = try probe.fisher(e, batches: f.fisherSamples, rows: spec.train.batchSize)
                fisherBatches = r.batches
                return r.fisher
            }
        }
        let fuse: ([Double]) throws -> (NamedTensors, TaskMergeResult?) = { w in
            switch f.method {
            case .average: return (try Fusion.average(experts, weights: w, normalize: f.normalize), nil)
            case .task_arithmetic:
                let r = try Fusion.taskArithmetic(base: base, models: experts, weights: w, lambda: f.lambda, normalize: f.normalize)
                return (r.model, r)
            case .ties:
                let r = try Fusion.ties(base: base, models: experts, weights: w, density: f.density, lambda: f.lambda, normalize: f.normalize)
                return (r.model, r)
            case .dare:
                let r = try Fusion.dare(base: base, models: experts, weights: w, density: f.density, lambda: f.lambda,
                                        rescale: f.rescale, normalize: f.normalize, seed: self.spec.seed64)
                return (r.model, r)
            case .dare_ties:
                let r = try Fusion.dareTies(base: base, models: experts, weights: w, density: f.density, lambda: f.lambda,
                                            rescale: f.rescale, normalize: f.normalize, seed: self.spec.seed64)
                return (r.model, r)
            case .fisher: return (try Fusion.fisher(experts, fishers: fishers, weights: w, epsilon: f.epsilon), nil)
            default: throw RuntimeError.usage("fusion.method: \(f.method.rawValue) is not a weighted method")
            }
        }

        var coefficients: [Double]
        var fused: NamedTensors
        var merge: TaskMergeResult?
        var notes: [String: String] = [:]
        var optimizedEvaluations = 0
        do {
            switch f.method {
            case .greedy_soup:
                let r = try Fusion.greedySoup(experts, individualScores: expertMetrics.map(\.valAccuracy)) { probe.validation($0).accuracy }
                fused = r.soup
                coefficients = (0..<experts.count).map { r.chosen.contains($0) ? 1 / Double(r.chosen.count) : 0 }
                notes["soup_order"] = r.order.map(String.init).joined(separator: ",")
                notes["soup_chosen"] = r.chosen.map(String.init).joined(separator: ",")
            case .slerp:
                fused = try Fusion.slerp(experts[0], experts[1], t: f.t)
                coefficients = [1 - f.t, f.t]
            default:
                let w: [Double]
                if let fixed = try fixedWeights(expertMetrics, samples: loaded.samples) {
                    w = fixed
                } else {
                    let r = try Fusion.optimizedWeights(count: experts.count, seed: spec.seed64, maxEvaluations: Self.optimizedBudget) { w in
                        probe.validation(try fuse(w).0).loss
                    }
                    w = r.weights
                    optimizedEvaluations = r.evaluations
                    log.info("fuse: optimized weights [" + w.map { String(format: "%.3f", $0) }.joined(separator: ", ")
                             + "] after \(r.evaluations) fusions, val loss \(formatMetric(r.loss)) (uniform \(formatMetric(r.uniformLoss)))")
                }
                coefficients = w
                (fused, merge) = try fuse(w)
            }
        } catch let error as FusionError {
            throw Self.architectureError(error, layout: layout, basePath: layout.taskFile("pretrain"))
        }
        let fusedMetrics = probe.metrics(fused).of("fuse/model")

        // Evidence: interpolation curves and barriers.
        var paths: [(String, String, NamedTensors, NamedTensors, [Int])] = []
        let pairs = experts.count <= 4 ? (0..<experts.count).flatMap { a in ((a + 1)..<experts.count).map { (a, $0) } } : [(0, 1)]
        for (a, b) in pairs { paths.append(("expert-\(a)", "expert-\(b)", experts[a], experts[b], [a, b])) }
        for (i, e) in experts.enumerated() { paths.append(("fused", "expert-\(i)", fused, e, [i])) }
        let curves = try paths.map { (a, b, x, y, members) in
            if let known = donor?.curves["\(a)--\(b)"] { return known }
            let (domains, description) = barrierDomains(experts: members, present: probe.validationDomains)
            var c = try Self.interpolation(a, b, x, y, on: domains, probe: probe)
            c.data = description + (probe.curveSubset.map { " (\($0))" } ?? "")
            return c
        }
        let expertBarrier = curves.filter { $0.a.hasPrefix("expert-") }.map(\.barrier).max() ?? 0
        let threshold = Self.barrierThresholdFraction * log1p(Double(probe.classes) - 1)
        let expertErrorBarrier = curves.filter { $0.a.hasPrefix("expert-") }.map(\.errorBarrier).max() ?? 0
        let collapse = Self.collapse(fused: fusedMetrics, experts: expertMetrics, barrier: expertBarrier, threshold: threshold,
                                     errorBarrier: expertErrorBarrier, classes: probe.classes)
        let collapsed = collapse != nil
        let statistics = try Fusion.statistics(fused: fused, models: experts, base: base, merge: merge)

        let norm = architecture.normalization
        try H5File.createAtomically(layout.taskFile("fuse")) { file in
            try file.setTaskAttributes("fuse")
            try Checkpoint.writeModel(architecture.model(fused), normalization: norm, to: file, at: "model")
            if !baseStored {
                try Checkpoint.writeModel(architecture.model(seed: spec.seed64), normalization: norm, to: file, at: "seed")
            }
            let g = try file.createGroup("fusion")
            try g.setAttribute("method", f.method.rawValue)
            try g.setAttribute("weights", f.weights.keyword ?? "explicit")
            for (k, v) in [("temperature", f.temperature), ("lambda", f.lambda), ("density", f.density), ("t", f.t), ("epsilon", f.epsilon)] {
                try g.setAttribute(k, v)
            }
            try g.setAttribute("rescale", Int64(f.rescale ? 1 : 0))
            try g.setAttribute("normalize", Int64(f.normalize ? 1 : 0))
            try g.setAttribute("seed", Int64(spec.seed))
            try g.setAttribute("seed_model", spec.split.seedModel.rawValue)
            if f.method == .fisher {
                try g.setAttribute("fisher_samples", Int64(f.fisherSamples))
                try g.setAttribute("fisher_batches", Int64(fisherBatches))
                try g.setAttribute("fisher_batch_rows", Int64(spec.train.batchSize))
                // The diagonal Fisher of each expert, so the merge can be recomputed from the files.
                for (i, fisher) in fishers.enumerated() {
                    for name in fisher.names {
                        try g.createDataset("fisher/expert-\(i)/\(name)", fisher.values[name]!, shape: fisher.shapes[name]!)
                    }
                }
            }
            if f.weights == .optimized, optimizedEvaluations > 0 { try g.setAttribute("optimized_evaluations", Int64(optimizedEvaluations)) }
            for (k, v) in notes { try g.setAttribute(k, v) }
            try g.setAttribute("collapsed", Int64(collapsed ? 1 : 0))
            try g.setAttribute("collapse_reason", collapse ?? "")
            try g.setAttribute("max_expert_barrier", expertBarrier)
            try g.setAttribute("max_expert_error_barrier", expertErrorBarrier)
            try g.setAttribute("barrier_threshold", threshold)
            if let evidenceKey { try g.setAttribute(Self.evidenceAttribute, evidenceKey) }
            if let donor { try g.setAttribute(Self.evidenceSourceAttribute, donor.donor) }
            try g.createDataset("coefficients", coefficients)
            try Self.writeMetrics(zip((0..<experts.count).map { "expert-\($0)" } + ["fused"], expertMetrics + [fusedMetrics]), to: g)
            for c in curves {
                try g.createDataset("barrier/\(c.a)--\(c.b)/alpha", Self.alphas)
                try g.createDataset("barrier/\(c.a)--\(c.b)/val_loss", c.losses)
                try g.createScalar("barrier/\(c.a)--\(c.b)/barrier", c.barrier)
                try g.createDataset("barrier/\(c.a)--\(c.b)/val_accuracy", c.accuracies)
                try g.createScalar("barrier/\(c.a)--\(c.b)/error_barrier", c.errorBarrier)
                try g.openGroup("barrier/\(c.a)--\(c.b)").setAttribute("data", c.data)
            }
            try Self.writeStatistics(statistics, experts: experts.count, to: g)
        }
        let coefficientText: String = coefficients.map { String(format: "%.3f", $0) }.joined(separator: ", ")
        let expertText: String = expertMetrics.map { formatMetric($0.valAccuracy) }.joined(separator: ", ")
        let summary: String = Planner.fusionSummary(spec)
        log.info("fuse: \(summary), coefficients [\(coefficientText)]: fused val loss \(formatMetric(fusedMetrics.valLoss)) acc "
                 + "\(formatMetric(fusedMetrics.valAccuracy)); experts val acc \(expertText); max expert barrier \(formatMetric(expertBarrier))")
        if let collapse { log.info("fuse: warning: " + collapse) }
    }
}
