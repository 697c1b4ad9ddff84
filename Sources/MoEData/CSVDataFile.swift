import Foundation
import MoECore
import MoEHDF5

/// CSV data files: a header row, then one sample per row.
///
/// - The label column is named `y` or `label` (exactly one of them); labels are integers
///   (an integral decimal such as `3.0` is accepted).
/// - An optional `domain` column holds integer domain ids.
/// - Every other column is a feature, in header order.
/// - Fields are separated by commas and trimmed of spaces; quoting is not supported (numeric
///   data needs none). Blank lines are skipped; `\r\n` line ends are accepted.
///
/// Errors give the file and 1-based line: a field that is not a number, or a row with the
/// wrong number of fields.
extension Dataset {
    /// Loads a CSV data file; `source` names it in errors (default: `path`). A binary file (an
    /// HDF5 file named `.csv`, say) is refused as not being CSV text.
    public static func load(csv path: String, source: String? = nil) throws -> Dataset {
        let name = source ?? path
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
            throw DataError.unreadable(file: name, message: !exists ? "no such file" : isDirectory.boolValue ? "it is a directory" : error.localizedDescription)
        }
        if H5Signature.problem(at: path) == nil {
            throw DataError.badHeader(file: name, message: "this is an HDF5 file, not CSV text (name it .h5, or set data.format: hdf5)")
        }
        guard !data.contains(0), let text = String(data: data, encoding: .utf8) else {
            throw DataError.unreadable(file: name, message: "not CSV text (binary data or not UTF-8)")
        }
        return try parseCSV(text, source: name)
    }

    /// Parses CSV text; `source` names it in error messages.
    public static func parseCSV(_ text: String, source: String) throws -> Dataset {
        // Split on any line break; "\r\n" is one Character in Swift, so it counts as one break.
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated().makeIterator()
        // Header: the first non-blank line.
        var headerFields: [String] = []
        while let (_, line) = lines.next() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            headerFields = trimmed.split(separator: ",", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces) }
            break
        }
        guard !headerFields.isEmpty else { throw DataError.badHeader(file: source, message: "the file is empty") }
        let layout = try CSVLayout(header: headerFields, source: source)

        var features: [Float] = []
        var labels: [Int] = []
        var domains: [Int] = []
        var row = [Float](repeating: 0, count: layout.featureColumns.count)
        while let (index, line) = lines.next() {
            let lineNumber = index + 1
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            let fields = trimmed.split(separator: ",", omittingEmptySubsequences: false)
            guard fields.count == headerFields.count else {
                throw DataError.wrongColumnCount(file: source, line: lineNumber, expected: headerFields.count, found: fields.count)
            }
            for (slot, column) in layout.featureColumns.enumerated() {
                let field = fields[column].trimmingCharacters(in: .whitespaces)
                guard let value = Float(field) else {
                    throw DataError.badNumber(file: source, line: lineNumber, column: headerFields[column], text: field)
                }
                guard value.isFinite else {
                    throw DataError.wrongNumberInCSV(file: source, line: lineNumber, column: headerFields[column], text: field,
                                                     need: "a finite number; features must be finite numbers")
                }
                row[slot] = value
            }
            features.append(contentsOf: row)
            let label = try integer(fields[layout.labelColumn], line: lineNumber, column: headerFields[layout.labelColumn], source: source)
            guard label >= 0 else {
                throw DataError.negativeInCSV(file: source, line: lineNumber, column: headerFields[layout.labelColumn], value: label)
            }
            labels.append(label)
            if let domainColumn = layout.domainColumn {
                let domain = try integer(fields[domainColumn], line: lineNumber, column: headerFields[domainColumn], source: source)
                guard domain >= 0 else {
                    throw DataError.negativeInCSV(file: source, line: lineNumber, column: "domain", value: domain)
                }
                domains.append(domain)
            }
        }
        let x = Tensor(shape: [labels.count, layout.featureColumns.count], values: features)
        return try Dataset(x: x, y: labels, domain: layout.domainColumn == nil ? nil : domains, source: source)
    }

    /// Parses an integer field (an integral decimal like `3.0` is accepted).
    private static func integer(_ field: Substring, line: Int, column: String, source: String) throws -> Int {
        let text = field.trimmingCharacters(in: .whitespaces)
        if let value = Int(text) { return value }
        if let value = Double(text), value.isFinite, value == value.rounded(), abs(value) < 1e15 { return Int(value) }
        if Double(text) != nil {
            let what = column == "domain" ? "domain ids are 0, 1, 2, …" : "labels are class ids 0, 1, 2, …"
            throw DataError.wrongNumberInCSV(file: source, line: line, column: column, text: text, need: "a whole number; \(what)")
        }
        throw DataError.badNumber(file: source, line: line, column: column, text: text)
    }
}

/// Which CSV columns are features, label and domain.
private struct CSVLayout {
    let featureColumns: [Int]
    let labelColumn: Int
    let domainColumn: Int?

    init(header: [String], source: String) throws {
        if let empty = header.firstIndex(where: \.isEmpty) {
            throw DataError.badHeader(file: source, message: "column \(empty + 1) has an empty name")
        }
        var seen = Set<String>()
        for name in header where !seen.insert(name).inserted {
            throw DataError.badHeader(file: source, message: "column '\(name)' appears twice")
        }
        let labelColumns = header.indices.filter { header[$0] == "y" || header[$0] == "label" }
        if labelColumns.isEmpty, header.allSatisfy({ Double($0) != nil }) {
            throw DataError.badHeader(file: source, message: "the first line must be a header naming the columns (one of them 'y' or 'label'), found numbers")
        }
        guard labelColumns.count == 1 else {
            throw DataError.badHeader(file: source, message: labelColumns.isEmpty
                ? "no label column: name one column 'y' or 'label'"
                : "both 'y' and 'label' columns present: keep one")
        }
        let label = labelColumns[0]
        let domain = header.firstIndex(of: "domain")
        let features = header.indices.filter { $0 != label && $0 != domain }
        guard !features.isEmpty else {
            throw DataError.badHeader(file: source, message: "no feature columns")
        }
        (labelColumn, domainColumn, featureColumns) = (label, domain, features)
    }
}
