/// Checks of the `sweep` section beyond its own keys: swept key paths name keys of the schema,
/// and every swept value has its key's type and range.
enum SweepPaths {
    /// Keys that cannot be swept: the name (one results folder) and the sweep itself.
    static let fixed: Set<String> = ["name", "sweep"]

    static func check(_ keyPath: String, at location: SourceLocation, prefix: String) throws {
        var fields = SpecSchema.root
        var walked: [String] = []
        let segments = keyPath.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        for (i, segment) in segments.enumerated() {
            let errorPath = ([prefix] + walked + [segment]).joined(separator: ".")
            guard !fields.isEmpty else {
                throw SpecError(location, errorPath, "\(walked.joined(separator: ".")) has no keys below it")
            }
            guard let field = fields.first(where: { $0.key == segment }) else {
                let known = fields.map(\.key)
                if let suggestion = Suggestions.closest(to: segment, in: known) {
                    throw SpecError(location, errorPath, "unknown key; did you mean \(suggestion)?")
                }
                let scope = walked.isEmpty ? "at the top level" : "in \(walked.joined(separator: "."))"
                throw SpecError(location, errorPath, "unknown key", hint: "allowed keys \(scope): \(known.joined(separator: ", "))")
            }
            walked.append(segment)
            if i == 0, fixed.contains(segment) {
                throw SpecError(location, errorPath, "cannot be swept")
            }
            fields = field.children
            if i == segments.count - 1, field.isSection, !field.nullable {
                throw SpecError(location, errorPath, "is a section; sweep one of its keys (\(field.key).\(field.children[0].key), ...)")
            }
        }
    }
}

enum SweepValues {
    /// Decodes the spec once per swept value, with that value set and the sweep section removed,
    /// so each value is checked like a `--set` (errors at the value in the sweep list). Rules
    /// between keys are not checked here: another swept key may satisfy them in a combination.
    static func check(root: SpecNode, baseDirectory: String) throws {
        guard case .mapping(let entries) = root.kind,
              let sweep = entries.first(where: { $0.key == "sweep" })?.value.entries,
              let parameters = sweep.first(where: { $0.key == "parameters" })?.value.entries else { return }
        var base = root
        base.kind = .mapping(entries.filter { $0.key != "sweep" })
        for parameter in parameters {
            guard case .sequence(let values) = parameter.value.kind else { continue }
            let segments = parameter.key.split(separator: ".").map {
                KeySegment(name: String($0), location: parameter.keyLocation)
            }
            for value in values {
                var trial = base
                try trial.set(segments, to: value)
                _ = try SpecDecoder(context: DecodeContext(baseDirectory: baseDirectory)).decode(trial)
            }
        }
    }
}
