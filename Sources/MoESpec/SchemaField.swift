/// One key of the spec schema: its type, range, default and documentation.
///
/// The decoder reads ranges and defaults from these values, `docs/spec.md` is generated from
/// them and the unknown-key check lists them, so the three cannot disagree.
public struct SchemaField: Sendable {
    public indirect enum ValueType: Sendable {
        /// A YAML integer (`2.0` is not one) in `min...max` (`max` nil = unbounded).
        case integer(min: Int, max: Int?)
        /// An integer or float, finite, within the bounds.
        case number(NumberBounds)
        /// `true` or `false`.
        case boolean
        case string
        /// One of the listed words.
        case choice([String])
        /// Decoded by hand; the text documents the accepted forms.
        case custom(String)
        /// A mapping with its own keys.
        case section([SchemaField])
    }

    public let key: String
    public let type: ValueType
    /// `null` is accepted (and means what the documentation says).
    public let nullable: Bool
    /// The default; nil when the key is required or its default is computed (see `defaultText`).
    public let defaultValue: SpecValue?
    /// Documentation of a computed default or of a requirement, e.g. "required", "`train.lr`".
    public let defaultText: String?
    public let doc: String

    init(_ key: String, _ type: ValueType, nullable: Bool = false, default defaultValue: SpecValue? = nil,
         defaultText: String? = nil, _ doc: String) {
        self.key = key
        self.type = type
        self.nullable = nullable
        self.defaultValue = defaultValue
        self.defaultText = defaultText
        self.doc = doc
    }

    /// The fields of a section (empty for other types).
    public var children: [SchemaField] {
        if case .section(let fields) = type { return fields }
        return []
    }

    public var isSection: Bool {
        if case .section = type { return true }
        return false
    }

    static func choice<E: RawRepresentable & CaseIterable>(_: E.Type) -> ValueType where E.RawValue == String {
        .choice(E.allCases.map(\.rawValue))
    }
}

/// Bounds of a number: each side open, closed or absent.
public struct NumberBounds: Sendable {
    public var lower: Double?
    public var lowerInclusive: Bool
    public var upper: Double?
    public var upperInclusive: Bool

    /// Any finite number.
    static let any = NumberBounds(lower: nil, lowerInclusive: true, upper: nil, upperInclusive: true)
    /// `> 0`.
    static let positive = NumberBounds(lower: 0, lowerInclusive: false, upper: nil, upperInclusive: true)
    /// `>= 0`.
    static let nonNegative = NumberBounds(lower: 0, lowerInclusive: true, upper: nil, upperInclusive: true)
    /// `[0, 1)`.
    static let unitHalfOpen = NumberBounds(lower: 0, lowerInclusive: true, upper: 1, upperInclusive: false)
    /// `(0, 1]`.
    static let unitOpenClosed = NumberBounds(lower: 0, lowerInclusive: false, upper: 1, upperInclusive: true)
    /// `(0, 1)`.
    static let unitOpen = NumberBounds(lower: 0, lowerInclusive: false, upper: 1, upperInclusive: false)
    /// `[0, 1]`.
    static let unitClosed = NumberBounds(lower: 0, lowerInclusive: true, upper: 1, upperInclusive: true)

    func contains(_ x: Double) -> Bool {
        if let lower, lowerInclusive ? x < lower : x <= lower { return false }
        if let upper, upperInclusive ? x > upper : x >= upper { return false }
        return true
    }

    /// `> 0`, `>= 0`, `in [0, 1)`, or nil when unbounded.
    var text: String? {
        switch (lower, upper) {
        case (nil, nil): return nil
        case (let lo?, nil): return (lowerInclusive ? ">= " : "> ") + formatNumber(lo)
        case (nil, let hi?): return (upperInclusive ? "<= " : "< ") + formatNumber(hi)
        case (let lo?, let hi?):
            return "in \(lowerInclusive ? "[" : "(")\(formatNumber(lo)), \(formatNumber(hi))\(upperInclusive ? "]" : ")")"
        }
    }
}

/// Integers without a fraction (`0`, `1`), others in Swift's shortest round-trip form.
func formatNumber(_ x: Double) -> String {
    if x == x.rounded(), abs(x) < 1e15 { return String(Int(x)) }
    return "\(x)"
}

extension SchemaField.ValueType {
    /// For messages and docs: `an integer >= 1`, `a number in [0, 1)`, ...
    var expectation: String {
        switch self {
        case .integer: return "an integer"
        case .number: return "a number"
        case .boolean: return "true or false"
        case .string: return "a string"
        case .choice(let words): return "one of " + words.joined(separator: ", ")
        case .custom(let text): return text.replacingOccurrences(of: "`", with: "")
        case .section: return "a mapping"
        }
    }
}
