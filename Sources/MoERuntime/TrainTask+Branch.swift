import MoECore
import MoEData
import MoEHDF5
import MoENN
import MoESpec
import MoEStore

/// The experts of `split.strategy: branch` (Branch-Train-Merge's branching): task `expert-<i>`
/// is a `TrainTask` with role `.expert(i)` that trains a copy of the seed model (the dense model
/// config) on shard `i` of the training split, with `split.overrides[i]` applied.
///
/// - Seed model: the `pretrain` task's model when `split.pretrain_epochs > 0`, else the
///   initialisation from the spec seed (the same for every expert, whatever its `seed` override);
///   with `split.seed_model: independent`, expert i's own initialisation from
///   `RNG.mix(seed ^ fnv1a("branch/independent-init/<i>"))` (see `initialisationSeed`).
/// - Shard: `split.shard_by` over the training split (`ShardStrategy.domain` needs domain ids;
///   `random` is seeded by the data seed, `data.seed` or else `seed`), so shards never depend on the per-expert overrides;
///   `none` gives every expert the whole training split.
/// - Validation: the full validation split (every expert is judged on the same data).
/// - The task file records `shard` (i), `shard_by` and `train_samples` (the shard size).
extension TrainTask {
    /// The expert's index, or nil for the other roles.
    var expertIndex: Int? {
        if case .expert(let i) = role { return i }
        return nil
    }

    /// The data the task trains on: the training split, or an expert's shard of it.
    func trainingData() throws -> (Dataset, Standardization?) {
        let (train, norm) = try DataTask.load("train", layout: layout)
        guard let i = expertIndex else { return (train, norm) }
        let strategy: ShardStrategy
        switch spec.split.shardBy {
        case .none: return (train, norm)
        case .domain:
            guard train.domain != nil else {
                throw RuntimeError.io(path: layout.taskFile("data"), message: "split.shard_by: domain needs domain ids, and the samples have none; "
                    + "add a `domain` dataset (HDF5) or column (CSV), or choose split.shard_by: index or random")
            }
            strategy = .domain
        case .index: strategy = .index
        case .random: strategy = .random(seed: dataSeed)
        }
        do {
            return (try train.shards(spec.experts, by: strategy)[i], norm)
        } catch {
            throw RuntimeError.io(path: layout.taskFile("data"), message: "cannot shard the training split: \(error)")
        }
    }

    /// The pre-trained seed model an expert starts from, when the run pre-trains one.
    var seedSource: String? {
        guard expertIndex != nil, spec.split.pretrains else { return nil }
        return layout.taskFile("pretrain")
    }

    /// Copies the seed model's parameters into `model` (same dense config).
    func loadSeed(_ model: ResidualMLP, from path: String) throws {
        try loadStart(model, from: path, what: "the seed model")
        log.info("\(id): branched from the pre-trained seed model in \(path)")
    }

    /// Copies the parameters of `path`'s `/model` into `model`; errors name `what` and the tensor.
    private func loadStart(_ model: ResidualMLP, from path: String, what: String) throws {
        let file = try H5File.open(path)
        do {
            try Checkpoint.loadParameters(into: model.parameters, from: file, at: spec.handoffGroup(path, layout: layout) ?? "model")
        } catch {
            throw RuntimeError.io(path: path, message: "cannot load \(what): \(error)")
        }
    }

    /// The seed of a task's initial parameters: the spec seed, except for the experts of
    /// `split.seed_model: independent`, where expert i draws from
    /// `RNG.mix(seed ^ RNG.fnv1a("branch/independent-init/<i>"))` (SplitMix64's finaliser over the
    /// spec seed and the index: a different, reproducible initialisation per expert).
    static func initialisationSeed(_ spec: ExperimentSpec, _ role: Role) -> UInt64 {
        guard case .expert(let i) = role, spec.split.seedModel == .independent else { return spec.seed64 }
        return RNG.mix(spec.seed64 ^ RNG.fnv1a("branch/independent-init/\(i)"))
    }

    /// The model `finetune` starts from: the `fuse` task's (branch) or the stacked `train` model (layerwise).
    var finetuneSource: String? {
        guard role == .finetune else { return nil }
        return layout.taskFile(spec.split.strategy == .layerwise ? "train" : "fuse")
    }

    /// Copies the fused (or stacked) model's parameters into `model` (same dense config).
    func loadFused(_ model: ResidualMLP, from path: String) throws {
        try loadStart(model, from: path, what: "the model to fine-tune")
        log.info("\(id): fine-tuning the \(spec.split.strategy == .layerwise ? "stacked" : "fused") model in \(path) on all of train")
    }

    /// `shard` and `shard_by` on an expert's task file.
    func writeBranchAttributes(to file: H5File) throws {
        guard let i = expertIndex else { return }
        try file.setAttribute("shard", Int64(i))
        try file.setAttribute("shard_by", spec.split.shardBy.rawValue)
    }
}

extension ExperimentSpec {
    /// The spec the `finetune` task trains with: `train` with `fusion.finetune`'s epochs (not
    /// `train.steps`) and lr.
    var finetuneSpec: ExperimentSpec {
        var s = self
        guard let f = fusion.finetune else { return s }
        s.train.epochs = f.epochs
        s.train.steps = f.steps
        s.train.lr = f.lr
        s.train.minLR = min(s.train.minLR, f.lr)
        return s
    }

    /// The spec expert `i` of a `branch` run trains with: `train` and `seed` with
    /// `split.overrides[i]` applied (lr, seed, epochs, batch_size, weight_decay).
    func expertSpec(_ i: Int) -> ExperimentSpec {
        var s = self
        guard let o = split.overrides?[i] else { return s }
        s.data.seed = dataSeed   // an expert's `seed` override is not a data seed
        if let lr = o.lr { s.train.lr = lr }
        if let seed = o.seed { s.seed = seed }
        if let epochs = o.epochs { s.train.epochs = epochs }
        if let steps = o.steps { s.train.steps = steps }
        if let batchSize = o.batchSize { s.train.batchSize = batchSize }
        if let weightDecay = o.weightDecay { s.train.weightDecay = weightDecay }
        return s
    }
}
