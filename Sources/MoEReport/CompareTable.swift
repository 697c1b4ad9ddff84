import Foundation

/// A failure of `moe-run report`, with the CLI contract's exit code (2: bad usage or input).
public struct ReportError: Error, CustomStringConvertible {
    public var description: String
    public var exitCode: Int32 = 2
}

/// A table of text cells with named columns (a sweep's summary.csv, a run's models).
public struct CompareTable {
    public var columns: [String]
    public var rows: [[String]]

    public init(columns: [String], rows: [[String]]) {
        self.columns = columns
        self.rows = rows
    }

    /// Reads a CSV file as written by `moe-run sweep` (RFC 4180 quoting, first line = header).
    public static func csv(path: String) throws -> CompareTable {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ReportError(description: "\(path): cannot read the file")
        }
        var records = parseCSV(text)
        guard !records.isEmpty else { throw ReportError(description: "\(path): empty file") }
        let header = records.removeFirst()
        return CompareTable(columns: header, rows: records.map { r in (0..<header.count).map { $0 < r.count ? r[$0] : "" } })
    }

    static func parseCSV(_ text: String) -> [[String]] {
        var records: [[String]] = [], record: [String] = [], field = ""
        var quoted = false, afterQuote = false
        var chars = Array(text)[...]
        while let c = chars.popFirst() {
            if quoted {
                if c == "\"" {
                    if chars.first == "\"" { field.append("\""); chars.removeFirst() } else { quoted = false; afterQuote = true }
                } else { field.append(c) }
                continue
            }
            switch c {
            case "\"" where field.isEmpty && !afterQuote: quoted = true
            case ",": record.append(field); field = ""; afterQuote = false
            case "\n", "\r\n":
                record.append(field); records.append(record); record = []; field = ""; afterQuote = false
            default: field.append(c)
            }
        }
        if !field.isEmpty || !record.isEmpty { record.append(field); records.append(record) }
        return records
    }

    public func column(_ name: String) -> [String]? {
        columns.firstIndex(of: name).map { i in rows.map { $0[i] } }
    }

    /// The rows sorted by `column`: descending for accuracy columns, ascending for every other
    /// (losses, fractions, times, swept values); numbers compare as numbers, empty cells last,
    /// ties keep their order. Throws when there is no such column, naming the columns.
    public func sorted(by column: String) throws -> CompareTable {
        guard let c = columns.firstIndex(of: column) else {
            throw ReportError(description: "--sort: unknown column \"\(column)\"; the columns are: " + columns.joined(separator: ", "))
        }
        let descending = column.contains("accuracy")
        let indexed = rows.enumerated().sorted { a, b in
            let x = a.element[c], y = b.element[c]
            if x.isEmpty != y.isEmpty { return !x.isEmpty }
            if let p = Double(x), let q = Double(y), p != q { return descending ? p > q : p < q }
            if Double(x) == nil || Double(y) == nil, x != y { return descending ? x > y : x < y }
            return a.offset < b.offset
        }
        return CompareTable(columns: columns, rows: indexed.map(\.element))
    }

    /// Only the columns whose cells differ between rows, plus those in `keep`; `drop` never.
    public func varying(keep: Set<String>, drop: Set<String>) -> CompareTable {
        let chosen = columns.indices.filter { i in
            let name = columns[i]
            if drop.contains(name) { return false }
            if keep.contains(name) { return true }
            return Set(rows.map { $0[i] }).count > 1
        }
        return CompareTable(columns: chosen.map { columns[$0] }, rows: rows.map { r in chosen.map { r[$0] } })
    }

    /// Aligned plain text: numbers right-aligned, text left-aligned, two spaces between columns.
    public func text() -> String {
        let widths = columns.indices.map { i in ([columns[i]] + rows.map { $0[i] }).map(\.count).max() ?? 0 }
        let numeric = columns.indices.map { i in rows.allSatisfy { $0[i].isEmpty || Double($0[i]) != nil } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                return numeric[i] ? pad + cell : cell + pad
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        return ([line(columns), line(widths.map { String(repeating: "-", count: $0) })] + rows.map(line)).joined(separator: "\n")
    }

    /// An HTML `<table>` of the cells.
    public func html() -> String {
        var out = "<table>\n<tr>" + columns.map { "<th>\(SVG.escape($0))</th>" }.joined() + "</tr>\n"
        for r in rows { out += "<tr>" + r.map { "<td>\(SVG.escape($0))</td>" }.joined() + "</tr>\n" }
        return out + "</table>\n"
    }
}
