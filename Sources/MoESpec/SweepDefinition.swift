import Foundation

/// What `moe-run sweep` needs from the spec layer: the spec with its `sweep` section (which
/// `moe-run SPEC` refuses), sweep parameters given on the command line (`--grid key=a,b`), and
/// the YAML text of a swept value for the `--set key=value` of a trial.
extension SpecLoader {
    /// Loads the spec at `path` with `overrides` for `moe-run sweep`: parsed and checked like
    /// `load(path:overrides:)` (keys, types, ranges, swept values, keys without effect dropped,
    /// rules between keys) but without the support gate, so a `sweep` section is accepted. Each trial is validated in
    /// full afterwards, as `load(path:overrides:)` with its overrides and `sweep=` (no sweep).
    public static func loadForSweep(path: String, overrides: [String] = []) throws -> ExperimentSpec {
        try load(yaml: text(path: path), file: path, baseDirectory: nil, overrides: overrides, mode: .sweepBase).spec
    }

    /// Where each swept value is written in the spec's `sweep.parameters` with `overrides`
    /// applied (key path → the positions of its values, in order: in the file, or in the `--set`
    /// that gave the section); empty when there is no such section. A trial's values reach it as
    /// generated `--set` arguments; errors about them are reported here instead.
    public static func sweepValueLocations(path: String, overrides: [String] = []) -> [String: [SourceLocation]] {
        guard let text = try? text(path: path), var root = try? YAMLDocument(file: path).parse(text),
              let parsed = try? overrides.map(Override.init) else { return [:] }
        for override in parsed where override.isRemoval { try? override.apply(to: &root) }
        for override in parsed where !override.isRemoval { try? override.apply(to: &root) }
        guard let sweep = root.entries?.first(where: { $0.key == "sweep" })?.value.entries,
              let parameters = sweep.first(where: { $0.key == "parameters" })?.value.entries else { return [:] }
        var out: [String: [SourceLocation]] = [:]
        for parameter in parameters {
            if case .sequence(let values) = parameter.value.kind { out[parameter.key] = values.map(\.location) }
        }
        return out
    }
}

extension SweepSpec {
    /// A grid sweep over no parameters yet (seed 0): what `--grid` arguments extend when the
    /// spec has no `sweep` section.
    public static let emptyGrid = SweepSpec(method: .grid, trials: nil, seed: 0, parameters: [])

    /// The sweep as one line of YAML (`{method: grid, trials: null, seed: 0, parameters: {...}}`):
    /// what identifies it in the sweep directory's hash.
    public var yamlText: String {
        SpecValue.map([.init(key: "method", value: .string(method.rawValue)),
                       .init(key: "trials", value: trials.map(SpecValue.int) ?? .null),
                       .init(key: "seed", value: .int(seed)),
                       .init(key: "parameters", value: .map(parameters.map { .init(key: $0.keyPath, value: .list($0.values)) }))])
            .yamlText
    }
}

extension SweepSpec.Parameter {
    /// Parses a `--grid KEY=V1,V2,...` argument: the key path must name a key of the schema
    /// (as in a `sweep.parameters` entry), each value is read as YAML (`1`, `0.5`, `topk`,
    /// `null`, `[0.9, 0.99]`; commas inside brackets or quotes do not split). Errors are located
    /// in file `--grid`, line 1, at the column of the offending part of the argument.
    public init(gridArgument argument: String) throws {
        let file = "--grid"
        guard let equals = argument.firstIndex(of: "=") else {
            throw SpecError(file: file, line: 1, column: 1, keyPath: argument, message: "malformed sweep parameter; expected key.path=value1,value2,...",
                            hint: "e.g. --grid router.k=1,2")
        }
        let key = String(argument[..<equals])
        do {
            try SweepPaths.check(key, at: SourceLocation(file: file, line: 1, column: 1), prefix: "")
        } catch var error as SpecError {
            if error.keyPath.hasPrefix(".") { error.keyPath.removeFirst() }
            throw error
        }
        let valuesText = String(argument[argument.index(after: equals)...])
        var values: [SpecValue] = []
        var column = key.unicodeScalars.count + 2
        for part in Self.splitTopLevel(valuesText) {
            let document = YAMLDocument(file: file, columnOffset: column - 1, endColumn: column + part.unicodeScalars.count)
            guard let node = try document.parse(part) else {
                throw SpecError(file: file, line: 1, column: column, keyPath: key, message: "empty value in the list (write null for null)")
            }
            values.append(node.specValue)
            column += part.unicodeScalars.count + 1
        }
        self.init(keyPath: key, values: values)
    }

    /// `text` split at the commas outside brackets, braces and quotes.
    static func splitTopLevel(_ text: String) -> [String] {
        var parts: [String] = [], current = "", depth = 0
        var quote: Character?
        for c in text {
            if let q = quote {
                if c == q { quote = nil }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "[" || c == "{" {
                depth += 1
            } else if c == "]" || c == "}" {
                depth -= 1
            } else if c == ",", depth == 0 {
                parts.append(current)
                current = ""
                continue
            }
            current.append(c)
        }
        parts.append(current)
        return parts
    }
}

extension SpecValue {
    /// The value as YAML on one line, read back as the same value (`2`, `0.5`, `topk`, `null`,
    /// `[0.9, 0.99]`, `{epochs: 1}`): the text after `=` in a trial's `--set key=value`.
    public var yamlText: String { YAMLText.inline(self) }
}
