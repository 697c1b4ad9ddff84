import Foundation

/// Just enough Markdown to test the repository's documentation against the code: fenced code
/// blocks, `##` sections, relative links, and GitHub's heading anchors.
struct Markdown {
    let path: String
    let text: String

    init(_ relativePath: String) throws {
        path = relativePath
        text = try String(contentsOf: CLI.repositoryRoot.appendingPathComponent(relativePath), encoding: .utf8)
    }

    init(path: String, text: String) {
        self.path = path
        self.text = text
    }

    /// The bodies of the fenced code blocks tagged `language` (```python …```), in order.
    func codeBlocks(_ language: String) -> [String] {
        var blocks: [String] = [], current: [String]? = nil, inOther = false
        for line in text.components(separatedBy: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if current != nil {
                if trimmed == "```" { blocks.append(current!.joined(separator: "\n") + "\n"); current = nil } else { current!.append(line) }
            } else if inOther {
                if trimmed == "```" { inOther = false }
            } else if trimmed.hasPrefix("```") {
                if trimmed == "```" + language { current = [] } else { inOther = true }
            }
        }
        return blocks
    }

    /// The text from the heading line that contains `heading` (any level) to the next heading
    /// of the same or a higher level (a `#` comment inside a code block is no heading).
    func section(containing heading: String) -> String? {
        let lines = text.components(separatedBy: "\n")
        var inCode = false
        let levels = lines.map { line -> Int? in
            if line.trimmingCharacters(in: .whitespaces).hasPrefix("```") { inCode.toggle(); return nil }
            let hashes = line.prefix { $0 == "#" }.count
            return !inCode && hashes > 0 && line.dropFirst(hashes).hasPrefix(" ") ? hashes : nil
        }
        guard let start = lines.indices.first(where: { levels[$0] != nil && lines[$0].contains(heading) }) else { return nil }
        let end = lines.indices.dropFirst(start + 1).first { levels[$0].map { $0 <= levels[start]! } ?? false } ?? lines.count
        return lines[start..<end].joined(separator: "\n")
    }

    /// The targets of inline links and images: `[text](target)` and `![alt](target)`.
    var linkTargets: [String] {
        let regex = try! NSRegularExpression(pattern: #"\]\(([^)\s]+)\)"#)
        let range = NSRange(text.startIndex..., in: text)
        return regex.matches(in: text, range: range).map { String(text[Range($0.range(at: 1), in: text)!]) }
    }

    /// GitHub's anchors of the headings (lower case, punctuation dropped, spaces → hyphens).
    var anchors: Set<String> {
        var out = Set<String>(), inCode = false
        for line in text.components(separatedBy: "\n") {
            if line.trimmingCharacters(in: .whitespaces).hasPrefix("```") { inCode.toggle(); continue }
            guard !inCode, line.hasPrefix("#") else { continue }
            let title = line.drop { $0 == "#" }.trimmingCharacters(in: .whitespaces)
            out.insert(Self.anchor(title))
        }
        return out
    }

    static func anchor(_ title: String) -> String {
        String(title.lowercased().compactMap { c -> Character? in
            if c == " " { return "-" }
            return c.isLetter || c.isNumber || c == "-" || c == "_" ? c : nil
        })
    }
}
