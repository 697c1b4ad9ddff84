import Foundation
import MoECore
import MoEData
import MoEFusion
import MoEHDF5
import MoENN
import MoEPlan
import MoESpec
import MoEStore

/// `fusion.method: mix` — Branch-Train-MiX (Sukhbaatar et al. 2024, "Branch-Train-MiX: Mixing
/// Expert LLMs into a Mixture-of-Experts LLM"): the E branch experts become one MoE model.
///
/// - For every block b in `model.moe_blocks`, expert i of `blocks/b/moe/experts/{w1, b1, w2, b2}`
///   is expert i's `blocks/b/ffn/{w1, b1, w2, b2}`, copied bit for bit to index i of the stacked
///   `[E, out, in]` (`[E, out]`) tensors (MoELayer's layout).
/// - Every other tensor (embedding, norms, head, and the FFNs of blocks that stay dense; for
///   transformer LM experts also every attention tensor, `attn/norm`, `attn/qkv`, `attn/out`,
///   and the positions) is the weighted average Σ_i w_i θ_i with `fusion.weights` (`uniform` 1/E,
///   `data_size` n_i/Σn, `val_loss` softmax(−L_i/T), or an explicit list; BTX averages them
///   uniformly).
/// - Router: BTX trains newly initialised routers during its MiX fine-tuning. Here each router
///   weight is the model's fresh router initialisation from the spec seed (mlp: U(±1/√hidden);
///   transformer: GPT-2's N(0, 0.02²)), scaled by `mixRouterScale` = 0.01: for the mlp, logits
///   are at most 0.01·‖LN(x)‖₁/√hidden, so every token's gate
///   probabilities start within about 1% of uniform 1/E, while the small noise (unlike an all-zero
///   router, whose ties would send every token to experts 0…k−1 by index) spreads the top-k
///   choices over the experts. A `noisy_topk` router's noise weight keeps its fresh initialisation (zero).
/// - The router is then learned in the `finetune` task with the MoE losses (the `router` section:
///   type, k, capacity, aux_loss, z_loss), which `fusion.method: mix` requires.
///
/// The MoE model's configuration is the experts' with `moe` = the spec's MoE configuration
/// (`ExperimentSpec.moeConfig`: `experts`, `model.moe_blocks`, the `router` section), i.e. the
/// model the `finetune` task builds from the spec (for an LM, `lmSetup.model`) and loads by name.
///
/// Writes `tasks/fuse.h5`: `/model` (the MoE checkpoint before fine-tuning, `/models/fused`),
/// `/seed` (as the weight-space methods), `/fusion` (attributes `method = "mix"`, `weights`,
/// `normalize`, `seed`, `seed_model`, `router_init = "scaled_random"`, `router_init_scale`,
/// `moe_blocks` (comma-separated), `collapsed = 0`), `/fusion/coefficients [E]` (the averaging
/// weights), `/fusion/metrics/{expert-<i>, fused}/{val,test}_{loss,accuracy}`. No interpolation
/// curves: the MoE model and the dense experts have different architectures.
extension FuseTask {
    /// The factor on the fresh router initialisation (see above).
    static let mixRouterScale: Float = 0.01

    func runMix() throws {
        let loaded = try loadExperts()
        let (experts, architecture) = (loaded.tensors, loaded.architecture)
        let (base, baseStored) = try loadBase(architecture)
        try checkArchitectures(experts, base: base)
        let probe = try makeProbe(architecture)
        let expertMetrics = zip(experts, loaded.sources).map { probe.metrics($0).of($1) }
        let f = spec.fusion
        guard let w = try fixedWeights(expertMetrics, samples: loaded.samples) else {
            throw RuntimeError.usage("fusion.weights: optimized does not apply to fusion.method: mix")
        }
        guard let moe = spec.moeConfig else { throw RuntimeError.usage("fusion.method: mix needs experts > 1") }
        let mixed = architecture.with(moe: moe)
        let model: any TrainableModel
        do {
            model = try Self.mix(experts: experts, averaged: try Fusion.average(experts, weights: w, normalize: f.normalize),
                                 into: mixed.model(seed: spec.seed64))
        } catch let error as FusionError {
            throw Self.architectureError(error, layout: layout, basePath: layout.taskFile("pretrain"))
        }
        let fusedMetrics = try mixMetrics(model, probe: probe).of("fuse/model")
        let norm = architecture.normalization

        try H5File.createAtomically(layout.taskFile("fuse")) { file in
            try file.setTaskAttributes("fuse")
            try Checkpoint.writeModel(model, normalization: norm, to: file, at: "model")
            if !baseStored {
                try Checkpoint.writeModel(architecture.model(seed: spec.seed64), normalization: norm, to: file, at: "seed")
            }
            let g = try file.createGroup("fusion")
            try g.setAttribute("method", "mix")
            try g.setAttribute("weights", f.weights.keyword ?? "explicit")
            try g.setAttribute("normalize", Int64(f.normalize ? 1 : 0))
            try g.setAttribute("seed", Int64(spec.seed))
            try g.setAttribute("seed_model", spec.split.seedModel.rawValue)
            try g.setAttribute("router_init", "scaled_random")
            try g.setAttribute("router_init_scale", Double(Self.mixRouterScale))
            try g.setAttribute("moe_blocks", moe.blocks.map(String.init).joined(separator: ","))
            try g.setAttribute("collapsed", Int64(0))
            try g.setAttribute("collapse_reason", "")
            try g.createDataset("coefficients", w)
            try Self.writeMetrics(zip((0..<experts.count).map { "expert-\($0)" } + ["fused"], expertMetrics + [fusedMetrics]), to: g)
        }
        let expertText = expertMetrics.map { formatMetric($0.valAccuracy) }.joined(separator: ", ")
        log.info("fuse: \(Planner.fusionSummary(spec)): MoE val loss \(formatMetric(fusedMetrics.valLoss)) acc "
                 + "\(formatMetric(fusedMetrics.valAccuracy)) before fine-tuning; experts val acc \(expertText)")
    }

    /// The BTX model's validation and test metrics, measured as the probe measures the experts
    /// (an mlp: rows in batches of `eval.batch_size`; an LM: the §5.4 protocol).
    private func mixMetrics(_ model: any TrainableModel, probe: any FusionProbe) throws -> Metrics {
        if let mlp = model as? ResidualMLP, let probe = probe as? MLPFusionProbe {
            try TrainTask.checkDomains(mlp.config, probe.val, probe.test)
            return Self.metrics(val: probe.val, test: probe.test) { mlp.evaluate(x: $0.x, labels: $0.y, domains: $0.domain, batchSize: spec.eval.batchSize) }
        }
        guard let lm = model as? TransformerLM, let probe = probe as? LMFusionProbe else {
            preconditionFailure("the mixed model and the probe are of different kinds")
        }
        return Metrics(val: LMScores.score(lm, probe.corpus, split: .val, batchSize: spec.eval.batchSize),
                       test: LMScores.score(lm, probe.corpus, split: .test, batchSize: spec.eval.batchSize))
    }

    /// The BTX MoE model (see the extension's documentation) written into `model`, a fresh model
    /// of the experts' kind with the MoE blocks (its routers' initialisation is kept, scaled by
    /// `mixRouterScale`): `experts[i]`'s FFN of each MoE block at index i of the stacked expert
    /// tensors, `averaged` everywhere else — for an LM also every attention, norm, embedding,
    /// position and head tensor. Throws `FusionError.missingTensor` naming a tensor an expert lacks.
    static func mix<Model: TrainableModel>(experts: [NamedTensors], averaged: NamedTensors, into model: Model) throws -> Model {
        for p in model.parameters {
            switch ParameterPath(p.name) {
            case .experts(let block, let tensor):
                let source = ParameterPath.ffn(block: block, tensor: tensor).name
                let size = p.value.count / experts.count
                for (i, e) in experts.enumerated() {
                    guard let values = e[source] else { throw FusionError.missingTensor(name: source, model: i) }
                    guard values.count == size else {
                        throw FusionError.shapeMismatch(name: source, expected: Array(p.shape.dropFirst()), got: e.shapes[source] ?? [], model: i)
                    }
                    values.withUnsafeBufferPointer { (p.value.data + i * size).update(from: $0.baseAddress!, count: size) }
                }
            case .router(_, "weight"):
                for j in 0..<p.value.count { p.value.data[j] *= mixRouterScale }
            case .router(_, "noise_weight"):
                continue
            default:
                guard let values = averaged[p.name], values.count == p.value.count else {
                    throw FusionError.missingTensor(name: p.name, model: 0)
                }
                values.withUnsafeBufferPointer { p.value.data.update(from: $0.baseAddress!, count: p.value.count) }
            }
        }
        return model
    }

    /// The coefficients of `fusion.weights` that need no search: `uniform` 1/E, `data_size`
    /// n_i/Σn, `val_loss` softmax(−L_i/T), an explicit list; nil for `optimized`.
    func fixedWeights(_ expertMetrics: [Metrics], samples: [Int]) throws -> [Double]? {
        let f = spec.fusion
        switch f.weights {
        case .uniform: return try FusionWeights.uniform(count: expertMetrics.count)
        case .dataSize: return try FusionWeights.dataSize(samples)
        case .valLoss: return try FusionWeights.valLoss(expertMetrics.map(\.valLoss), temperature: f.temperature)
        case .explicit(let list): return try FusionWeights.explicit(list, modelCount: expertMetrics.count, normalize: f.normalize)
        case .optimized: return nil
        }
    }

    /// `evaluate` on the validation and (when not empty) the test split.
    static func metrics(val: Dataset, test: Dataset, _ evaluate: (Dataset) -> (loss: Double, accuracy: Double)) -> Metrics {
        let v = evaluate(val)
        let t = test.count > 0 ? evaluate(test) : (loss: Double.nan, accuracy: Double.nan)
        return Metrics(valLoss: v.loss, valAccuracy: v.accuracy, testLoss: t.loss, testAccuracy: t.accuracy)
    }

    /// `/fusion/metrics/<model>/{val_loss, val_accuracy, test_loss, test_accuracy}` (float64 scalars);
    /// for an LM model whose checkpoint is known also `/fusion/metrics/<model>/sums/{val,test}`
    /// `[domains, 3]` (per domain in id order: Σ loss in nats, correct, scored tokens), attribute
    /// `model` = `<task>/<group>` of that checkpoint (`LMEvaluateTask.fuseScores` reuses them).
    static func writeMetrics<S: Sequence>(_ models: S, to g: H5Group) throws where S.Element == (String, Metrics) {
        for (name, m) in models {
            for (k, x) in [("val_loss", m.valLoss), ("val_accuracy", m.valAccuracy), ("test_loss", m.testLoss), ("test_accuracy", m.testAccuracy)] {
                try g.createScalar("metrics/\(name)/\(k)", x)
            }
            guard let model = m.model else { continue }
            // The checkpoint measured (`<task>/<group>`): the evaluate task reuses these numbers.
            try g.openGroup("metrics/\(name)").setAttribute("model", model)
            guard !m.lmScores.isEmpty else { continue }
            let sums = try g.createGroup("metrics/\(name)/sums")
            try sums.setAttribute("model", model)
            for (split, scores) in m.lmScores.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                try sums.createDataset(split.rawValue, scores.domains.flatMap { [$0.sums.lossSum, Double($0.sums.correct), Double($0.sums.scored)] },
                                       shape: [scores.domains.count, 3])
            }
        }
    }
}
