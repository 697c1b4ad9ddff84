/// A validated experiment: every section typed, every default resolved.
///
/// Produced only by `SpecLoader`, which guarantees that every value is in range, that the
/// cross-field rules hold and that nothing outside `SupportGate` is requested. `docs/spec.md`
/// (generated from `SpecSchema`) describes each key.
public struct ExperimentSpec: Equatable, Sendable {
    /// Names the results folder: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
    public var name: String
    public var seed: Int
    public var description: String?
    public var data: DataSpec
    public var model: ModelSpec
    /// Number of experts; 1 means a dense model.
    public var experts: Int
    public var split: SplitSpec
    public var router: RouterSpec
    public var parallelism: ParallelismSpec
    public var train: TrainSpec
    public var fusion: FusionSpec
    public var eval: EvalSpec
    public var output: OutputSpec
    /// `nil` when the spec has no `sweep` section.
    public var sweep: SweepSpec?
    /// Where each key was written (for errors found after loading; ignored by `==`).
    public var positions = SpecPositions()

    /// The seed of the data's random draws: `data.seed`, or `seed` when not given.
    public var dataSeed: Int { data.seed ?? seed }
}

// MARK: - data

public struct DataSpec: Equatable, Sendable {
    /// Where the samples come from, with the keys that only apply to that source.
    public enum Source: Equatable, Sendable {
        case synthetic(SyntheticData)
        case file(DataFile)
        /// A text corpus of byte tokens (`model.kind: transformer` only).
        case text(TextData)

        /// The `data.source` value.
        public var kind: Kind {
            switch self {
            case .synthetic: return .synthetic
            case .file: return .file
            case .text: return .text
            }
        }

        /// Feature vectors (`synthetic` or `file`), what an `mlp` reads.
        public var isFeatureData: Bool { kind != .text }
    }

    public enum Kind: String, CaseIterable, Sendable { case synthetic, file, text }

    /// A text corpus (`data.source: text`, ARCHITECTURE §5.4): a folder with one `.txt` file
    /// or sub-folder per domain, or an HDF5 file in the corpus layout. Its domains, their
    /// streams and their lengths are checked before a run (`Preflight`), not by the loader.
    public struct TextData: Equatable, Sendable {
        /// As written in the spec (relative paths are relative to the spec file's directory).
        public var path: String
        /// Absolute, standardised path of the file or folder; it existed when the spec was loaded.
        public var resolvedPath: String
    }

    /// The synthetic domain generator's parameters (`data.source: synthetic`).
    public struct SyntheticData: Equatable, Sendable {
        public var features: Int
        public var classes: Int
        public var domains: Int
        public var samples: Int
        public var separation: Double
        public var labelNoise: Double
    }

    /// A data file (`data.source: file`).
    public struct DataFile: Equatable, Sendable {
        /// As written in the spec (relative paths are relative to the spec file's directory).
        public var path: String
        /// Absolute, standardised path of the file; it existed when the spec was loaded.
        public var resolvedPath: String
        /// As written (`auto` stays `auto`); see `resolvedFormat`.
        public var format: FileFormat

        /// The concrete format: `format`, or for `auto` the one the extension names.
        public var resolvedFormat: FileFormat {
            format == .auto ? FileFormat.fromExtension(of: path) ?? .auto : format
        }
    }

    public enum FileFormat: String, CaseIterable, Sendable {
        case auto, hdf5, csv

        /// `.h5`/`.hdf5`/`.he5` → hdf5, `.csv` → csv, anything else → nil.
        public static func fromExtension(of path: String) -> FileFormat? {
            let lower = path.lowercased()
            if lower.hasSuffix(".h5") || lower.hasSuffix(".hdf5") || lower.hasSuffix(".he5") { return .hdf5 }
            if lower.hasSuffix(".csv") { return .csv }
            return nil
        }
    }

    /// Fractions of the samples in each split; each in (0, 1), summing to 1.
    public struct Fractions: Equatable, Sendable {
        public var train: Double
        public var val: Double
        public var test: Double
    }

    public var source: Source
    public var split: Fractions
    public var standardize: Bool
    /// `data.seed`: the seed of everything drawn about the data (the feature-data split, the
    /// synthetic generator, `split.shard_by: random`); nil = the spec's `seed`. The model seed
    /// keeps initialisation, batch order, dropout and router noise, so seeds can vary the one
    /// without the other.
    public var seed: Int? = nil
}

// MARK: - model

public struct ModelSpec: Equatable, Sendable {
    public enum Activation: String, CaseIterable, Sendable { case gelu, relu, silu }

    /// Which blocks become MoE layers when `experts > 1`.
    public enum MoEBlocks: Equatable, Sendable {
        case all
        /// Explicit block indices, each `< blocks`, unique, in the order written.
        case indices([Int])
        /// Every N-th block: indices N-1, 2N-1, ... (N <= blocks).
        case every(Int)

        /// The block indices this selects in a model with `blocks` blocks, ascending.
        public func indices(blocks: Int) -> [Int] {
            switch self {
            case .all: return Array(0..<blocks)
            case .indices(let list): return list.sorted()
            case .every(let n): return stride(from: n - 1, to: blocks, by: n).map { $0 }
            }
        }

        /// The selected blocks for messages, without listing more than 8 of them (a valid spec may
        /// have billions of blocks, found by the spec fuzzer): "block 1", "blocks 0, 1",
        /// "blocks 0-63", "blocks 1, 3, …, 127".
        public func summary(blocks: Int) -> String {
            let count: Int
            switch self {
            case .all: count = blocks
            case .indices(let list): count = list.count
            case .every(let n): count = n <= blocks ? blocks / n : 0
            }
            let noun = count == 1 ? "block" : "blocks"
            if count <= 8 { return noun + " " + indices(blocks: blocks).map(String.init).joined(separator: ", ") }
            switch self {
            case .all: return "\(noun) 0-\(blocks - 1)"
            case .indices(let list): return "\(noun) " + list.sorted().prefix(3).map(String.init).joined(separator: ", ") + ", …, \(list.max()!)"
            case .every(let n): return "\(noun) \(n - 1), \(2 * n - 1), …, \(n * count - 1)"
            }
        }
    }

    /// `model.kind`: the residual MLP classifier on feature vectors, or the decoder-only
    /// transformer language model on text (ARCHITECTURE §2).
    public enum Kind: String, CaseIterable, Sendable { case mlp, transformer }

    /// The keys only a transformer has (`model.kind: transformer`).
    public struct Transformer: Equatable, Sendable {
        /// Tokens the model reads per window (rows of `pos/weight`); windows are `context + 1`
        /// tokens, scored on the last `context`.
        public var context: Int
        /// Attention heads; each has `hidden / heads` dimensions (`heads` divides `hidden`).
        public var heads: Int
        /// Logits from the token embedding (`LN(x)·embed/weightᵀ`) instead of a separate head.
        public var tieEmbeddings: Bool

        public init(context: Int, heads: Int, tieEmbeddings: Bool) {
            self.context = context
            self.heads = heads
            self.tieEmbeddings = tieEmbeddings
        }
    }

    public var hidden: Int
    public var ffn: Int
    public var blocks: Int
    public var activation: Activation
    public var dropout: Double
    public var normEps: Double
    public var moeBlocks: MoEBlocks
    /// The transformer's own keys; nil for `kind: mlp` (so an mlp cannot carry them).
    public var transformer: Transformer? = nil
    /// Always-active shared experts per MoE layer (`model.shared_experts`; 0 = none).
    public var sharedExperts: Int = 0
    /// Width of each shared expert (`model.shared_ffn`); nil = `ffn`.
    public var sharedFFN: Int? = nil

    public var kind: Kind { transformer == nil ? .mlp : .transformer }
}

// MARK: - split

public struct SplitSpec: Equatable, Sendable {
    public enum Strategy: String, CaseIterable, Sendable { case none, replicate, neurons, layerwise, branch }
    /// How `neurons` groups hidden units into experts.
    public enum NeuronMethod: String, CaseIterable, Sendable { case cluster, contiguous, random }
    /// How `branch` shards the training data between experts (`none`: every expert trains on
    /// the whole training split, as the ingredients of a model soup do).
    public enum ShardBy: String, CaseIterable, Sendable { case domain, random, index, none }
    /// Where `branch` experts start: `shared` (one seed model, optionally pre-trained, copied into
    /// every expert) or `independent` (expert i from its own random initialisation, seeded by the
    /// spec seed and i: the contrast case, where weight averaging has no shared basin).
    public enum SeedModel: String, CaseIterable, Sendable { case shared, independent }

    /// Per-expert training overrides for `branch`; `nil` fields keep the `train` value.
    public struct ExpertOverride: Equatable, Sendable {
        public var lr: Double?
        public var seed: Int?
        public var epochs: Int?
        /// The expert's optimizer steps instead of `train.steps` (only with `train.steps`).
        public var steps: Int?
        public var batchSize: Int?
        public var weightDecay: Double?

        public init(lr: Double? = nil, seed: Int? = nil, epochs: Int? = nil, steps: Int? = nil, batchSize: Int? = nil,
                    weightDecay: Double? = nil) {
            self.lr = lr
            self.seed = seed
            self.epochs = epochs
            self.steps = steps
            self.batchSize = batchSize
            self.weightDecay = weightDecay
        }
    }

    public var strategy: Strategy
    /// As written (replicate only).
    public var upcycleFrom: String?
    /// Absolute path of `upcycleFrom`; it existed when the spec was loaded.
    public var resolvedUpcycleFrom: String?
    public var pretrainEpochs: Int
    /// Dense pre-training steps (`split.pretrain_steps`; 0 = none): the other way to give the
    /// pre-training length; at most one of the two is above 0 (`CrossFieldRules`).
    public var pretrainSteps: Int = 0
    public var method: NeuronMethod
    public var shardBy: ShardBy
    /// One entry per expert (branch only).
    public var overrides: [ExpertOverride]?
    public var seedModel: SeedModel = .shared
    /// `split.source`: which model of the `pretrain` task is upcycled, moefied or branched.
    public var source: ModelSource = .final

    /// Whether the run pre-trains a dense model first (`pretrain_epochs` or `pretrain_steps` above 0).
    public var pretrains: Bool { pretrainEpochs > 0 || pretrainSteps > 0 }
}

// MARK: - router

public struct RouterSpec: Equatable, Sendable {
    public enum Kind: String, CaseIterable, Sendable {
        case topk, `switch`, noisy_topk, expert_choice, hash, domain
    }
    public enum DropPolicy: String, CaseIterable, Sendable { case probs, position }
    /// How the logits become affinities: softmax over experts, or a sigmoid per expert (DeepSeek-V3).
    public enum Score: String, CaseIterable, Sendable { case softmax, sigmoid }
    /// Load balancing: the Switch aux loss, the loss-free expert bias (Wang et al. 2024), or none.
    public enum Balance: String, CaseIterable, Sendable { case aux_loss, bias, none }

    public var type: Kind
    public var k: Int
    /// `nil` = dropless.
    public var capacityFactor: Double?
    public var minCapacity: Int
    public var dropPolicy: DropPolicy
    public var auxLoss: Double
    public var zLoss: Double
    public var jitter: Double
    public var normalizeTopk: Bool
    public var score: Score = .softmax
    public var balance: Balance = .aux_loss
    public var biasRate: Double = 0.001
}

// MARK: - parallelism

public struct ParallelismSpec: Equatable, Sendable {
    public enum Mode: String, CaseIterable, Sendable { case none, branch, data, expert, pipeline }
    public enum Compression: String, CaseIterable, Sendable { case none, fp16, int8, topk }
    /// Where the workers of a run are (ARCHITECTURE §5.5): `shm` forked processes on this machine
    /// sharing memory, `mpi` the ranks of an `mpirun`/`srun` launch, `auto` MPI when launched by
    /// one, else shm. Results are the same bits either way, so it is not part of the run id.
    public enum Backend: String, CaseIterable, Sendable { case auto, shm, mpi }

    public var mode: Mode
    public var workers: Int
    public var retries: Int
    public var microbatches: Int
    public var compression: Compression
    public var ratio: Double
    public var backend: Backend = .auto
}

// MARK: - train

public struct TrainSpec: Equatable, Sendable {
    public enum Optimizer: String, CaseIterable, Sendable { case adamw, sgd }
    public enum Schedule: String, CaseIterable, Sendable { case constant, cosine }

    public var epochs: Int
    public var batchSize: Int
    public var optimizer: Optimizer
    public var lr: Double
    public var weightDecay: Double
    public var momentum: Double
    public var nesterov: Bool
    public var betas: [Double]
    public var eps: Double
    /// `nil` = no clipping.
    public var gradClip: Double?
    public var schedule: Schedule
    public var warmupSteps: Int
    public var minLR: Double
    public var logEvery: Int
    /// 0 = at the end of each epoch.
    public var evalEvery: Int
    /// 0 = at the end of each epoch.
    public var checkpointEvery: Int
    /// Stage-local training with auxiliary heads (layerwise only).
    public var local: Bool
    /// Optimizer steps in all (`train.steps`), instead of `epochs`; nil = train for `epochs`.
    /// The spec loader guarantees that `train.epochs` was not given with it (`epochs` then holds
    /// its default and means nothing).
    public var steps: Int? = nil
    /// `train.init_from`, as written: the checkpoint the run's first trained model starts from
    /// (nil = its random initialisation).
    public var initFrom: String? = nil
    /// The checkpoint file `initFrom` names (a run directory or `run.h5` → the task file of its
    /// final model, `RunDirectory.finalTaskFile`); it existed when the spec was loaded.
    public var resolvedInitFrom: String? = nil
    /// `train.early_stopping`: nil = train the whole budget.
    public var earlyStopping: EarlyStopping? = nil

    /// Stop when `patience` evaluations in a row have not improved `eval.metric` by more than
    /// `minDelta` on the best value so far (Prechelt 1998, "Early stopping — but when?"; the
    /// Keras `EarlyStopping` rule).
    public struct EarlyStopping: Equatable, Sendable {
        public var patience: Int
        public var minDelta: Double

        public init(patience: Int, minDelta: Double) {
            self.patience = patience
            self.minDelta = minDelta
        }
    }

    /// The steps the training runs: `steps`, or `epochs` passes of `stepsPerEpoch` steps.
    public func totalSteps(stepsPerEpoch: Int) -> Int { steps ?? epochs * stepsPerEpoch }
}

// MARK: - fusion

public struct FusionSpec: Equatable, Sendable {
    public enum Method: String, CaseIterable, Sendable {
        case none, average, greedy_soup, task_arithmetic, ties, dare, dare_ties, slerp, fisher, mix
        case ensemble, stack
    }

    public enum Weights: Equatable, Sendable {
        case uniform, dataSize, valLoss, optimized
        /// One non-negative weight per expert.
        case explicit([Double])

        /// The keyword for the named schemes (`nil` for an explicit list).
        public var keyword: String? {
            switch self {
            case .uniform: return "uniform"
            case .dataSize: return "data_size"
            case .valLoss: return "val_loss"
            case .optimized: return "optimized"
            case .explicit: return nil
            }
        }

        static let named: [Weights] = [.uniform, .dataSize, .valLoss, .optimized]
    }

    /// Fine-tuning after fusion: `epochs` passes over train, or `steps` optimizer steps instead
    /// (the natural unit of a language model, whose epoch is thousands of steps); one of the two.
    public struct Finetune: Equatable, Sendable {
        public var epochs: Int
        public var steps: Int? = nil
        public var lr: Double

        public init(epochs: Int, steps: Int? = nil, lr: Double) {
            self.epochs = epochs
            self.steps = steps
            self.lr = lr
        }
    }

    public var method: Method
    public var weights: Weights
    public var temperature: Double
    public var lambda: Double
    public var density: Double
    public var rescale: Bool
    public var t: Double
    public var normalize: Bool
    public var epsilon: Double
    public var fisherSamples: Int
    /// `nil` = no fine-tuning after fusion.
    public var finetune: Finetune?

    /// The prior π of a BTM ensemble of transformer LMs (`fusion.method: ensemble`): `uniform`
    /// (1/E) or `validation` (BTM's cached prior: the experts' mean posterior over the validation
    /// windows).
    public enum Prior: String, CaseIterable, Sendable { case uniform, validation }
    public var prior: Prior = .validation
    /// `fusion.source`: which model of each branch expert is fused (and, with `layerwise`, which
    /// stacked model is fine-tuned).
    public var source: ModelSource = .final
}

/// Which model of a training task the next task reads: the one at the end of training
/// (`/model`) or the best one by `eval.metric` (`/best`).
public enum ModelSource: String, CaseIterable, Sendable { case final, best }

// MARK: - eval, output, sweep

public struct EvalSpec: Equatable, Sendable {
    public enum Split: String, CaseIterable, Sendable { case train, val, test }

    public var batchSize: Int
    public var splits: [Split]

    /// `eval.metric`: the validation number that picks a training task's best model (and that
    /// early stopping watches).
    public enum Metric: String, CaseIterable, Sendable {
        case val_loss, val_accuracy

        /// Whether a larger value is better (accuracy) or a smaller one (loss).
        public var higherIsBetter: Bool { self == .val_accuracy }
    }
    public var metric: Metric = .val_loss
}

public struct OutputSpec: Equatable, Sendable {
    /// Relative to the working directory of the run.
    public var dir: String
    public var keepCheckpoints: Int
    /// gzip level for datasets, 0...9.
    public var compression: Int
}

public struct SweepSpec: Equatable, Sendable {
    public enum Method: String, CaseIterable, Sendable { case grid, random }

    /// One swept key: a valid spec key path and the values it takes, in order.
    public struct Parameter: Equatable, Sendable {
        public var keyPath: String
        public var values: [SpecValue]
    }

    public var method: Method
    /// Number of sampled trials (random only).
    public var trials: Int?
    public var seed: Int
    public var parameters: [Parameter]

    /// The most trials one sweep runs (each is validated before the first starts, so a larger
    /// one would only make `validate` and `sweep` wait).
    public static let maxTrials = 10_000

    /// The trials this sweep runs: the grid's size (saturating at `Int.max`), or for `random`
    /// at most `trials` of it.
    public var trialCount: Int {
        let grid = parameters.reduce(1) { $0.multipliedReportingOverflow(by: $1.values.count).overflow ? Int.max : $0 * $1.values.count }
        return method == .random ? min(trials ?? 1, grid) : grid
    }
}

/// A plain YAML value (for defaults and swept values).
public indirect enum SpecValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case number(Double)
    case string(String)
    case list([SpecValue])
    case map([Entry])

    public struct Entry: Equatable, Sendable {
        public var key: String
        public var value: SpecValue
    }
}

extension SpecValue {
    /// The string of a `.string`.
    var text: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The strings of a list of strings.
    var texts: [String]? {
        if case .list(let items) = self { return items.compactMap(\.text) }
        return nil
    }

    /// The numbers of a list of numbers (integers included).
    var numbers: [Double]? {
        guard case .list(let items) = self else { return nil }
        return items.compactMap {
            switch $0 {
            case .number(let d): return d
            case .int(let i): return Double(i)
            default: return nil
            }
        }
    }
}

extension RouterSpec {
    /// Why `router.score: sigmoid` and `router.balance: bias` do not apply to a router type (the
    /// types missing here, `topk` and `switch`, take both).
    static let tokenChoiceOnly: [Kind: String] = [
        .noisy_topk: "its noise is added to the logits of a softmax and is itself the balancing mechanism",
        .expert_choice: "each expert takes its top tokens, so the load is balanced by construction",
        .hash: "a fixed assignment has no scores",
        .domain: "an oracle assignment has no scores",
    ]
}
