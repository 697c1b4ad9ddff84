extension ExperimentSpec {
    /// The spec as YAML with every key that applies, defaults filled in, in schema order.
    ///
    /// Top-level keys and sections are block mappings; lists and deeper mappings are flow style.
    /// Keys that do not apply to the chosen data source or model kind are left out (`path`/`format`
    /// for synthetic data, the generator keys for a file, the feature keys for text, the
    /// transformer keys for an mlp), optional keys are written as `null`.
    /// Loading the text again (with the same file name/directory, for relative data paths) gives
    /// an equal spec.
    public func resolvedYAML() -> String { resolvedYAML(droppingDefaultsOf: []) }

    /// `resolvedYAML()` without the key paths in `dropped` (`train.steps`) that hold their schema
    /// default: the text an older moe-run wrote for the same spec (`RunLayout.legacyRunID`).
    public func resolvedYAML(droppingDefaultsOf dropped: Set<String>) -> String {
        var out = "# moe-run resolved spec: every key, defaults filled in (see docs/spec.md)\n"
        func kept(_ path: String, _ value: SpecValue) -> Bool {
            !dropped.contains(path) || SpecSchema.field(at: path)?.defaultValue != value
        }
        for (key, value) in resolvedEntries() where kept(key, value) {
            if case .map(let entries) = value {
                out += "\(YAMLText.key(key)):\n"
                for entry in entries where kept("\(key).\(entry.key)", entry.value) {
                    out += "  \(YAMLText.key(entry.key)): \(YAMLText.inline(entry.value))\n"
                }
            } else {
                out += "\(YAMLText.key(key)): \(YAMLText.inline(value))\n"
            }
        }
        return out
    }

    /// The top-level entries, in schema order.
    func resolvedEntries() -> [(String, SpecValue)] {
        [
            ("name", .string(name)), ("seed", .int(seed)), ("description", description.map(SpecValue.string) ?? .null),
            ("data", .map(dataEntries())), ("model", .map(modelEntries())), ("experts", .int(experts)),
            ("split", .map(splitEntries())), ("router", .map(routerEntries())),
            ("parallelism", .map(parallelismEntries())), ("train", .map(trainEntries())),
            ("fusion", .map(fusionEntries())), ("eval", .map(evalEntries())), ("output", .map(outputEntries())),
            ("sweep", sweep.map { .map(sweepEntries($0)) } ?? .null),
        ]
    }

    private func dataEntries() -> [SpecValue.Entry] {
        var entries = [entry("source", .word(data.source.kind.rawValue))]
        switch data.source {
        case .synthetic(let s):
            entries += [entry("features", .int(s.features)), entry("classes", .int(s.classes)),
                        entry("domains", .int(s.domains)), entry("samples", .int(s.samples)),
                        entry("separation", .number(s.separation)), entry("label_noise", .number(s.labelNoise))]
        case .file(let f):
            entries += [entry("path", .string(f.path)), entry("format", .word(f.format.rawValue))]
        case .text(let t):
            entries += [entry("path", .string(t.path))]
        }
        let split = SpecValue.map([entry("train", .number(data.split.train)), entry("val", .number(data.split.val)),
                                   entry("test", .number(data.split.test))])
        // Text has no features to standardise (the key is an error there).
        return entries + [entry("split", split)] + (data.source.isFeatureData ? [entry("standardize", .bool(data.standardize))] : [])
            + [entry("seed", data.seed.map(SpecValue.int) ?? .null)]
    }

    private func modelEntries() -> [SpecValue.Entry] {
        let blocks: SpecValue
        switch model.moeBlocks {
        case .all: blocks = .word("all")
        case .indices(let list): blocks = .list(list.map(SpecValue.int))
        case .every(let n): blocks = .map([entry("every", .int(n))])
        }
        // The transformer keys only for a transformer (an mlp that gives them is refused).
        let t = model.transformer
        return [entry("kind", .word(model.kind.rawValue))] + (t.map { [entry("context", .int($0.context))] } ?? [])
            + [entry("hidden", .int(model.hidden))] + (t.map { [entry("heads", .int($0.heads))] } ?? [])
            + [entry("ffn", .int(model.ffn)), entry("blocks", .int(model.blocks)),
               entry("activation", .word(model.activation.rawValue)), entry("dropout", .number(model.dropout)),
               entry("norm_eps", .number(model.normEps))]
            + (t.map { [entry("tie_embeddings", .bool($0.tieEmbeddings))] } ?? []) + [entry("moe_blocks", blocks)]
            + [entry("shared_experts", .int(model.sharedExperts)), entry("shared_ffn", model.sharedFFN.map(SpecValue.int) ?? .null)]
    }

    private func splitEntries() -> [SpecValue.Entry] {
        let overrides: SpecValue = split.overrides.map { list in
            .list(list.map { o in
                var fields: [SpecValue.Entry] = []
                if let lr = o.lr { fields.append(entry("lr", .number(lr))) }
                if let seed = o.seed { fields.append(entry("seed", .int(seed))) }
                if let epochs = o.epochs { fields.append(entry("epochs", .int(epochs))) }
                if let steps = o.steps { fields.append(entry("steps", .int(steps))) }
                if let batch = o.batchSize { fields.append(entry("batch_size", .int(batch))) }
                if let wd = o.weightDecay { fields.append(entry("weight_decay", .number(wd))) }
                return .map(fields)
            })
        } ?? .null
        return [entry("strategy", .word(split.strategy.rawValue)),
                entry("upcycle_from", split.upcycleFrom.map(SpecValue.string) ?? .null),
                entry("pretrain_epochs", .int(split.pretrainEpochs)),
                entry("pretrain_steps", .int(split.pretrainSteps)), entry("method", .word(split.method.rawValue)),
                entry("shard_by", .word(split.shardBy.rawValue)), entry("seed_model", .word(split.seedModel.rawValue)),
                entry("overrides", overrides), entry("source", .word(split.source.rawValue))]
    }

    private func routerEntries() -> [SpecValue.Entry] {
        [entry("type", .word(router.type.rawValue)), entry("k", .int(router.k)),
         entry("capacity_factor", router.capacityFactor.map(SpecValue.number) ?? .null),
         entry("min_capacity", .int(router.minCapacity)), entry("drop_policy", .word(router.dropPolicy.rawValue)),
         entry("aux_loss", .number(router.auxLoss)), entry("z_loss", .number(router.zLoss)),
         entry("jitter", .number(router.jitter)), entry("normalize_topk", .bool(router.normalizeTopk)),
         entry("score", .word(router.score.rawValue)), entry("balance", .word(router.balance.rawValue)),
         entry("bias_rate", .number(router.biasRate))]
    }

    private func parallelismEntries() -> [SpecValue.Entry] {
        [entry("mode", .word(parallelism.mode.rawValue)), entry("workers", .int(parallelism.workers)),
         entry("retries", .int(parallelism.retries)), entry("microbatches", .int(parallelism.microbatches)),
         entry("compression", .word(parallelism.compression.rawValue)), entry("ratio", .number(parallelism.ratio)),
         entry("backend", .word(parallelism.backend.rawValue))]
    }

    /// `epochs` or `steps` (one excludes the other), then the other keys.
    private func trainEntries() -> [SpecValue.Entry] {
        let length = train.steps.map { [entry("steps", .int($0))] } ?? [entry("epochs", .int(train.epochs)), entry("steps", .null)]
        return length + [
            entry("batch_size", .int(train.batchSize)),
            entry("optimizer", .word(train.optimizer.rawValue)), entry("lr", .number(train.lr)),
            entry("weight_decay", .number(train.weightDecay)), entry("momentum", .number(train.momentum)),
            entry("nesterov", .bool(train.nesterov)), entry("betas", .list(train.betas.map(SpecValue.number))),
            entry("eps", .number(train.eps)), entry("grad_clip", train.gradClip.map(SpecValue.number) ?? .null),
            entry("schedule", .word(train.schedule.rawValue)), entry("warmup_steps", .int(train.warmupSteps)),
            entry("min_lr", .number(train.minLR)), entry("log_every", .int(train.logEvery)),
            entry("eval_every", .int(train.evalEvery)), entry("checkpoint_every", .int(train.checkpointEvery)),
            entry("local", .bool(train.local)), entry("init_from", train.initFrom.map(SpecValue.string) ?? .null),
            entry("early_stopping", train.earlyStopping.map {
                .map([entry("patience", .int($0.patience)), entry("min_delta", .number($0.minDelta))])
            } ?? .null),
        ]
    }

    private func fusionEntries() -> [SpecValue.Entry] {
        let weights: SpecValue
        if case .explicit(let list) = fusion.weights { weights = .list(list.map(SpecValue.number)) } else {
            weights = .word(fusion.weights.keyword!)
        }
        let finetune: SpecValue = fusion.finetune.map {
            // Without steps exactly the entries of before `steps` existed (the scheme-1 run id).
            .map(($0.steps.map { [entry("steps", .int($0))] } ?? [entry("epochs", .int($0.epochs))]) + [entry("lr", .number($0.lr))])
        } ?? .null
        return [entry("method", .word(fusion.method.rawValue)), entry("weights", weights),
                entry("temperature", .number(fusion.temperature)), entry("lambda", .number(fusion.lambda)),
                entry("density", .number(fusion.density)), entry("rescale", .bool(fusion.rescale)),
                entry("t", .number(fusion.t)), entry("normalize", .bool(fusion.normalize)),
                entry("epsilon", .number(fusion.epsilon)), entry("fisher_samples", .int(fusion.fisherSamples)),
                entry("prior", .word(fusion.prior.rawValue)), entry("finetune", finetune),
                entry("source", .word(fusion.source.rawValue))]
    }

    private func evalEntries() -> [SpecValue.Entry] {
        [entry("batch_size", .int(eval.batchSize)), entry("splits", .list(eval.splits.map { .word($0.rawValue) })),
         entry("metric", .word(eval.metric.rawValue))]
    }

    private func outputEntries() -> [SpecValue.Entry] {
        [entry("dir", .string(output.dir)), entry("keep_checkpoints", .int(output.keepCheckpoints)),
         entry("compression", .int(output.compression))]
    }

    private func sweepEntries(_ sweep: SweepSpec) -> [SpecValue.Entry] {
        [entry("method", .word(sweep.method.rawValue)), entry("trials", sweep.trials.map(SpecValue.int) ?? .null),
         entry("seed", .int(sweep.seed)),
         entry("parameters", .map(sweep.parameters.map { entry($0.keyPath, .list($0.values)) }))]
    }

    private func entry(_ key: String, _ value: SpecValue) -> SpecValue.Entry { .init(key: key, value: value) }
}

private extension SpecValue {
    /// A keyword (enum value); written plain.
    static func word(_ text: String) -> SpecValue { .string(text) }
}

/// YAML text for scalars, keys and flow collections, written so that the spec loader reads back
/// exactly the same values.
enum YAMLText {
    /// A value on one line: scalars, `[a, b]`, `{k: v}`.
    static func inline(_ value: SpecValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .number(let d): return number(d)
        case .string(let s): return string(s)
        case .list(let items): return "[" + items.map(inline).joined(separator: ", ") + "]"
        case .map(let entries):
            return "{" + entries.map { "\(key($0.key)): \(inline($0.value))" }.joined(separator: ", ") + "}"
        }
    }

    /// Shortest text that reads back as the same Double, always with a `.` or exponent.
    static func number(_ d: Double) -> String {
        if d.isNaN { return ".nan" }
        if d.isInfinite { return d > 0 ? ".inf" : "-.inf" }
        return "\(d)"
    }

    /// Plain when it reads back as the same string and is made of `[A-Za-z0-9_./-]` (not starting
    /// with `-` or `.`, and not a YAML 1.1 boolean word); otherwise double-quoted.
    static func string(_ s: String) -> String {
        let safe = s.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_./-".unicodeScalars.contains($0)) }
        let ambiguous = ["yes", "no", "on", "off", "y", "n"].contains(s.lowercased())
        if safe, let first = s.unicodeScalars.first, first != "-", first != ".", !ambiguous,
           ScalarResolver.resolvePlain(s).value == .string(s) {
            return s
        }
        return quoted(s)
    }

    /// Mapping keys: plain names, or quoted (`"router.k"`).
    static func key(_ k: String) -> String {
        let plain = !k.isEmpty && k.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }
        return plain ? k : quoted(k)
    }
}
