import Foundation

/// Loads experiment specs: read, parse, apply `--set` overrides, validate. Throws `SpecError`.
///
/// Stages, each reporting the first problem it finds:
/// 1. YAML: size, tabs in indentation, alias expansion, duplicate keys, syntax (`YAMLDocument`);
///    an empty document and a top level that is not a mapping are errors.
/// 2. Overrides are parsed and applied to the tree, in the order given.
/// 3. Keys, types, ranges, defaults (`SpecDecoder`, driven by `SpecSchema`); swept values are
///    checked like overrides (`SweepValues`).
/// 4. Rules between keys (`CrossFieldRules`).
/// 5. Features not built yet (`SupportGate`).
public enum SpecLoader {
    /// Reads the spec at `path`; relative paths inside it are resolved against its directory.
    public static func load(path: String, overrides: [String] = []) throws -> ExperimentSpec {
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
        return try load(yaml: text, file: path, overrides: overrides)
    }

    /// Parses `yaml` as if read from `file` (used in positions). Relative paths inside the spec
    /// are resolved against `baseDirectory`, by default the directory of `file`.
    public static func load(yaml: String, file: String, baseDirectory: String? = nil,
                            overrides: [String] = []) throws -> ExperimentSpec {
        try load(yaml: yaml, file: file, baseDirectory: baseDirectory, overrides: overrides, enforceSupportGate: true)
    }

    /// Loads a spec as `resolvedYAML()` wrote it (the copy stored in a run's `run.h5`): every key
    /// with its default is written there, so keys that have no effect as configured are not
    /// errors; everything else is checked as in `load(yaml:file:baseDirectory:overrides:)`.
    public static func loadResolved(yaml: String, file: String, baseDirectory: String) throws -> ExperimentSpec {
        try load(yaml: yaml, file: file, baseDirectory: baseDirectory, overrides: [], enforceSupportGate: true,
                 rejectIneffectiveKeys: false)
    }

    /// `enforceSupportGate: false` validates specs that use features not built yet or keys that
    /// have no effect as configured (tests of the schema; never for running).
    static func load(yaml: String, file: String, baseDirectory: String?, overrides: [String],
                     enforceSupportGate: Bool, rejectIneffectiveKeys: Bool = true) throws -> ExperimentSpec {
        let start = SourceLocation(file: file, line: 1, column: 1)
        guard var root = try YAMLDocument(file: file).parse(yaml), !root.isNull else {
            throw SpecError(start, "", "the spec is empty", hint: "a spec needs at least `name: my-experiment`; see docs/spec.md")
        }
        guard root.entries != nil else {
            throw SpecError(root.location, "", "the top level must be a mapping of keys (name:, data:, model:, ...), got \(root.described)")
        }
        for argument in overrides {
            try Override(argument).apply(to: &root)
        }
        let base = PathResolver.absolute(baseDirectory ?? (file as NSString).deletingLastPathComponent,
                                         base: FileManager.default.currentDirectoryPath)
        let context = DecodeContext(baseDirectory: base)
        var spec = try SpecDecoder(context: context).decode(root)
        spec.positions = SpecPositions(context.locations, root: root.location)
        if spec.sweep != nil { try SweepValues.check(root: root, baseDirectory: base) }
        let rules = RuleContext(decode: context, root: root.location)
        try CrossFieldRules.check(spec, rules)
        if enforceSupportGate {
            if rejectIneffectiveKeys { try IneffectiveKeys.check(spec, rules) }
            try SupportGate.check(spec, rules)
        }
        return spec
    }
}
