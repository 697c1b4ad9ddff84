import Foundation

/// What one decode learns besides the values: where each key path is (the value's position, or
/// the enclosing mapping's when the default was used) and which keys the document gave.
final class DecodeContext {
    var locations: [String: SourceLocation] = [:]
    var given: Set<String> = []
    /// Absolute directory relative paths in the spec are resolved against.
    let baseDirectory: String

    init(baseDirectory: String) {
        self.baseDirectory = baseDirectory
    }

    /// The recorded location of `keyPath`, else of its closest recorded parent, else `fallback`.
    func location(of keyPath: String, fallback: SourceLocation) -> SourceLocation {
        var path = Substring(keyPath)
        while !path.isEmpty {
            if let found = locations[String(path)] { return found }
            guard let dot = path.lastIndex(of: ".") else { break }
            path = path[..<dot]
        }
        return fallback
    }
}

/// Reads one mapping of the spec against its schema fields.
///
/// Creating a reader checks the node is a mapping and that every key is known (unknown keys are
/// errors with a "did you mean" suggestion, or the list of allowed keys). The accessors check
/// type and range, apply the schema default when the key is absent, and report a missing
/// required key at the mapping.
struct MappingReader {
    /// Dotted path of this mapping ("" for the root).
    let path: String
    /// The mapping's position (the parent's when the mapping is absent).
    let location: SourceLocation
    let fields: [SchemaField]
    let context: DecodeContext
    private var entries: [String: SpecNode.Entry] = [:]

    init(_ node: SpecNode?, path: String, fields: [SchemaField], parentLocation: SourceLocation,
         context: DecodeContext) throws {
        self.path = path
        self.fields = fields
        self.context = context
        self.location = node?.location ?? parentLocation
        guard let node, !node.isNull else { return }
        guard let list = node.entries else {
            let keys = fields.prefix(4).map(\.key).joined(separator: ", ")
            throw SpecError(node.location, path, "expected a mapping (keys like \(keys)), got \(node.described)")
        }
        let known = fields.map(\.key)
        for entry in list {
            guard known.contains(entry.key) else { throw unknownKey(entry) }
            entries[entry.key] = entry
        }
    }

    private func unknownKey(_ entry: SpecNode.Entry) -> SpecError {
        let known = fields.map(\.key)
        let keyPath = child(entry.key)
        if let suggestion = Suggestions.closest(to: entry.key, in: known) {
            return SpecError(entry.keyLocation, keyPath, "unknown key; did you mean \(suggestion)?")
        }
        let scope = path.isEmpty ? "at the top level" : "in \(path)"
        return SpecError(entry.keyLocation, keyPath, "unknown key",
                         hint: "allowed keys \(scope): \(known.joined(separator: ", "))")
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The value node of `field` (recording its location), or nil when absent.
    func node(_ field: SchemaField) -> SpecNode? {
        let keyPath = child(field.key)
        guard let entry = entries[field.key] else {
            if context.locations[keyPath] == nil { context.locations[keyPath] = location }
            return nil
        }
        context.locations[keyPath] = entry.value.location
        context.given.insert(keyPath)
        return entry.value
    }

    func has(_ field: SchemaField) -> Bool { entries[field.key] != nil }

    func keyLocation(_ field: SchemaField) -> SourceLocation { entries[field.key]?.keyLocation ?? location }

    /// Throws "required key is missing" at this mapping.
    func missing(_ field: SchemaField, _ message: String = "required key is missing") -> SpecError {
        SpecError(location, child(field.key), message, hint: field.doc.replacingOccurrences(of: "`", with: ""))
    }

    /// The present, non-null node; nil when absent; throws for null on a non-nullable key.
    private func value(_ field: SchemaField) throws -> SpecNode? {
        guard let node = node(field) else { return nil }
        if node.isNull {
            if field.nullable { return nil }
            let hint = field.defaultValue.map { "this key cannot be null; remove it to use the default (\(YAMLText.inline($0)))" }
            throw SpecError(node.location, child(field.key), "expected \(field.type.expectation), got null", hint: hint)
        }
        return node
    }

    private func fallback<T>(_ field: SchemaField, _ extract: (SpecValue) -> T?) throws -> T {
        guard let value = field.defaultValue.flatMap(extract) else { throw missing(field) }
        return value
    }

    func int(_ field: SchemaField) throws -> Int {
        guard let node = try value(field) else { return try fallback(field) { if case .int(let i) = $0 { i } else { nil } } }
        return try Check.integer(node, child(field.key), field.type)
    }

    /// For keys without a default: nil when absent or null.
    func optionalInt(_ field: SchemaField) throws -> Int? {
        guard let node = node(field), !node.isNull else { return nil }
        return try Check.integer(node, child(field.key), field.type)
    }

    func number(_ field: SchemaField) throws -> Double {
        guard let node = try value(field) else { return try fallback(field, Self.double) }
        return try Check.number(node, child(field.key), field.type)
    }

    /// Nullable numbers: absent → the default (which may be null), null → nil.
    func nullableNumber(_ field: SchemaField) throws -> Double? {
        guard let node = node(field) else { return field.defaultValue.flatMap(Self.double) }
        if node.isNull { return nil }
        return try Check.number(node, child(field.key), field.type)
    }

    /// For keys without a default: nil when absent or null.
    func optionalNumber(_ field: SchemaField) throws -> Double? {
        guard let node = node(field), !node.isNull else { return nil }
        return try Check.number(node, child(field.key), field.type)
    }

    func bool(_ field: SchemaField) throws -> Bool {
        guard let node = try value(field) else { return try fallback(field) { if case .bool(let b) = $0 { b } else { nil } } }
        return try Check.boolean(node, child(field.key))
    }

    func string(_ field: SchemaField) throws -> String {
        guard let node = try value(field) else { return try fallback(field, Self.text) }
        return try Check.string(node, child(field.key))
    }

    /// Strings that may be null or absent (nil then).
    func optionalString(_ field: SchemaField) throws -> String? {
        guard let node = try value(field) else { return nil }
        return try Check.string(node, child(field.key))
    }

    func choice<E: RawRepresentable & CaseIterable>(_ field: SchemaField, as _: E.Type) throws -> E where E.RawValue == String {
        guard let node = try value(field) else {
            return try fallback(field) { Self.text($0).flatMap(E.init(rawValue:)) }
        }
        let word = try Check.word(node, child(field.key), allowed: E.allCases.map(\.rawValue))
        return E(rawValue: word)!
    }

    func section(_ field: SchemaField) throws -> MappingReader {
        try MappingReader(try value(field), path: child(field.key), fields: field.children, parentLocation: location,
                          context: context)
    }

    private static func double(_ value: SpecValue) -> Double? {
        switch value {
        case .number(let d): return d
        case .int(let i): return Double(i)
        default: return nil
        }
    }

    private static func text(_ value: SpecValue) -> String? {
        if case .string(let s) = value { return s }
        return nil
    }
}

/// Type and range checks of single nodes, shared by mappings and list elements.
enum Check {
    static func integer(_ node: SpecNode, _ path: String, _ type: SchemaField.ValueType) throws -> Int {
        guard case .scalar(let s) = node.kind else {
            throw SpecError(node.location, path, "expected an integer, got \(node.described)")
        }
        if s.isOverflowingInteger { throw SpecError(node.location, path, "integer \(s.text) is too large") }
        guard case .int(let value) = s.value else {
            var hint: String?
            if case .float(let d) = s.value, d.isFinite, d == d.rounded(), abs(d) < 1e15 { hint = "write \(Int(d))" }
            if case .string(let text) = s.value, Int(text) != nil { hint = "remove the quotes" }
            throw SpecError(node.location, path, "expected an integer, got \(node.described)", hint: hint)
        }
        if case .integer(let lo, let hi) = type {
            if let hi, value < lo || value > hi {
                throw SpecError(node.location, path, "must be between \(lo) and \(hi), got \(s.text)")
            }
            if value < lo { throw SpecError(node.location, path, "must be >= \(lo), got \(s.text)") }
        }
        return value
    }

    static func number(_ node: SpecNode, _ path: String, _ type: SchemaField.ValueType) throws -> Double {
        guard case .scalar(let s) = node.kind else {
            throw SpecError(node.location, path, "expected a number, got \(node.described)")
        }
        let value: Double
        switch s.value {
        case .int(let i): value = Double(i)
        case .float(let d): value = d
        default:
            let hint: String? = if case .string(let text) = s.value, ScalarResolver.float(text) != nil { "remove the quotes" } else { nil }
            throw SpecError(node.location, path, "expected a number, got \(node.described)", hint: hint)
        }
        guard value.isFinite else { throw SpecError(node.location, path, "must be a finite number, got \(s.text)") }
        if case .number(let bounds) = type, !bounds.contains(value), let text = bounds.text {
            throw SpecError(node.location, path, "must be \(text), got \(s.text)")
        }
        return value
    }

    static func boolean(_ node: SpecNode, _ path: String) throws -> Bool {
        if case .scalar(let s) = node.kind, case .bool(let b) = s.value { return b }
        var hint: String?
        if case .scalar(let s) = node.kind, case .string(let text) = s.value {
            if ["yes", "no", "on", "off", "y", "n"].contains(text.lowercased()) {
                hint = "YAML 1.1 words like yes/no/on/off are not booleans in a spec; write true or false"
            } else if ["true", "false"].contains(text.lowercased()) {
                hint = "remove the quotes"
            }
        }
        throw SpecError(node.location, path, "expected true or false, got \(node.described)", hint: hint)
    }

    static func string(_ node: SpecNode, _ path: String) throws -> String {
        if case .scalar(let s) = node.kind, case .string(let text) = s.value { return text }
        var hint: String?
        if case .scalar(let s) = node.kind { hint = "quote it if you mean the text: \(quoted(s.text))" }
        throw SpecError(node.location, path, "expected a string, got \(node.described)", hint: hint)
    }

    /// A string that must be one of `allowed`.
    static func word(_ node: SpecNode, _ path: String, allowed: [String]) throws -> String {
        guard case .scalar(let s) = node.kind, case .string(let text) = s.value else {
            throw SpecError(node.location, path, "expected one of \(allowed.joined(separator: ", ")), got \(node.described)")
        }
        guard allowed.contains(text) else {
            let hint = Suggestions.closest(to: text, in: allowed).map { "did you mean \($0)?" }
            throw SpecError(node.location, path,
                            "unknown value \(quoted(text)); allowed: \(allowed.joined(separator: ", "))", hint: hint)
        }
        return text
    }

    /// The elements of a list node.
    static func list(_ node: SpecNode, _ path: String, _ expectation: String) throws -> [SpecNode] {
        guard case .sequence(let items) = node.kind else {
            throw SpecError(node.location, path, "expected \(expectation), got \(node.described)")
        }
        return items
    }
}
