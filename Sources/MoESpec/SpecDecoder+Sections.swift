/// Decoders of the `train`, `fusion`, `eval`, `output` and `sweep` sections.
extension SpecDecoder {
    func decodeTrain(_ r: MappingReader) throws -> TrainSpec {
        typealias S = SpecSchema.Train
        let initFrom = try r.optionalString(S.initFrom)
        let resolvedInitFrom = try initFrom.map {
            try PathResolver.existingCheckpoint($0, base: context.baseDirectory, at: context.locations["train.init_from"]!, keyPath: "train.init_from")
        }
        return TrainSpec(epochs: try r.int(S.epochs), batchSize: try r.int(S.batchSize),
                         optimizer: try r.choice(S.optimizer, as: TrainSpec.Optimizer.self), lr: try r.number(S.lr),
                         weightDecay: try r.number(S.weightDecay), momentum: try r.number(S.momentum),
                         nesterov: try r.bool(S.nesterov), betas: try decodeBetas(r), eps: try r.number(S.eps),
                         gradClip: try r.nullableNumber(S.gradClip),
                         schedule: try r.choice(S.schedule, as: TrainSpec.Schedule.self),
                         warmupSteps: try r.int(S.warmupSteps), minLR: try r.number(S.minLR),
                         logEvery: try r.int(S.logEvery), evalEvery: try r.int(S.evalEvery),
                         checkpointEvery: try r.int(S.checkpointEvery), local: try r.bool(S.local),
                         steps: try r.optionalInt(S.steps), initFrom: initFrom, resolvedInitFrom: resolvedInitFrom,
                         earlyStopping: try decodeEarlyStopping(r))
    }

    private func decodeEarlyStopping(_ r: MappingReader) throws -> TrainSpec.EarlyStopping? {
        typealias S = SpecSchema.Train
        guard let node = r.node(S.earlyStopping), !node.isNull else { return nil }
        let m = try r.section(S.earlyStopping)
        guard m.has(S.EarlyStopping.patience) else { throw m.missing(S.EarlyStopping.patience) }
        return TrainSpec.EarlyStopping(patience: try m.int(S.EarlyStopping.patience), minDelta: try m.number(S.EarlyStopping.minDelta))
    }

    /// `[b1, b2]`, each in [0, 1).
    private func decodeBetas(_ r: MappingReader) throws -> [Double] {
        let f = SpecSchema.Train.betas
        let path = r.child(f.key)
        guard let node = r.node(f) else { return f.defaultValue?.numbers ?? [] }
        if node.isNull { throw SpecError(node.location, path, "expected \(f.type.expectation), got null") }
        let items = try Check.list(node, path, "a list of two numbers [b1, b2]")
        guard items.count == 2 else {
            throw SpecError(node.location, path, "expected two numbers [b1, b2], got \(items.count) value\(items.count == 1 ? "" : "s")")
        }
        return try items.enumerated().map { i, item in try Check.number(item, "\(path)[\(i)]", .number(.unitHalfOpen)) }
    }

    func decodeFusion(_ r: MappingReader, train: TrainSpec) throws -> FusionSpec {
        typealias S = SpecSchema.Fusion
        let method = try r.choice(S.method, as: FusionSpec.Method.self)
        let weights = try decodeWeights(r)
        var finetune: FusionSpec.Finetune?
        if let node = r.node(S.finetune), !node.isNull {
            let m = try r.section(S.finetune)
            finetune = FusionSpec.Finetune(epochs: try m.int(S.Finetune.epochs), steps: try m.optionalInt(S.Finetune.steps),
                                           lr: try m.optionalNumber(S.Finetune.lr) ?? train.lr)
        }
        return FusionSpec(method: method, weights: weights, temperature: try r.number(S.temperature),
                          lambda: try r.number(S.lambda), density: try r.number(S.density), rescale: try r.bool(S.rescale),
                          t: try r.number(S.t), normalize: try r.bool(S.normalize), epsilon: try r.number(S.epsilon),
                          fisherSamples: try r.int(S.fisherSamples), finetune: finetune,
                          prior: try r.choice(S.prior, as: FusionSpec.Prior.self),
                          source: try r.choice(S.source, as: ModelSource.self))
    }

    /// A keyword or a list of non-negative numbers.
    private func decodeWeights(_ r: MappingReader) throws -> FusionSpec.Weights {
        let f = SpecSchema.Fusion.weights
        let path = r.child(f.key)
        guard let node = r.node(f) else {
            return FusionSpec.Weights.named.first { $0.keyword == f.defaultValue?.text } ?? .uniform
        }
        let keywords = FusionSpec.Weights.named.compactMap(\.keyword)
        switch node.kind {
        case .sequence(let items):
            guard !items.isEmpty else { throw SpecError(node.location, path, "must not be empty", hint: "give one weight per expert") }
            return .explicit(try items.enumerated().map { i, item in
                try Check.number(item, "\(path)[\(i)]", .number(.nonNegative))
            })
        case .scalar(let s):
            if case .string(let word) = s.value {
                if let named = FusionSpec.Weights.named.first(where: { $0.keyword == word }) { return named }
                throw SpecError(node.location, path,
                                "unknown value \(quoted(word)); allowed: \(keywords.joined(separator: ", ")), or a list of numbers",
                                hint: Suggestions.closest(to: word, in: keywords).map { "did you mean \($0)?" })
            }
            throw SpecError(node.location, path, "expected \(f.type.expectation), got \(node.described)")
        case .mapping:
            throw SpecError(node.location, path, "expected \(f.type.expectation), got \(node.described)")
        }
    }

    func decodeEval(_ r: MappingReader) throws -> EvalSpec {
        typealias S = SpecSchema.Eval
        let batchSize = try r.int(S.batchSize)
        guard let node = r.node(S.splits) else {
            let defaults = (S.splits.defaultValue?.texts ?? []).compactMap(EvalSpec.Split.init(rawValue:))
            return EvalSpec(batchSize: batchSize, splits: defaults, metric: try r.choice(S.metric, as: EvalSpec.Metric.self))
        }
        let path = r.child(S.splits.key)
        let items = try Check.list(node, path, S.splits.type.expectation)
        guard !items.isEmpty else { throw SpecError(node.location, path, "must not be empty") }
        var splits: [EvalSpec.Split] = []
        for (i, item) in items.enumerated() {
            let word = try Check.word(item, "\(path)[\(i)]", allowed: EvalSpec.Split.allCases.map(\.rawValue))
            let split = EvalSpec.Split(rawValue: word)!
            guard !splits.contains(split) else { throw SpecError(item.location, "\(path)[\(i)]", "\(quoted(word)) is listed twice") }
            splits.append(split)
        }
        return EvalSpec(batchSize: batchSize, splits: splits, metric: try r.choice(S.metric, as: EvalSpec.Metric.self))
    }

    func decodeOutput(_ r: MappingReader) throws -> OutputSpec {
        typealias S = SpecSchema.Output
        let dir = try r.string(S.dir)
        guard !dir.isEmpty else { throw SpecError(context.locations["output.dir"]!, "output.dir", "must not be empty") }
        return OutputSpec(dir: dir, keepCheckpoints: try r.int(S.keepCheckpoints), compression: try r.int(S.compression))
    }

    func decodeSweep(_ r: MappingReader) throws -> SweepSpec {
        typealias S = SpecSchema.Sweep
        let method = try r.choice(S.method, as: SweepSpec.Method.self)
        let trials = try r.optionalInt(S.trials)
        let seed = try r.int(S.seed)
        guard let node = r.node(S.parameters), !node.isNull else { throw r.missing(S.parameters) }
        let path = r.child(S.parameters.key)
        guard let entries = node.entries else {
            throw SpecError(node.location, path, "expected \(S.parameters.type.expectation), got \(node.described)")
        }
        guard !entries.isEmpty else { throw SpecError(node.location, path, "must not be empty") }
        var parameters: [SweepSpec.Parameter] = []
        for entry in entries {
            try SweepPaths.check(entry.key, at: entry.keyLocation, prefix: path)
            let items = try Check.list(entry.value, "\(path).\(entry.key)", "a non-empty list of values")
            guard !items.isEmpty else { throw SpecError(entry.value.location, "\(path).\(entry.key)", "must not be empty") }
            parameters.append(.init(keyPath: entry.key, values: items.map(\.specValue)))
        }
        return SweepSpec(method: method, trials: trials, seed: seed, parameters: parameters)
    }
}
