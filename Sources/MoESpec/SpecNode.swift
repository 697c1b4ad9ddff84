import Foundation
import Yams

/// The YAML tree the validator walks: Yams' `Node` reduced to what a spec needs, every node and
/// every key with its source location, scalars resolved with the YAML 1.2 core schema.
///
/// Scalar rules (documented in docs/spec.md):
/// - quoted and block scalars (`"..."`, `'...'`, `|`, `>`) and `!!str` are strings;
/// - plain scalars: `~`, `null`, `Null`, `NULL` and the empty value are null; `true`/`false`
///   (also `True`, `TRUE`, ...) are booleans; `[-+]?[0-9]+` is an integer; decimal floats with an
///   optional exponent (`1e-5`, `.5`, `3.`) and `.inf`/`.nan` are numbers; anything else is a
///   string (so YAML 1.1's `yes`/`no`/`on`/`off` are strings, reported with a hint where a
///   boolean is expected);
/// - explicit `!!int`, `!!float`, `!!bool`, `!!null` tags are honoured; other tags are errors.
struct SpecNode {
    enum Kind {
        case scalar(Scalar)
        case mapping([Entry])
        case sequence([SpecNode])
    }

    /// A mapping entry; keys are unique within a mapping (duplicates are rejected when parsing).
    struct Entry {
        var key: String
        var keyLocation: SourceLocation
        var value: SpecNode
    }

    struct Scalar {
        enum Value: Equatable {
            case null
            case bool(Bool)
            case int(Int)
            case float(Double)
            case string(String)
        }

        var value: Value
        /// The text as written (for messages).
        var text: String
        /// Plain (unquoted) integer literal too large for `Int`.
        var isOverflowingInteger = false
    }

    var kind: Kind
    var location: SourceLocation

    init(_ kind: Kind, at location: SourceLocation) {
        self.kind = kind
        self.location = location
    }

    var isNull: Bool {
        if case .scalar(let s) = kind, s.value == .null { return true }
        return false
    }

    var entries: [Entry]? {
        if case .mapping(let entries) = kind { return entries }
        return nil
    }

    /// How a value is named in "expected X, got Y" messages.
    var described: String {
        switch kind {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let s):
            switch s.value {
            case .null: return "null"
            case .bool(let b): return "boolean \(b)"
            case .int: return "integer \(s.text)"
            case .float: return "number \(s.text)"
            case .string(let str): return "string \(quoted(str))"
            }
        }
    }

    /// The node as a plain value (for swept values).
    var specValue: SpecValue {
        switch kind {
        case .mapping(let entries):
            return .map(entries.map { SpecValue.Entry(key: $0.key, value: $0.value.specValue) })
        case .sequence(let items): return .list(items.map(\.specValue))
        case .scalar(let s):
            switch s.value {
            case .null: return .null
            case .bool(let b): return .bool(b)
            case .int(let i): return .int(i)
            case .float(let d): return .number(d)
            case .string(let str): return .string(str)
            }
        }
    }
}

/// `"text"` with JSON-style escapes, for messages.
func quoted(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                out += String(format: "\\u%04X", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

// MARK: - Scalar resolution (YAML 1.2 core schema)

enum ScalarResolver {
    static let strTag = "tag:yaml.org,2002:str"
    static let intTag = "tag:yaml.org,2002:int"
    static let floatTag = "tag:yaml.org,2002:float"
    static let boolTag = "tag:yaml.org,2002:bool"
    static let nullTag = "tag:yaml.org,2002:null"

    /// Resolves a plain, untagged scalar.
    static func resolvePlain(_ text: String) -> SpecNode.Scalar {
        if ["", "~", "null", "Null", "NULL"].contains(text) { return .init(value: .null, text: text) }
        if ["true", "True", "TRUE"].contains(text) { return .init(value: .bool(true), text: text) }
        if ["false", "False", "FALSE"].contains(text) { return .init(value: .bool(false), text: text) }
        if isInteger(text) {
            if let i = Int(text.hasPrefix("+") ? String(text.dropFirst()) : text) {
                return .init(value: .int(i), text: text)
            }
            return .init(value: .float(Double(text) ?? .infinity), text: text, isOverflowingInteger: true)
        }
        if let d = float(text) { return .init(value: .float(d), text: text) }
        return .init(value: .string(text), text: text)
    }

    /// Resolves a scalar with an explicit tag; nil when the text does not fit the tag.
    static func resolveTagged(_ text: String, tag: String) -> SpecNode.Scalar.Value? {
        switch tag {
        case strTag: return .string(text)
        case nullTag: return ["", "~", "null", "Null", "NULL"].contains(text) ? .null : nil
        case boolTag:
            if case .bool(let b) = resolvePlain(text).value { return .bool(b) }
            return nil
        case intTag:
            if case .int(let i) = resolvePlain(text).value { return .int(i) }
            return nil
        case floatTag:
            switch resolvePlain(text).value {
            case .int(let i): return .float(Double(i))
            case .float(let d): return .float(d)
            default: return nil
            }
        default: return nil
        }
    }

    static func isInteger(_ text: String) -> Bool {
        var digits = Substring(text)
        if let first = digits.first, first == "-" || first == "+" { digits = digits.dropFirst() }
        return !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
    }

    /// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` and `[-+]?.inf`, `.nan`.
    static func float(_ text: String) -> Double? {
        var body = Substring(text)
        var sign = 1.0
        if let first = body.first, first == "-" || first == "+" {
            sign = first == "-" ? -1 : 1
            body = body.dropFirst()
        }
        if [".inf", ".Inf", ".INF"].contains(body) { return sign * .infinity }
        if [".nan", ".NaN", ".NAN"].contains(text) { return .nan }
        let chars = Array(body)
        var i = 0
        func digits() -> Int {
            let start = i
            while i < chars.count, chars[i].isASCII, chars[i].isNumber { i += 1 }
            return i - start
        }
        let intDigits = digits()
        var fracDigits = 0
        if i < chars.count, chars[i] == "." {
            i += 1
            fracDigits = digits()
        }
        guard intDigits > 0 || fracDigits > 0 else { return nil }
        if i < chars.count, chars[i] == "e" || chars[i] == "E" {
            i += 1
            if i < chars.count, chars[i] == "-" || chars[i] == "+" { i += 1 }
            guard digits() > 0 else { return nil }
        }
        guard i == chars.count, let value = Double(String(body)) else { return nil }
        return sign * value
    }
}

// MARK: - Conversion from Yams

extension SpecNode {
    /// Converts a composed Yams tree. `locate` maps a Yams mark to a source location.
    static func from(_ node: Node, keyPath: String, locate: (Mark?) -> SourceLocation) throws -> SpecNode {
        let location = locate(node.mark)
        switch node {
        case .scalar(let scalar):
            return SpecNode(.scalar(try resolve(scalar, keyPath: keyPath, at: location)), at: location)
        case .sequence(let sequence):
            var items: [SpecNode] = []
            for (index, item) in sequence.enumerated() {
                items.append(try from(item, keyPath: "\(keyPath)[\(index)]", locate: locate))
            }
            return SpecNode(.sequence(items), at: location)
        case .mapping(let mapping):
            var entries: [Entry] = []
            for (key, value) in mapping {
                let keyLocation = locate(key.mark)
                guard case .scalar(let keyScalar) = key else {
                    throw SpecError(keyLocation, keyPath, "mapping keys must be plain names, got \(key.isMapping ? "a mapping" : "a list")")
                }
                let path = keyPath.isEmpty ? keyScalar.string : "\(keyPath).\(keyScalar.string)"
                entries.append(Entry(key: keyScalar.string, keyLocation: keyLocation,
                                     value: try from(value, keyPath: path, locate: locate)))
            }
            return SpecNode(.mapping(entries), at: location)
        case .alias:
            // Yams resolves aliases while composing; an unresolved one cannot reach us.
            throw SpecError(location, keyPath, "unresolved alias")
        }
    }

    private static func resolve(_ scalar: Node.Scalar, keyPath: String, at location: SourceLocation) throws -> Scalar {
        let tag = scalar.tag.rawValue
        let isPlain = scalar.style == .plain || scalar.style == .any
        if isPlain && tag.isEmpty { return ScalarResolver.resolvePlain(scalar.string) }
        if tag.isEmpty || tag == "!" || tag == ScalarResolver.strTag {
            return Scalar(value: .string(scalar.string), text: scalar.string)
        }
        guard let value = ScalarResolver.resolveTagged(scalar.string, tag: tag) else {
            let short = tag.hasPrefix("tag:yaml.org,2002:") ? "!!" + tag.dropFirst(18) : tag
            let known = [ScalarResolver.intTag, ScalarResolver.floatTag, ScalarResolver.boolTag, ScalarResolver.nullTag]
            let message = known.contains(tag)
                ? "\(quoted(scalar.string)) is not a valid \(short) value"
                : "unsupported tag \(short)"
            throw SpecError(location, keyPath, message, hint: "spec values need no tags; write plain values")
        }
        return Scalar(value: value, text: scalar.string)
    }
}

private extension Node {
    var isMapping: Bool {
        if case .mapping = self { return true }
        return false
    }
}
