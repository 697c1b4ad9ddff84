/// One `--set key.path=value` override.
///
/// The value is parsed as YAML (a scalar, or a flow list/map such as `[0.9,0.99]` or
/// `{epochs: 2}`; an empty value is null) and replaces the node at the key path before
/// validation, creating missing intermediate mappings (and replacing a null one), so the usual
/// diagnostics apply. Positions: file `--set`, line 1, column = the 1-based position (in Unicode
/// scalars) in the argument of the offending part: the key segment for key errors, the value
/// (or the part of it libyaml points at) for value errors, column 1 for a malformed argument.
/// The key path in the error message names the override.
struct Override {
    static let file = "--set"

    let keyPath: String
    let segments: [KeySegment]
    let value: SpecNode

    init(_ argument: String) throws {
        let scalars = Array(argument.unicodeScalars)
        guard let equals = scalars.firstIndex(of: "=") else {
            throw SpecError(Self.location(column: 1), argument, "malformed override; expected key.path=value",
                            hint: "e.g. --set router.k=2")
        }
        keyPath = String(String.UnicodeScalarView(scalars[..<equals]))
        var segments: [KeySegment] = []
        var start = 0
        for part in keyPath.unicodeScalars.split(separator: ".", omittingEmptySubsequences: false) {
            let name = String(String.UnicodeScalarView(part))
            let location = Self.location(column: start + 1)
            guard !name.isEmpty, name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") })
            else {
                throw SpecError(location, keyPath.isEmpty ? argument : keyPath,
                                "malformed key path; expected names made of letters, digits and _ joined by dots",
                                hint: "e.g. --set train.lr=0.01")
            }
            segments.append(KeySegment(name: name, location: location))
            start += part.count + 1
        }
        self.segments = segments
        let valueText = String(String.UnicodeScalarView(scalars[(equals + 1)...]))
        let document = YAMLDocument(file: Self.file, columnOffset: equals + 1, endColumn: scalars.count + 1)
        let valueLocation = Self.location(column: equals + 2)
        value = try document.parse(valueText)
            ?? SpecNode(.scalar(.init(value: .null, text: "")), at: valueLocation)
    }

    private static func location(column: Int) -> SourceLocation {
        SourceLocation(file: file, line: 1, column: column)
    }

    /// Sets the value in `root` (a mapping), creating intermediate mappings.
    func apply(to root: inout SpecNode) throws {
        try root.set(segments, to: value)
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
