/// One `--set key.path=value` override, or one `--unset key.path` (passed on as `~key.path`).
///
/// The value is parsed as YAML (a scalar, or a flow list/map such as `[0.9,0.99]` or
/// `{epochs: 2}`; an empty value is null) and replaces the node at the key path before
/// validation, creating missing intermediate mappings (and replacing a null one), so the usual
/// diagnostics apply. Null on a key the schema says cannot be null removes the key instead
/// (Hydra-style: `--set router=null` drops the section, so its defaults apply); on a nullable key
/// (`router.capacity_factor`) it is the value. `~key.path` always removes the key; the key path
/// must be one the schema knows (with a "did you mean"), and a key not written is left alone.
///
/// Positions: file `--set` (`--unset` for a removal), line 1, column = the 1-based position (in
/// Unicode scalars) in the argument of the offending part: the key segment for key errors, the
/// value (or the part of it libyaml points at) for value errors, column 1 for a malformed
/// argument. The key path in the error message names the override.
struct Override {
    static let file = "--set"
    static let unsetFile = "--unset"

    let keyPath: String
    let segments: [KeySegment]
    /// nil: remove the key.
    let value: SpecNode?

    var isRemoval: Bool { value == nil }

    init(_ argument: String) throws {
        if argument.hasPrefix("~") {
            let keyPath = String(argument.dropFirst())
            if let equals = keyPath.unicodeScalars.firstIndex(of: "=") {
                let column = keyPath.unicodeScalars.distance(from: keyPath.unicodeScalars.startIndex, to: equals) + 1
                throw SpecError(Self.location(column: column, file: Self.unsetFile), keyPath, "--unset takes a key path, not a value",
                                hint: "e.g. --unset router")
            }
            let segments = try Self.segments(of: keyPath, argument: keyPath, file: Self.unsetFile)
            try Self.schemaField(segments, file: Self.unsetFile)
            self.keyPath = keyPath
            self.segments = segments
            value = nil
            return
        }
        let scalars = Array(argument.unicodeScalars)
        guard let equals = scalars.firstIndex(of: "=") else {
            throw SpecError(Self.location(column: 1), argument, "malformed override; expected key.path=value",
                            hint: "e.g. --set router.k=2")
        }
        keyPath = String(String.UnicodeScalarView(scalars[..<equals]))
        segments = try Self.segments(of: keyPath, argument: argument, file: Self.file)
        let valueText = String(String.UnicodeScalarView(scalars[(equals + 1)...]))
        let document = YAMLDocument(file: Self.file, columnOffset: equals + 1, endColumn: scalars.count + 1)
        let valueLocation = Self.location(column: equals + 2)
        let node = try document.parse(valueText)
            ?? SpecNode(.scalar(.init(value: .null, text: "")), at: valueLocation)
        let field = SpecSchema.field(at: keyPath)
        value = node.isNull && field.map({ !$0.nullable }) == true ? nil : node
    }

    /// The names of a key path with their columns; names are letters, digits and `_`.
    private static func segments(of keyPath: String, argument: String, file: String) throws -> [KeySegment] {
        var segments: [KeySegment] = []
        var start = 0
        for part in keyPath.unicodeScalars.split(separator: ".", omittingEmptySubsequences: false) {
            let name = String(String.UnicodeScalarView(part))
            let location = Self.location(column: start + 1, file: file)
            guard !name.isEmpty, name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") })
            else {
                throw SpecError(location, keyPath.isEmpty ? argument : keyPath,
                                "malformed key path; expected names made of letters, digits and _ joined by dots",
                                hint: file == Self.unsetFile ? "e.g. --unset router" : "e.g. --set train.lr=0.01")
            }
            segments.append(KeySegment(name: name, location: location))
            start += part.count + 1
        }
        return segments
    }

    /// Checks that the schema knows the key path (an unknown name is an error at its segment).
    private static func schemaField(_ segments: [KeySegment], file: String) throws {
        var fields = SpecSchema.root
        var walked: [String] = []
        for segment in segments {
            let path = (walked + [segment.name]).joined(separator: ".")
            guard !fields.isEmpty else {
                throw SpecError(segment.location, path, "\(walked.joined(separator: ".")) has no keys below it")
            }
            guard let field = fields.first(where: { $0.key == segment.name }) else {
                let known = fields.map(\.key)
                if let suggestion = Suggestions.closest(to: segment.name, in: known) {
                    throw SpecError(segment.location, path, "unknown key; did you mean \(suggestion)?")
                }
                let scope = walked.isEmpty ? "at the top level" : "in \(walked.joined(separator: "."))"
                throw SpecError(segment.location, path, "unknown key", hint: "allowed keys \(scope): \(known.joined(separator: ", "))")
            }
            walked.append(segment.name)
            fields = field.children
        }
    }

    private static func location(column: Int, file: String = file) -> SourceLocation {
        SourceLocation(file: file, line: 1, column: column)
    }

    /// Sets the value in `root` (a mapping), creating intermediate mappings; or removes the key.
    func apply(to root: inout SpecNode) throws {
        if let value {
            try root.set(segments, to: value)
        } else {
            root.remove(segments.map(\.name)[...])
        }
    }
}

/// One name of a key path, with where it was written.
struct KeySegment {
    let name: String
    let location: SourceLocation
}

extension SpecNode {
    /// Replaces (or adds) the node at `segments` in this mapping. Missing intermediate mappings
    /// are created and null ones replaced, located at their segment; a scalar or list in the way
    /// is an error at the next segment.
    mutating func set(_ segments: [KeySegment], to value: SpecNode) throws {
        try set(segments[...], to: value, path: "")
    }

    private mutating func set(_ segments: ArraySlice<KeySegment>, to value: SpecNode, path: String) throws {
        guard case .mapping(var entries) = kind, let segment = segments.first else { return }
        let childPath = path.isEmpty ? segment.name : "\(path).\(segment.name)"
        let rest = segments.dropFirst()
        var position = entries.firstIndex { $0.key == segment.name }
        if position == nil {
            let fresh = rest.isEmpty ? value : SpecNode(.mapping([]), at: segment.location)
            entries.append(.init(key: segment.name, keyLocation: segment.location, value: fresh))
            position = entries.count - 1
        } else if rest.isEmpty {
            entries[position!].value = value
        }
        if let next = rest.first {
            var child = entries[position!].value
            switch child.kind {
            case .mapping: break
            case .scalar where child.isNull: child = SpecNode(.mapping([]), at: segment.location)
            case .sequence, .scalar:
                throw SpecError(next.location, "\(childPath).\(next.name)",
                                "cannot set a key inside \(childPath): it is \(child.described), not a mapping",
                                hint: "set the whole value, e.g. --set \(childPath)=...")
            }
            try child.set(rest, to: value, path: childPath)
            entries[position!].value = child
        }
        kind = .mapping(entries)
    }
}

extension SpecNode {
    /// Removes the entry at `path` (key names) from this mapping and its mappings; false when
    /// there is none (a missing key, or a value in the way that is not a mapping).
    @discardableResult
    mutating func remove(_ path: ArraySlice<String>) -> Bool {
        guard case .mapping(var entries) = kind, let name = path.first,
              let i = entries.firstIndex(where: { $0.key == name }) else { return false }
        if path.count == 1 {
            entries.remove(at: i)
        } else if !entries[i].value.remove(path.dropFirst()) {
            return false
        }
        kind = .mapping(entries)
        return true
    }
}
