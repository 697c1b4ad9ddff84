import Foundation
import MoEComm
import MoECore
import MoEData
import MoEHDF5
import MoENN
import MoESpec
import MoEStore

/// What the spec alone cannot tell, checked before anything is written (ARCHITECTURE §5.1):
/// `moe-run`, `validate` and `plan` run it after loading the spec, so a run that would fail on
/// its data file or its worker count fails at once with exit 2 and no run directory.
///
/// Each failure is a `SpecError` at the key it concerns, saying what is wrong with the value or
/// the file it names:
/// - `parallelism.workers`: a group of processes (modes `data`, `expert`, `pipeline`) shares one
///   shared-memory group, which holds at most `SharedMemoryGroup.maxWorldSize` ranks;
/// - `data.path`: the file is the format it claims and holds the datasets of the data contract
///   (`x` float `[n, features]` with finite values, `y` integer `[n]` of class ids, optional
///   `domain` integer `[n]`; CSV with a header), with enough rows for every split (train, val for
///   the per-epoch validation, test when evaluated) and for every branch expert's shard, and
///   domain ids when the `domain` router or domain shards need them;
/// - `data.path` of `data.source: text`: the corpus (`checkText`);
/// - `split.upcycle_from`: the checkpoint is a dense model whose parameters fit the MoE model
///   this spec builds on this data (a dry run of the upcycling copy).
public enum Preflight {
    /// Data files already read, by path and format, so the trials of a sweep read each file once.
    public final class Cache {
        var files: [String: Result<Dataset, DataError>] = [:]
        /// Text corpora, by path and split fractions (`Preflight+Text`).
        var texts: [String: Result<TextCorpus, DataError>] = [:]
        public init() {}
    }

    public static func check(_ spec: ExperimentSpec, cache: Cache? = nil) throws {
        try checkWorkers(spec)
        guard let shape = try checkData(spec, cache: cache ?? Cache()) else {
            if let setup = spec.lmSetup {
                try LMDenseStart.checkUpcycleSource(spec, setup)
                guard spec.train.initFrom != nil else { return }
                var config = setup.model
                if initFromTrainsDense(spec) { config.moe = nil }
                try InitFrom.check(spec, TransformerLM(config: config, seed: spec.seed64).parameters, kind: TransformerLM.checkpointKind)
            }
            return
        }
        try checkUpcycleSource(spec, features: shape.features, classes: shape.classes)
        guard spec.train.initFrom != nil else { return }
        var config = spec.modelConfig(features: shape.features, classes: shape.classes)
        if initFromTrainsDense(spec) { config.moe = nil }
        try InitFrom.check(spec, ResidualMLP(config: config, seed: spec.seed64).parameters, kind: ResidualMLP.checkpointKind)
    }

    /// Whether `train.init_from` starts a dense model: the `pretrain` task's, the branch experts',
    /// or the stacked model of a layer-wise run.
    static func initFromTrainsDense(_ spec: ExperimentSpec) -> Bool {
        spec.split.pretrains || spec.split.strategy == .branch || spec.split.strategy == .layerwise
    }

    /// The mode's limit on `parallelism.workers`.
    static func checkWorkers(_ spec: ExperimentSpec) throws {
        let p = spec.parallelism
        let grouped = p.mode == .data || p.mode == .expert || p.mode == .pipeline
        let limit = SharedMemoryGroup.maxWorldSize
        guard grouped, p.workers > limit else { return }
        throw spec.positions.error("parallelism.workers",
            "\(p.mode.rawValue) parallelism runs its workers as one shared-memory group of at most \(limit) processes, got \(p.workers)")
    }

    /// Loads (file) or sizes (synthetic) the data and checks it; returns its width and classes
    /// (nil for a text corpus, checked by `checkText`).
    static func checkData(_ spec: ExperimentSpec, cache: Cache) throws -> (features: Int, classes: Int)? {
        let key: String
        let name: String
        let count: Int
        let shape: (features: Int, classes: Int)
        var dataset: Dataset?
        switch spec.data.source {
        case .synthetic(let s):
            (key, name, count, shape) = ("data.samples", "the synthetic data", s.samples, (s.features, s.classes))
            if spec.split.strategy == .branch && spec.split.shardBy == .domain {
                dataset = try syntheticDomainsOnly(spec, s)
            }
        case .file(let f):
            let cacheKey = "\(f.resolvedFormat.rawValue):\(f.resolvedPath)"
            let loaded = cache.files[cacheKey] ?? load(f)
            cache.files[cacheKey] = loaded
            let data: Dataset
            switch loaded {
            case .success(let d): data = d
            case .failure(let error): throw spec.positions.error("data.path", error.description)
            }
            dataset = data
            (key, name, count, shape) = ("data.path", f.path, data.count, (data.features, data.classes))
            try checkDomains(spec, data, name: name)
        case .text(let t):
            try checkText(spec, t, cache: cache)
            return nil
        }
        try checkRows(spec, count: count, key: key, name: name)
        if let dataset { try checkShards(spec, dataset, key: key, name: name) }
        return shape
    }

    /// Domain shards depend on which domains land in the training split. The generator's domain
    /// ids (no features drawn) tell exactly; above a million samples every domain is in the
    /// training split in practice, and only "fewer domains than experts" is checked.
    static func syntheticDomainsOnly(_ spec: ExperimentSpec, _ s: DataSpec.SyntheticData) throws -> Dataset? {
        if s.domains < spec.experts {
            throw spec.positions.error("data.domains",
                "\(s.domains) domains leave branch experts without data: split.shard_by: domain gives expert i the domains d with d mod experts = i, and experts is \(spec.experts)")
        }
        guard s.samples <= 1_000_000 else { return nil }
        let domains = spec.syntheticGenerator(s).domainIDs()
        return try Dataset(x: Tensor(shape: [s.samples, 1]), y: [Int](repeating: 0, count: s.samples), domain: domains,
                           classes: s.classes, source: "synthetic")
    }

    /// The data file, or the `DataError` that says what is wrong with it.
    static func load(_ f: DataSpec.DataFile) -> Result<Dataset, DataError> {
        do {
            return .success(f.resolvedFormat == .csv ? try Dataset.load(csv: f.resolvedPath, source: f.path)
                                                     : try Dataset.load(hdf5: f.resolvedPath, source: f.path))
        } catch let error as DataError {
            return .failure(error)
        } catch {
            return .failure(.unreadable(file: f.path, message: "\(error)"))
        }
    }

    /// Every split the run uses gets at least one row.
    static func checkRows(_ spec: ExperimentSpec, count: Int, key: String, name: String) throws {
        let f = spec.data.split
        let sizes = DataSplits.sizes(of: count, train: f.train, val: f.val)
        let evaluated = Set(spec.eval.splits.map(\.rawValue))
        let needs: [(String, Int, String)] = [
            ("train", sizes.train, "training needs at least one sample"),
            ("val", sizes.val, "the training loop validates on it every epoch"),
        ] + (evaluated.contains("test") ? [("test", sizes.test, "eval.splits evaluates on it")] : [])
        if count == 0 { throw spec.positions.error(key, "\(name): holds no samples (x has 0 rows)") }
        for (part, size, why) in needs where size < 1 {
            let rows = count == 1 ? "1 sample" : "\(count) samples"
            throw spec.positions.error(key,
                "\(name): \(rows); data.split (train \(format(f.train)), val \(format(f.val)), test \(format(f.test))) leaves none for \(part), and \(why)")
        }
    }

    /// Branch experts each train on a non-empty shard of the training split.
    static func checkShards(_ spec: ExperimentSpec, _ data: Dataset, key: String, name: String) throws {
        guard spec.split.strategy == .branch, data.domain != nil || spec.split.shardBy != .domain else { return }
        let strategy: ShardStrategy
        switch spec.split.shardBy {
        case .none: return
        case .domain: strategy = .domain
        case .index: strategy = .index
        case .random: strategy = .random(seed: spec.dataSeed64)
        }
        let train = try data.split(train: spec.data.split.train, val: spec.data.split.val, seed: spec.dataSeed64).train
        let shards: [[Int]]
        do {
            shards = try train.shardIndices(spec.experts, by: strategy)
        } catch let error as DataError {
            if case .invalidParameter(_, _, let message) = error {
                throw spec.positions.error(key, "\(name): cannot give each of the \(spec.experts) branch experts a shard of the training split (split.shard_by: \(spec.split.shardBy.rawValue)): \(message)")
            }
            throw spec.positions.error(key, error.description)
        }
        if let empty = shards.firstIndex(where: \.isEmpty) {
            throw spec.positions.error(key, "\(name): the training split has \(train.count) samples, too few for \(spec.experts) branch experts (shard \(empty) is empty)")
        }
    }

    /// The `domain` router and domain shards need domain ids (synthetic data always has them).
    static func checkDomains(_ spec: ExperimentSpec, _ data: Dataset, name: String) throws {
        guard data.domain == nil else { return }
        if spec.split.strategy == .branch && spec.split.shardBy == .domain {
            throw spec.positions.error("data.path", "\(name): the samples have no domain ids, and split.shard_by: domain shards by them; "
                + "add a `domain` dataset (HDF5) or column (CSV), or choose split.shard_by: index or random")
        }
        if spec.moeConfig?.router == .domain {
            throw spec.positions.error("data.path", "\(name): the samples have no domain ids, and router.type: domain routes by them; "
                + "add a `domain` dataset (HDF5) or column (CSV), or choose another router.type")
        }
    }

    /// A dry run of upcycling `split.upcycle_from` into the model this spec builds.
    static func checkUpcycleSource(_ spec: ExperimentSpec, features: Int, classes: Int) throws {
        guard let path = spec.split.upcycleFrom, let resolved = spec.split.resolvedUpcycleFrom else { return }
        func fail(_ message: String) -> SpecError { spec.positions.error("split.upcycle_from", "\(path): \(message)") }
        if let problem = H5Signature.problem(at: resolved) { throw fail(problem.description) }
        do {
            let file = try H5File.open(resolved)
            guard let group = Evaluation.modelGroup(in: file) else {
                throw fail("holds no model to upcycle from (expected a checkpoint group, /model or /models/final)")
            }
            let (dense, _) = try Checkpoint.loadModel(from: file, at: group, for: "upcycling")
            guard dense.config.moe == nil else { throw fail("holds an MoE model; upcycling starts from a dense one") }
            let target = ResidualMLP(config: spec.modelConfig(features: features, classes: classes), seed: spec.seed64)
            try Upcycling.upcycle(from: Upcycling.parameters(of: dense), into: target)
        } catch let error as SpecError {
            throw error
        } catch let error as Upcycling.Mismatch {
            throw fail("cannot upcycle into this spec's model: \(error)")
        } catch let error as HDF5Error {
            throw spec.positions.error("split.upcycle_from", DataError(reading: error, source: path).description)
        } catch {
            throw fail("\(error)")
        }
    }

    private static func format(_ x: Double) -> String {
        x == x.rounded() ? String(Int(x)) : String(x)
    }
}
