import Foundation
import Yams

/// Turns YAML text into a `SpecNode` tree, reporting every YAML-level problem as a `SpecError` at
/// its position. The guards run in this order:
///
/// 1. Tabs in indentation are reported at the tab (libyaml's own message is cryptic).
/// 2. Aliases: if the text contains `*`, a copy in which every `*` is replaced by a private-use
///    character is composed first. That copy has no aliases (only `*` starts one), so composing it
///    costs time and memory linear in the text; former aliases appear in it as plain scalars, and
///    the anchors are still attached to their nodes. Walking it in document order gives the size
///    each alias would expand to. A document that would expand to more than `aliasNodeLimit` nodes
///    (a "billion laughs") is refused at the alias that crosses the limit, before Yams expands
///    anything. Smaller, legitimate alias use (`lr: &lr 0.01` ... `lr: *lr`) is allowed.
/// 3. Duplicate keys: Yams 6 throws on them, pointing at the first occurrence. The key at that
///    position is renamed in a scratch copy (same length, so every other position is unchanged)
///    and the copy composed again, until it composes; the second occurrence is then found next to
///    the renamed key and reported with its key path.
/// 4. Syntax errors become `SpecError`s at libyaml's problem mark.
///
/// Before any of that, texts over `maxBytes` and nesting deeper than `maxDepth` are refused, so
/// that neither Yams' recursive composer nor the walks here can exhaust the stack.
struct YAMLDocument {
    /// Expanded node count above which aliases are refused.
    static let aliasNodeLimit = 100_000
    /// Specs larger than this are refused before parsing.
    static let maxBytes = 1 << 20
    /// Deeper nesting is refused before parsing (Yams composes recursively).
    static let maxDepth = 64

    /// Name used in locations, and how marks map to locations (overrides shift columns).
    let file: String
    var columnOffset = 0
    /// For one-line texts (override values): marks past line 1 (libyaml's end of input) are
    /// reported at this column of line 1.
    var endColumn: Int?

    func location(_ mark: Mark?) -> SourceLocation {
        guard let mark else { return SourceLocation(file: file, line: 1, column: 1 + columnOffset) }
        if mark.line > 1, let endColumn { return SourceLocation(file: file, line: 1, column: endColumn) }
        return SourceLocation(file: file, line: mark.line, column: mark.line == 1 ? mark.column + columnOffset : mark.column)
    }

    /// The document's root, or nil when it holds no node at all (empty, only comments).
    func parse(_ text: String) throws -> SpecNode? {
        guard text.utf8.count <= Self.maxBytes else {
            throw SpecError(file: file, line: 0, column: 0, keyPath: "",
                            message: "the spec is larger than \(Self.maxBytes / (1 << 20)) MiB; refusing to parse it")
        }
        try checkTabs(text)
        try checkNesting(text)
        if text.contains("*") {
            let neutral = String(String.UnicodeScalarView(text.unicodeScalars.map { $0 == "*" ? Self.aliasMarker : $0 }))
            try withComposed(neutral) { root in
                if let root { try checkAliasExpansion(root) }
            }
        }
        return try withComposed(text) { root in
            try root.map { try SpecNode.from($0, keyPath: "", locate: location) }
        }
    }

    // MARK: Tabs

    /// Reports a tab in the leading whitespace of a content line (block scalar bodies excepted).
    private func checkTabs(_ text: String) throws {
        var blockIndent: Int?   // indentation of the line that opened a block scalar (| or >)
        let lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() {
            let lead = line.prefix { $0 == " " || $0 == "\t" }
            let content = line.dropFirst(lead.count)
            if content.isEmpty || content.first == "\r" { continue }
            let spaces = lead.prefix { $0 == " " }.count
            if let indent = blockIndent {
                if spaces > indent { continue }
                blockIndent = nil
            }
            if let tab = lead.firstIndex(of: "\t"), content.first != "#" {
                let column = lead.distance(from: lead.startIndex, to: tab) + 1
                throw SpecError(file: file, line: index + 1, column: column + (index == 0 ? columnOffset : 0),
                                keyPath: "", message: "tab character in indentation",
                                hint: "YAML indents with spaces only; replace the tab with spaces")
            }
            if Self.opensBlockScalar(String(String.UnicodeScalarView(content))) { blockIndent = spaces }
        }
    }

    // MARK: Nesting

    /// Estimates the nesting depth from the text, over-approximating: flow brackets outside
    /// quotes and comments, plus the indentation and the `- `/`? ` indicators that open a line.
    /// Block nesting needs at least one column per level, so this bounds the real depth.
    private func checkNesting(_ text: String) throws {
        var flow = 0
        var quote: Unicode.Scalar?
        var line = 1, column = 0, lineStart = true, lead = 0
        var previous: Unicode.Scalar = "\n"
        var inComment = false
        for scalar in text.unicodeScalars {
            column += 1
            defer { previous = scalar }
            if scalar == "\n" {
                line += 1; column = 0; lineStart = true; lead = 0; inComment = false
                continue
            }
            if lineStart, scalar == " " || scalar == "-" || scalar == "?" {
                lead += 1
            } else if !inComment {
                lineStart = false
                if let open = quote {
                    if scalar == open { quote = nil }
                } else {
                    switch scalar {
                    case "\"", "'": if " \n\t-?[{,:".unicodeScalars.contains(previous) { quote = scalar }
                    case "#": if previous == " " || previous == "\t" { inComment = true }
                    case "[", "{": flow += 1
                    case "]", "}": flow = max(0, flow - 1)
                    default: break
                    }
                }
            }
            if flow + lead / 2 > Self.maxDepth {
                throw SpecError(file: file, line: line, column: line == 1 ? column + columnOffset : column, keyPath: "",
                                message: "nested more than \(Self.maxDepth) levels deep; refusing to parse it")
            }
        }
    }

    /// True for lines ending in a block scalar header (`key: |`, `- >-`, `key: |2 # comment`).
    private static func opensBlockScalar(_ line: String) -> Bool {
        var text = Substring(line)
        if let hash = text.range(of: " #") { text = text[..<hash.lowerBound] }
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard let last = trimmed.split(separator: " ").last, let first = last.first, first == "|" || first == ">" else {
            return false
        }
        return last.dropFirst().allSatisfy { "+-123456789".contains($0) } && (trimmed.count == last.count
            || trimmed.dropLast(last.count).trimmingCharacters(in: .whitespaces).hasSuffix(":")
            || trimmed.dropLast(last.count).trimmingCharacters(in: .whitespaces).hasSuffix("-"))
    }

    // MARK: Aliases

    static let aliasMarker: Unicode.Scalar = "\u{E000}"

    /// Walks the alias-free copy in document order, counting the nodes the real document expands to.
    private func checkAliasExpansion(_ root: Node) throws {
        var sizes: [String: Int] = [:]     // anchor -> expanded size of its node (latest definition wins)
        var total = 0
        func visit(_ node: Node, _ path: String) throws -> Int {
            var size = 1
            switch node {
            case .scalar(let scalar):
                if scalar.style == .plain, scalar.string.unicodeScalars.first == Self.aliasMarker {
                    let name = String(String.UnicodeScalarView(scalar.string.unicodeScalars.dropFirst()))
                    size = sizes[name] ?? 1
                    total = min(total + size - 1, Int.max / 4)
                }
            case .sequence(let sequence):
                for (index, item) in sequence.enumerated() {
                    size = min(size + (try visit(item, "\(path)[\(index)]")), Int.max / 4)
                }
            case .mapping(let mapping):
                for (key, value) in mapping {
                    let name = key.scalar?.string ?? "?"
                    let child = path.isEmpty ? name : "\(path).\(name)"
                    size = min(size + (try visit(key, child)) + (try visit(value, child)), Int.max / 4)
                }
            case .alias:
                break
            }
            total += 1
            if total > Self.aliasNodeLimit {
                throw SpecError(location(node.mark), path,
                                "aliases expand the document to more than \(Self.aliasNodeLimit) nodes; refusing it (a YAML \"billion laughs\"?)",
                                hint: "a spec needs only a few small aliases; write the values out")
            }
            if let anchor = node.anchor { sizes[anchor.rawValue] = size }
            return size
        }
        _ = try visit(root, "")
    }

    // MARK: Composing

    /// Composes `text` and hands the root to `body` while the parser (which owns the anchors) lives.
    private func withComposed<T>(_ text: String, _ body: (Node?) throws -> T) throws -> T {
        var scratch = Array(text.unicodeScalars)
        var renamed: [(mark: Mark, key: String)] = []
        var duplicate: (key: String, first: Mark)?
        while true {
            let source = renamed.isEmpty ? text : String(String.UnicodeScalarView(scratch))
            do {
                // `.basic`: plain scalars keep an empty tag and `SpecNode` resolves them itself
                // (`ScalarResolver`), so Yams' default resolver would only compile its seven ICU
                // regular expressions, ~2 ms in every process that reads a spec (each worker does).
                let parser = try Parser(yaml: source, resolver: .basic, encoding: .utf8)
                let root = try parser.singleRoot()
                if let duplicate {
                    throw secondOccurrence(of: duplicate.key, after: duplicate.first, in: root, renamed: renamed)
                }
                return try withExtendedLifetime(parser) { try body(root) }
            } catch let error as YamlError {
                guard case .duplicatedKeysInMapping(let keys, let context) = error, let key = keys.first else {
                    throw convert(error, duplicateFallback: duplicate)
                }
                if duplicate == nil { duplicate = (key, context.mark) }
                guard renamed.count < 16, rename(at: context.mark, in: &scratch, index: renamed.count) else {
                    throw duplicateError(duplicate!.key, at: location(duplicate!.first), path: duplicate!.key)
                }
                renamed.append((context.mark, key))
            }
        }
    }

    /// Replaces the first character of the key at `mark` with a unique private-use character.
    private func rename(at mark: Mark, in scalars: inout [Unicode.Scalar], index: Int) -> Bool {
        var line = 1, offset = 0
        while line < mark.line, offset < scalars.count {
            if scalars[offset] == "\n" { line += 1 }
            offset += 1
        }
        offset += mark.column - 1
        guard offset < scalars.count else { return false }
        if scalars[offset] == "\"" || scalars[offset] == "'" { offset += 1 }
        guard offset < scalars.count, !"\"'&!*\n".unicodeScalars.contains(scalars[offset]) else { return false }
        scalars[offset] = Unicode.Scalar(0xE100 + UInt32(index))!
        return true
    }

    /// Finds the mapping holding the renamed first occurrence and returns the error for the second.
    private func secondOccurrence(of key: String, after first: Mark, in root: Node?,
                                  renamed: [(mark: Mark, key: String)]) -> SpecError {
        func original(_ node: Node) -> String? {
            guard let mark = node.mark, let hit = renamed.first(where: { $0.mark.line == mark.line && $0.mark.column == mark.column })
            else { return node.scalar?.string }
            return hit.key
        }
        func search(_ node: Node, _ path: String) -> SpecError? {
            switch node {
            case .mapping(let mapping):
                let keys = Array(mapping.keys)
                if keys.contains(where: { $0.mark?.line == first.line && $0.mark?.column == first.column }) {
                    let same = keys.filter { original($0) == key }
                    if same.count > 1 {
                        return duplicateError(key, at: location(same[1].mark), path: path.isEmpty ? key : "\(path).\(key)")
                    }
                }
                for (k, value) in mapping {
                    let name = original(k) ?? "?"
                    if let found = search(value, path.isEmpty ? name : "\(path).\(name)") { return found }
                }
            case .sequence(let sequence):
                for (index, item) in sequence.enumerated() {
                    if let found = search(item, "\(path)[\(index)]") { return found }
                }
            default:
                break
            }
            return nil
        }
        return root.flatMap { search($0, "") } ?? duplicateError(key, at: location(first), path: key)
    }

    /// The anchor name after the `*` at `mark`.
    private static func aliasName(at mark: Mark, in text: String) -> String {
        let lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false)
        guard mark.line - 1 < lines.count else { return "" }
        let rest = lines[mark.line - 1].dropFirst(mark.column)
        return String(String.UnicodeScalarView(rest.prefix { Anchor.permittedCharacters.contains($0) }))
    }

    private func duplicateError(_ key: String, at location: SourceLocation, path: String) -> SpecError {
        SpecError(location, path, "duplicate key", hint: "each key may appear once per mapping; remove one of them")
    }

    /// A Yams/libyaml error as a SpecError at its problem mark.
    private func convert(_ error: YamlError, duplicateFallback: (key: String, first: Mark)?) -> SpecError {
        if let duplicate = duplicateFallback {
            return duplicateError(duplicate.key, at: location(duplicate.first), path: duplicate.key)
        }
        switch error {
        case .scanner(let context, let problem, let mark, let text),
             .parser(let context, let problem, let mark, let text),
             .composer(let context, let problem, let mark, let text):
            var message = "invalid YAML: \(problem)"
            if problem == "but found another document" {
                return SpecError(location(mark), "", "invalid YAML: a spec is a single document, but a second one starts here",
                                 hint: "remove the second `---` (or everything after it)")
            }
            if problem == "found undefined alias" {
                let name = Self.aliasName(at: mark, in: text)
                return SpecError(location(mark), "", "invalid YAML: alias *\(name) has no anchor &\(name) before it")
            }
            if let context {
                message += " (\(context.text) at \(location(context.mark).line):\(location(context.mark).column))"
            }
            return SpecError(location(mark), "", message)
        case .reader(let problem, let offset, _, let yaml):
            var where_ = location(nil)
            if let offset {
                let prefix = yaml.unicodeScalars.prefix(offset)
                let line = prefix.filter { $0 == "\n" }.count + 1
                let column = prefix.count - (prefix.lastIndex(of: "\n").map { prefix.distance(from: prefix.startIndex, to: $0) + 1 } ?? 0)
                where_ = SourceLocation(file: file, line: line, column: column + 1 + (line == 1 ? columnOffset : 0))
            }
            return SpecError(where_, "", "unreadable input: \(problem)")
        default:
            return SpecError(location(nil), "", "invalid YAML: \(error)")
        }
    }
}
