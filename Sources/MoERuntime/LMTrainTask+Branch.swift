import MoEData
import MoEHDF5
import MoENN
import MoEPlan
import MoESpec
import MoEStore

/// The branch experts of a transformer LM and the fine-tuning of the fused LM (Branch-Train-Merge,
/// Li et al. 2022; BTX, Sukhbaatar et al. 2024), as `TrainTask+Branch.swift` does for the MLP:
///
/// - `expert(i)` trains the dense LM (no MoE blocks) with `split.overrides[i]` applied, on the
///   training windows of its domains (ARCHITECTURE §5.4): with `split.shard_by: domain` the
///   domains `d` with `d mod experts = i` (`TextCorpus.shardDomains`), with `none` all of them.
///   `index` and `random` shard feature samples and are spec errors for text (`ModelKindRules`).
///   The batch of step `s` is `TextBatches(domains:).fill(step: s)`: a pure function of the
///   expert's seed and `s`, so a resumed expert refills exactly its batches.
/// - Seed model: the `pretrain` task's `/model` when the run pre-trains one, else the
///   initialisation from the spec seed (the same for every expert whatever its `seed` override);
///   with `split.seed_model: independent` expert i's own (`TrainTask.initialisationSeed`).
/// - Step budget: `train.steps` (or the override's run spec), else `train.epochs` passes over the
///   expert's own train tokens (`LMTrainTask.stepBudget`).
/// - The task file records `shard` (i), `shard_by`, and `train_tokens`, the train tokens of the
///   expert's domains; `train_samples` holds the same count, as the training items every kind's
///   expert reports and `fusion.weights: data_size` weighs by (n_i in `FuseTask`).
/// - `finetune` builds whatever model `tasks/fuse.h5` holds at `/model` (the dense fused LM, or
///   the MoE LM of `fusion.method: mix`) from its own config and trains it on all of train with
///   `fusion.finetune`'s epochs and lr (`ExperimentSpec.finetuneSpec`).
extension LMTrainTask {
    /// The domain ids `role` samples windows from: expert i's shard with `shard_by: domain`, else
    /// nil (every domain). Throws (naming the data file) when the corpus has fewer domains than
    /// experts, which preflight refuses before a run starts.
    static func trainingDomains(_ spec: ExperimentSpec, role: TrainTask.Role, corpus: TextCorpus, dataFile: String) throws -> [Int]? {
        guard case .expert(let i) = role, spec.split.shardBy == .domain else { return nil }
        do {
            return try corpus.shardDomains(spec.experts)[i]
        } catch {
            throw RuntimeError.io(path: dataFile, message: "cannot shard the corpus by domain: \(error)")
        }
    }

    /// Train tokens of `domains` (nil: every domain).
    static func trainTokens(_ corpus: TextCorpus, domains: [Int]?) -> Int {
        let streams = corpus.streams(.train)
        return (domains ?? Array(streams.indices)).reduce(0) { $0 + streams[$1].count }
    }

    /// The checkpoint `role` starts from, with what it is (for errors and the log): the
    /// pre-trained seed model of a branch expert, or the fused (layer-wise: stacked) model of
    /// `finetune`; nil when the task starts from its initialisation.
    static func startSource(_ spec: ExperimentSpec, role: TrainTask.Role, layout: RunLayout) -> (path: String, what: String)? {
        switch role {
        // The plan has a `pretrain` task exactly when the run pre-trains the seed model.
        case .expert where spec.split.seedModel == .shared && Planner.plan(spec).task("pretrain") != nil:
            return (layout.taskFile("pretrain"), "the pre-trained seed model")
        case .finetune:
            return spec.split.strategy == .layerwise ? (layout.taskFile("train"), "the stacked model") : (layout.taskFile("fuse"), "the fused model")
        default: return nil
        }
    }

    /// The model `finetune` trains: built from the config of `path`'s `/model` (dense, or the MoE
    /// LM of BTX) with its parameters.
    static func modelToFinetune(from path: String, group: String = "model") throws -> TransformerLM {
        do {
            return try LMEvaluateTask.loadLM(from: try H5File.open(path), at: group, file: path)
        } catch let error as RuntimeError {
            throw error
        } catch {
            throw RuntimeError.io(path: path, message: "cannot load the model to fine-tune: \(error)")
        }
    }

    /// Copies the parameters of `path`'s `/model` into `model` (the seed model: same dense
    /// config); errors name `what` and the tensor.
    static func loadStart(_ model: TransformerLM, from path: String, what: String, group: String = "model") throws {
        do {
            try Checkpoint.loadParameters(into: model.parameters, from: try H5File.open(path), at: group)
        } catch {
            throw RuntimeError.io(path: path, message: "cannot load \(what): \(error)")
        }
    }

    /// `shard`, `shard_by`, `train_tokens` and `train_samples` on an expert's task file (see the
    /// extension's documentation); the other roles record only `train_tokens`.
    static func writeTrainingAttributes(_ spec: ExperimentSpec, role: TrainTask.Role, tokens: Int, to file: H5File) throws {
        try file.setAttribute("train_tokens", Int64(tokens))
        guard case .expert(let i) = role else { return }
        try file.setAttribute("train_samples", Int64(tokens))
        try file.setAttribute("shard", Int64(i))
        try file.setAttribute("shard_by", spec.split.shardBy.rawValue)
    }
}
