/// What a run id is made of (ARCHITECTURE §5.2, docs/results.md): the part of the resolved spec
/// that can change a run's results, written so that upgrading moe-run does not move it.
///
/// Two rules keep a run id stable:
/// - **Keys that equal their schema default are left out.** A key added to moe-run with a
///   default therefore leaves every existing spec's identity, and so its run id, unchanged.
/// - **Keys that cannot change a single bit of the results are left out** (`resultNeutralKeys`,
///   and `parallelism.workers` where each task runs in one process), so re-running with another
///   log interval or compression level finds the run that is already there.
///
/// Leaving defaults out has one cost: a changed default would go unnoticed by the id (the same
/// text, different results). `identityScheme` is written into the text for that case: change a
/// default, or what a key means, and bump the scheme (every run id moves, honestly).
/// `Tests/MoERuntimeTests/RunIDTests` holds the defaults and the shipped experiments' ids, so
/// neither can change by accident.
extension ExperimentSpec {
    /// The version of the identity text. Scheme 1 (before issue 11) hashed the whole resolved
    /// spec; see `RunLayout.legacyRunID`.
    public static let identityScheme = 2

    /// Keys added after scheme 1 (issue 13). A spec an older moe-run ran holds their defaults,
    /// and the scheme-1 id (`RunLayout.legacyRunID`) hashes its resolved YAML without them.
    public static let keysNewerThanScheme1: Set<String> = ["model.kind", "train.steps", "parallelism.backend", "fusion.prior", "split.pretrain_steps",
                                                                  "data.seed", "eval.metric", "train.early_stopping",
                                                                  "split.source", "fusion.source",
                                                                  "train.init_from",
                                                                  "router.score", "router.balance", "router.bias_rate",
                                                                  "model.shared_experts", "model.shared_ffn"]

    /// Keys that cannot change a single bit of the results, so they are not part of the run id:
    /// where results go and how they are written, how often metric rows and checkpoints are
    /// written (resuming from any checkpoint gives the same bits, ARCHITECTURE §6), how many
    /// checkpoints are kept, free text, how often a crashed task is restarted, and whether the
    /// workers share memory or are MPI ranks (rank-order sums in both backends, ARCHITECTURE §5.5).
    public static let resultNeutralKeys = [
        "description", "output.dir", "output.compression", "output.keep_checkpoints",
        "train.log_every", "train.checkpoint_every", "parallelism.retries", "parallelism.backend",
    ]

    /// Whether `parallelism.workers` is left out of the id: in modes `none` and `branch` the
    /// workers are processes that each run whole tasks, so their number changes no bit. In
    /// `data`, `expert` and `pipeline` mode they share one task and their number changes how
    /// sums are rounded (docs/results.md), so it stays.
    public var workersAreResultNeutral: Bool { parallelism.mode == .none || parallelism.mode == .branch }

    /// The text hashed into the run id: `# moe-run run identity, scheme N`, then the resolved
    /// spec's entries in schema order without result-neutral keys and without keys equal to
    /// their default (recursively, inside sections).
    ///
    /// `initFromDigest`: the SHA-256 of the `train.init_from` checkpoint file, which replaces its
    /// path (the content is the input that changes results; the same file elsewhere is the
    /// same run, another file at the same path another run). `RunLayout.runID` passes it.
    public func identityYAML(initFromDigest: String? = nil) -> String {
        "# moe-run run identity, scheme \(Self.identityScheme)\n" + significantYAML(initFromDigest: initFromDigest)
    }

    /// The entries of `identityYAML` (without its first line), also without the key paths (or
    /// whole sections) in `leftOut`: a task's slice of the spec (`TaskIdentity` in MoERuntime).
    public func significantYAML(leavingOut leftOut: Set<String> = [], initFromDigest: String? = nil) -> String {
        var neutral = Set(Self.resultNeutralKeys).union(leftOut)
        if workersAreResultNeutral { neutral.insert("parallelism.workers") }
        // `data.seed` equal to `seed` is the default's meaning: the same draws, the same id.
        var spec = self
        if spec.data.seed == spec.seed { spec.data.seed = nil }
        if spec.train.initFrom != nil, let digest = initFromDigest { spec.train.initFrom = "sha256:" + digest }
        var out = ""
        for entry in Self.significant(spec.resolvedEntries().map { SpecValue.Entry(key: $0.0, value: $0.1) },
                                      fields: SpecSchema.root, prefix: "", neutral: neutral) {
            out += "\(YAMLText.key(entry.key)): \(YAMLText.inline(entry.value))\n"
        }
        return out
    }

    /// `entries` without neutral keys and keys at their default. A section whose keys are all
    /// left out goes too, unless it may be null (an empty `fusion.finetune` is not its absence).
    private static func significant(_ entries: [SpecValue.Entry], fields: [SchemaField], prefix: String,
                                    neutral: Set<String>) -> [SpecValue.Entry] {
        entries.compactMap { entry in
            let path = prefix + entry.key
            guard !neutral.contains(path) else { return nil }
            // Entries the schema does not list (the swept key paths of `sweep.parameters`) stay.
            guard let field = fields.first(where: { $0.key == entry.key }) else { return entry }
            if let defaultValue = field.defaultValue, entry.value == defaultValue { return nil }
            if field.defaultValue == nil, field.nullable, entry.value == .null { return nil }
            if field.isSection, case .map(let children) = entry.value {
                let kept = significant(children, fields: field.children, prefix: path + ".", neutral: neutral)
                if kept.isEmpty && !field.nullable { return nil }
                return SpecValue.Entry(key: entry.key, value: .map(kept))
            }
            return entry
        }
    }
}
