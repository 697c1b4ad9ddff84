import Foundation

/// Decodes a spec tree section by section: unknown keys, types, ranges and defaults.
///
/// Order (it decides which error is reported when there are several): the keys of a mapping are
/// checked for unknown names when the mapping is reached; sections and keys are decoded in schema
/// order. Rules between keys of different sections are `CrossFieldRules`, run afterwards.
struct SpecDecoder {
    let context: DecodeContext

    func decode(_ root: SpecNode) throws -> ExperimentSpec {
        guard root.entries != nil else {
            throw SpecError(root.location, "", "the top level must be a mapping of keys (name:, data:, model:, ...), got \(root.described)")
        }
        let r = try MappingReader(root, path: "", fields: SpecSchema.root, parentLocation: root.location, context: context)
        let name = try decodeName(r)
        let seed = try r.int(SpecSchema.Root.seed)
        let description = try r.optionalString(SpecSchema.Root.description)
        let data = try decodeData(try r.section(field("data")))
        let model = try decodeModel(try r.section(field("model")))
        let experts = try r.int(SpecSchema.Root.experts)
        let split = try decodeSplit(try r.section(field("split")))
        let router = try decodeRouter(try r.section(field("router")), experts: experts)
        let parallelism = try decodeParallelism(try r.section(field("parallelism")))
        let train = try decodeTrain(try r.section(field("train")))
        let fusion = try decodeFusion(try r.section(field("fusion")), train: train)
        let eval = try decodeEval(try r.section(field("eval")))
        let output = try decodeOutput(try r.section(field("output")))
        let sweepField = field("sweep")
        let sweepGiven = r.node(sweepField).map { !$0.isNull } ?? false   // `sweep: null` = no sweep
        let sweep = sweepGiven ? try decodeSweep(try r.section(sweepField)) : nil
        return ExperimentSpec(name: name, seed: seed, description: description, data: data, model: model,
                              experts: experts, split: split, router: router, parallelism: parallelism, train: train,
                              fusion: fusion, eval: eval, output: output, sweep: sweep)
    }

    private func field(_ key: String) -> SchemaField { SpecSchema.root.first { $0.key == key }! }

    private func decodeName(_ r: MappingReader) throws -> String {
        let f = SpecSchema.Root.name
        guard r.has(f) else { throw r.missing(f) }
        let name = try r.string(f)
        let chars = Array(name.unicodeScalars)
        func ok(_ c: Unicode.Scalar, first: Bool) -> Bool {
            c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || (!first && "_.-".unicodeScalars.contains(c)))
        }
        guard let head = chars.first, ok(head, first: true), chars.dropFirst().allSatisfy({ ok($0, first: false) }) else {
            throw SpecError(context.locations["name"]!, "name",
                            "must match [A-Za-z0-9][A-Za-z0-9_.-]*, got \(quoted(name))",
                            hint: "the name becomes a folder: use letters, digits, '_', '.', '-'")
        }
        return name
    }

    // MARK: data

    private func decodeData(_ r: MappingReader) throws -> DataSpec {
        typealias S = SpecSchema.Data
        let kind = try r.choice(S.source, as: DataSpec.Kind.self)
        let source: DataSpec.Source
        switch kind {
        case .synthetic:
            // The file keys have no effect here (`IneffectiveKeys` warns), but keep their types.
            _ = try r.optionalString(S.path)
            _ = try r.choice(S.format, as: DataSpec.FileFormat.self)
            source = .synthetic(.init(features: try r.int(S.features), classes: try r.int(S.classes),
                                      domains: try r.int(S.domains), samples: try r.int(S.samples),
                                      separation: try r.number(S.separation), labelNoise: try r.number(S.labelNoise)))
        case .file:
            // The generator's keys have no effect here (`IneffectiveKeys` warns), but keep their types.
            for f in S.syntheticOnly where r.has(f) {
                if case .integer = f.type { _ = try r.int(f) } else { _ = try r.number(f) }
            }
            guard r.has(S.path), let path = try r.optionalString(S.path) else {
                throw r.missing(S.path, "required with data.source: file")
            }
            let format = try r.choice(S.format, as: DataSpec.FileFormat.self)
            let location = context.locations["data.path"]!
            let resolved = try PathResolver.existingFile(path, base: context.baseDirectory, at: location, keyPath: "data.path")
            if format == .auto, DataSpec.FileFormat.fromExtension(of: path) == nil {
                throw SpecError(location, "data.path", "cannot tell the file format from the extension",
                                hint: "name the file .h5/.hdf5 or .csv, or set data.format: hdf5 or csv")
            }
            source = .file(.init(path: path, resolvedPath: resolved, format: format))
        case .text:
            // The feature-data keys are errors here (`CrossFieldRules`), after their types.
            for f in S.syntheticOnly where r.has(f) {
                if case .integer = f.type { _ = try r.int(f) } else { _ = try r.number(f) }
            }
            _ = try r.choice(S.format, as: DataSpec.FileFormat.self)
            guard r.has(S.path), let path = try r.optionalString(S.path) else {
                throw r.missing(S.path, "required with data.source: text")
            }
            let resolved = try PathResolver.existingCorpus(path, base: context.baseDirectory, at: context.locations["data.path"]!)
            source = .text(.init(path: path, resolvedPath: resolved))
        }
        let fr = try r.section(S.split)
        let fractions = DataSpec.Fractions(train: try fr.number(S.Fractions.train), val: try fr.number(S.Fractions.val),
                                           test: try fr.number(S.Fractions.test))
        return DataSpec(source: source, split: fractions, standardize: try r.bool(S.standardize), seed: try r.optionalInt(S.seed))
    }

    // MARK: model

    /// The transformer keys are read (typed and ranged) for every kind; an mlp that gives them is
    /// refused by `CrossFieldRules`, at the key.
    private func decodeModel(_ r: MappingReader) throws -> ModelSpec {
        typealias S = SpecSchema.Model
        let kind = try r.choice(S.kind, as: ModelSpec.Kind.self)
        let context = try r.int(S.context)
        let hidden = try r.int(S.hidden)
        let heads = try r.int(S.heads)
        let ffn = try r.int(S.ffn)
        let blocks = kind == .transformer && !r.has(S.blocks) ? S.transformerBlocks : try r.int(S.blocks)
        let activation = try r.choice(S.activation, as: ModelSpec.Activation.self)
        let dropout = try r.number(S.dropout)
        let normEps = try r.number(S.normEps)
        let tie = try r.bool(S.tieEmbeddings)
        let transformer = kind == .transformer ? ModelSpec.Transformer(context: context, heads: heads, tieEmbeddings: tie) : nil
        return ModelSpec(hidden: hidden, ffn: ffn, blocks: blocks, activation: activation, dropout: dropout, normEps: normEps,
                         moeBlocks: try decodeMoEBlocks(r, blocks: blocks), transformer: transformer,
                         sharedExperts: try r.int(S.sharedExperts), sharedFFN: try r.optionalInt(S.sharedFFN))
    }

    private func decodeMoEBlocks(_ r: MappingReader, blocks: Int) throws -> ModelSpec.MoEBlocks {
        let f = SpecSchema.Model.moeBlocks
        let path = r.child(f.key)
        guard let node = r.node(f) else { return .all }
        switch node.kind {
        case .scalar(let s):
            if case .string("all") = s.value { return .all }
            if case .string(let text) = s.value {
                throw SpecError(node.location, path, "unknown value \(quoted(text)); allowed: all, a list of block indices, or {every: N}",
                                hint: Suggestions.closest(to: text, in: ["all"]).map { "did you mean \($0)?" })
            }
            throw SpecError(node.location, path, "expected \(f.type.expectation), got \(node.described)")
        case .sequence(let items):
            guard !items.isEmpty else { throw SpecError(node.location, path, "must not be empty", hint: "use all, or list block indices") }
            var seen: [Int] = []
            for (i, item) in items.enumerated() {
                let index = try Check.integer(item, "\(path)[\(i)]", .integer(min: 0, max: nil))
                guard index < blocks else {
                    throw SpecError(item.location, "\(path)[\(i)]", "must be a block index below model.blocks (\(blocks)), got \(index)")
                }
                guard !seen.contains(index) else {
                    throw SpecError(item.location, "\(path)[\(i)]", "block \(index) is listed twice")
                }
                seen.append(index)
            }
            return .indices(seen)
        case .mapping:
            let m = try MappingReader(node, path: path, fields: [SpecSchema.Model.every], parentLocation: node.location, context: context)
            let every = try m.int(SpecSchema.Model.every)
            guard every <= blocks else {
                throw SpecError(context.locations["\(path).every"]!, "\(path).every",
                                "must be between 1 and model.blocks (\(blocks)), got \(every)")
            }
            return .every(every)
        }
    }

    // MARK: split, router, parallelism

    private func decodeSplit(_ r: MappingReader) throws -> SplitSpec {
        typealias S = SpecSchema.Split
        let strategy = try r.choice(S.strategy, as: SplitSpec.Strategy.self)
        let upcycle = try r.optionalString(S.upcycleFrom)
        let resolved = try upcycle.map {
            try PathResolver.existingFile($0, base: context.baseDirectory, at: context.locations["split.upcycle_from"]!,
                                          keyPath: "split.upcycle_from")
        }
        return SplitSpec(strategy: strategy, upcycleFrom: upcycle, resolvedUpcycleFrom: resolved,
                         pretrainEpochs: try r.int(S.pretrainEpochs), pretrainSteps: try r.int(S.pretrainSteps),
                         method: try r.choice(S.method, as: SplitSpec.NeuronMethod.self),
                         shardBy: try r.choice(S.shardBy, as: SplitSpec.ShardBy.self),
                         overrides: try decodeOverrides(r),
                         seedModel: try r.choice(S.seedModel, as: SplitSpec.SeedModel.self),
                         source: try r.choice(S.source, as: ModelSource.self))
    }

    private func decodeOverrides(_ r: MappingReader) throws -> [SplitSpec.ExpertOverride]? {
        let f = SpecSchema.Split.overrides
        guard let node = r.node(f), !node.isNull else { return nil }
        let path = r.child(f.key)
        let items = try Check.list(node, path, f.type.expectation)
        return try items.enumerated().map { i, item in
            if item.isNull {
                throw SpecError(item.location, "\(path)[\(i)]", "expected a mapping (use {} to keep every train value), got null")
            }
            let m = try MappingReader(item, path: "\(path)[\(i)]", fields: SpecSchema.Split.overrideFields,
                                      parentLocation: item.location, context: context)
            return SplitSpec.ExpertOverride(lr: try m.optionalNumber(SpecSchema.Train.lr),
                                            seed: try m.optionalInt(SpecSchema.Root.seed),
                                            epochs: try m.optionalInt(SpecSchema.Train.epochs),
                                            steps: try m.optionalInt(SpecSchema.Train.steps),
                                            batchSize: try m.optionalInt(SpecSchema.Train.batchSize),
                                            weightDecay: try m.optionalNumber(SpecSchema.Train.weightDecay))
        }
    }

    private func decodeRouter(_ r: MappingReader, experts: Int) throws -> RouterSpec {
        typealias S = SpecSchema.Router
        let type = try r.choice(S.type, as: RouterSpec.Kind.self)
        let k = try r.optionalInt(S.k) ?? (type == .switch || type == .domain ? 1 : min(2, experts))
        return RouterSpec(type: type, k: k, capacityFactor: try r.nullableNumber(S.capacityFactor),
                          minCapacity: try r.int(S.minCapacity),
                          dropPolicy: try r.choice(S.dropPolicy, as: RouterSpec.DropPolicy.self),
                          auxLoss: try r.number(S.auxLoss), zLoss: try r.number(S.zLoss), jitter: try r.number(S.jitter),
                          normalizeTopk: try r.bool(S.normalizeTopk), score: try r.choice(S.score, as: RouterSpec.Score.self),
                          balance: try r.choice(S.balance, as: RouterSpec.Balance.self), biasRate: try r.number(S.biasRate))
    }

    private func decodeParallelism(_ r: MappingReader) throws -> ParallelismSpec {
        typealias S = SpecSchema.Parallelism
        return ParallelismSpec(mode: try r.choice(S.mode, as: ParallelismSpec.Mode.self), workers: try r.int(S.workers),
                               retries: try r.int(S.retries), microbatches: try r.int(S.microbatches),
                               compression: try r.choice(S.compression, as: ParallelismSpec.Compression.self),
                               ratio: try r.number(S.ratio), backend: try r.choice(S.backend, as: ParallelismSpec.Backend.self))
    }
}

/// Resolves paths written in a spec against the spec file's directory.
enum PathResolver {
    /// Absolute, standardised path; relative paths are taken from `base`.
    static func absolute(_ path: String, base: String) -> String {
        let joined = path.hasPrefix("/") ? path : (base as NSString).appendingPathComponent(path)
        return URL(fileURLWithPath: joined).standardizedFileURL.path
    }

    /// The absolute path of an existing file or folder (a text corpus, `data.path`), or an error
    /// at the key's value. What is inside is checked before the run (`Preflight`).
    static func existingCorpus(_ path: String, base: String, at location: SourceLocation) throws -> String {
        guard !path.isEmpty else { throw SpecError(location, "data.path", "must not be empty") }
        let resolved = absolute(path, base: base)
        guard FileManager.default.fileExists(atPath: resolved) else {
            let relative = path.hasPrefix("/") ? "" : " (relative to the spec file's directory)"
            throw SpecError(location, "data.path", "no such text corpus (file or folder): \(quoted(path))\(relative)",
                            hint: "looked for \(resolved)")
        }
        return resolved
    }

    /// A checkpoint given as a file, a run's `run.h5` or a run directory: the file that holds the
    /// model (for a run, the task file of its final model: `tasks/finetune.h5`, else
    /// `tasks/fuse.h5`, else `tasks/train.h5`, as `/models/final` links), or an error at the key.
    static func existingCheckpoint(_ path: String, base: String, at location: SourceLocation, keyPath: String) throws -> String {
        guard !path.isEmpty else { throw SpecError(location, keyPath, "must not be empty") }
        var directory = absolute(path, base: base)
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory)
        if exists, !isDirectory.boolValue, (directory as NSString).lastPathComponent != "run.h5" { return directory }
        if exists, !isDirectory.boolValue { directory = (directory as NSString).deletingLastPathComponent }
        guard exists else { return try existingFile(path, base: base, at: location, keyPath: keyPath) }
        for task in ["finetune", "fuse", "train"] where FileManager.default.fileExists(atPath: directory + "/tasks/\(task).h5") {
            return directory + "/tasks/\(task).h5"
        }
        throw SpecError(location, keyPath, "\(quoted(path)) is not a finished run: it has no tasks/finetune.h5, tasks/fuse.h5 or tasks/train.h5",
                        hint: "name a checkpoint or task file, or the directory of a complete run")
    }

    /// The absolute path of an existing regular file, or an error at the key's value.
    static func existingFile(_ path: String, base: String, at location: SourceLocation, keyPath: String) throws -> String {
        guard !path.isEmpty else { throw SpecError(location, keyPath, "must not be empty") }
        let resolved = absolute(path, base: base)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory) else {
            let relative = path.hasPrefix("/") ? "" : " (relative to the spec file's directory)"
            throw SpecError(location, keyPath, "no such file: \(quoted(path))\(relative)", hint: "looked for \(resolved)")
        }
        guard !isDirectory.boolValue else {
            throw SpecError(location, keyPath, "\(quoted(path)) is a directory, not a file", hint: "looked for \(resolved)")
        }
        return resolved
    }
}
