import Foundation

/// Loads experiment specs: read, parse, apply `--set` overrides, validate. Throws `SpecError`.
///
/// Stages, each reporting the first problem it finds:
/// 1. YAML: size, tabs in indentation, alias expansion, duplicate keys, syntax (`YAMLDocument`);
///    an empty document and a top level that is not a mapping are errors.
/// 2. Overrides are parsed and applied to the tree: removals (`~KEY`, `--unset`) first, then the
///    values in the order given.
/// 3. Keys, types, ranges, defaults (`SpecDecoder`, driven by `SpecSchema`); swept values are
///    checked like overrides (`SweepValues`).
/// 4. Keys without effect as configured (`IneffectiveKeys`): warnings, and removed from the
///    document (with `--strict`: the first one is an error, after the rules between keys).
/// 5. Rules between keys (`CrossFieldRules`).
/// 6. Features not built yet (`SupportGate`).
public enum SpecLoader {
    /// Reads the spec at `path`; relative paths inside it are resolved against its directory.
    /// Keys without effect are dropped (their warnings are in `loadWithWarnings`).
    public static func load(path: String, overrides: [String] = []) throws -> ExperimentSpec {
        try loadWithWarnings(path: path, overrides: overrides).spec
    }

    /// Reads the spec at `path` with `overrides` (`KEY=VALUE`, or `~KEY` to remove a key): the spec
    /// and the warnings of its keys without effect; with `strict`, the first of those is an error.
    /// `allowSweep`: a `sweep` section is accepted (`validate`, `plan`), not refused as for a run.
    public static func loadWithWarnings(path: String, overrides: [String] = [], strict: Bool = false,
                                        allowSweep: Bool = false) throws -> LoadedSpec {
        try load(yaml: text(path: path), file: path, baseDirectory: nil, overrides: overrides,
                 mode: strict ? .strict : .warn, allowSweep: allowSweep)
    }

    /// The text of the spec file at `path`: it must exist and be UTF-8 (an error at the first
    /// invalid byte otherwise).
    public static func text(path: String) throws -> String {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot read the file" : "no such file"
            throw SpecError(file: path, line: 0, column: 0, keyPath: "", message: reason)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            let valid = data.prefix { $0 < 0x80 }
            let line = valid.filter { $0 == 0x0A }.count + 1
            let column = valid.count - (valid.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0) + 1
            throw SpecError(file: path, line: line, column: column, keyPath: "", message: "the file is not valid UTF-8 text")
        }
        return text
    }

    /// Parses `yaml` as if read from `file` (used in positions). Relative paths inside the spec
    /// are resolved against `baseDirectory`, by default the directory of `file`.
    public static func load(yaml: String, file: String, baseDirectory: String? = nil,
                            overrides: [String] = []) throws -> ExperimentSpec {
        try load(yaml: yaml, file: file, baseDirectory: baseDirectory, overrides: overrides, mode: .warn).spec
    }

    /// Loads a spec as `resolvedYAML()` wrote it (the copy stored in a run's `run.h5`): every key
    /// with its default is written there, so keys that have no effect as configured are not
    /// looked for; everything else is checked as in `load(yaml:file:baseDirectory:overrides:)`.
    public static func loadResolved(yaml: String, file: String, baseDirectory: String) throws -> ExperimentSpec {
        try load(yaml: yaml, file: file, baseDirectory: baseDirectory, overrides: [], mode: .resolved).spec
    }

    /// `enforceSupportGate: false` validates specs that use features not built yet and keeps keys
    /// that have no effect as configured (tests of the schema; never for running).
    static func load(yaml: String, file: String, baseDirectory: String?, overrides: [String],
                     enforceSupportGate: Bool) throws -> ExperimentSpec {
        try load(yaml: yaml, file: file, baseDirectory: baseDirectory, overrides: overrides,
                 mode: enforceSupportGate ? .warn : .schemaOnly).spec
    }

    /// What happens to keys without effect, and whether the support gate applies.
    enum Mode {
        /// Warnings; the keys are removed from the document (what runs).
        case warn
        /// The first one is an error (`validate --strict`).
        case strict
        /// Not looked for: a resolved spec writes every key (a run's stored copy).
        case resolved
        /// Neither they nor the support gate are checked (tests of the schema).
        case schemaOnly
        /// As `warn`, without the support gate (the base of a sweep: each trial is loaded in full).
        case sweepBase
    }

    static func load(yaml: String, file: String, baseDirectory: String?, overrides: [String], mode: Mode,
                     allowSweep: Bool = false) throws -> LoadedSpec {
        let start = SourceLocation(file: file, line: 1, column: 1)
        guard var root = try YAMLDocument(file: file).parse(yaml), !root.isNull else {
            throw SpecError(start, "", "the spec is empty", hint: "a spec needs at least `name: my-experiment`; see docs/spec.md")
        }
        guard root.entries != nil else {
            throw SpecError(root.location, "", "the top level must be a mapping of keys (name:, data:, model:, ...), got \(root.described)")
        }
        // Removals first (their order among the `--set`s is lost by the command line), then the values.
        let parsed = try overrides.map(Override.init)
        for override in parsed where override.isRemoval { try override.apply(to: &root) }
        for override in parsed where !override.isRemoval { try override.apply(to: &root) }
        let base = PathResolver.absolute(baseDirectory ?? (file as NSString).deletingLastPathComponent,
                                         base: FileManager.default.currentDirectoryPath)
        var context = DecodeContext(baseDirectory: base)
        var spec = try SpecDecoder(context: context).decode(root)
        spec.positions = SpecPositions(context.locations, root: root.location)
        if spec.sweep != nil { try SweepValues.check(root: root, baseDirectory: base) }
        var warnings: [SpecError] = []
        switch mode {
        case .schemaOnly:
            try CrossFieldRules.check(spec, RuleContext(decode: context, root: root.location))
            return LoadedSpec(spec: spec, warnings: [])
        case .resolved:
            try CrossFieldRules.check(spec, RuleContext(decode: context, root: root.location))
        case .strict:
            let rules = RuleContext(decode: context, root: root.location)
            try CrossFieldRules.check(spec, rules)
            if let first = IneffectiveKeys.findings(spec, rules).first { throw first.warning }
        case .warn, .sweepBase:
            // Dropping a key can make another one ineffective (`compression: topk` dropped leaves
            // `ratio` without effect), so repeat until nothing more is found; every round removes
            // at least one key. Positions come from the first decode (removal keeps every node's).
            while true {
                let found = IneffectiveKeys.findings(spec, RuleContext(decode: context, root: root.location))
                guard !found.isEmpty else { break }
                warnings += found.map(\.warning)
                var removed = false
                for finding in found {
                    removed = root.remove(finding.removal.split(separator: ".").map(String.init)[...]) || removed
                }
                guard removed else { break }
                context = DecodeContext(baseDirectory: base)
                spec = try SpecDecoder(context: context).decode(root)
                spec.positions = SpecPositions(context.locations, root: root.location)
            }
            try CrossFieldRules.check(spec, RuleContext(decode: context, root: root.location))
            if mode == .sweepBase { return LoadedSpec(spec: spec, warnings: warnings) }
        }
        try SupportGate.check(spec, RuleContext(decode: context, root: root.location), allowSweep: allowSweep)
        return LoadedSpec(spec: spec, warnings: warnings)
    }
}

/// A validated spec and the keys of its document that have no effect as configured (removed from
/// the spec; each a warning `FILE:LINE:COL: KEY: message`, in `IneffectiveKeys` order).
public struct LoadedSpec: Sendable {
    public var spec: ExperimentSpec
    public var warnings: [SpecError]
}
