import Foundation
import MoEHDF5

/// The one error type of MoEData. Every case names its source: a file path, or a pseudo-source
/// such as `"synthetic"` or `"dataset"` for data built in memory, so the message says where.
public enum DataError: Error, CustomStringConvertible, Equatable {
    /// A required dataset (`x`, `y`) is absent from an HDF5 data file.
    case missingDataset(file: String, name: String)
    /// A dataset has an element type the loader does not accept.
    case wrongType(file: String, name: String, expected: String, found: String)
    /// Shapes or lengths disagree (x not 2-D, `y` length ≠ rows of `x`, ...).
    case shapeMismatch(file: String, message: String)
    /// A label is negative.
    case negativeLabel(file: String, index: Int, value: Int)
    /// A label is not below the declared number of classes.
    case labelOutOfRange(file: String, index: Int, value: Int, classes: Int)
    /// A domain id is negative.
    case negativeDomain(file: String, index: Int, value: Int)
    /// A CSV field is not a number (or a label/domain is not an integer).
    case badNumber(file: String, line: Int, column: String, text: String)
    /// A CSV row has the wrong number of fields.
    case wrongColumnCount(file: String, line: Int, expected: Int, found: Int)
    /// The CSV header is unusable (no label column, duplicates, no features, empty file).
    case badHeader(file: String, message: String)
    /// The file could not be read at all.
    case unreadable(file: String, message: String)
    /// A parameter (split fractions, batch size, shard count, generator settings) is invalid.
    case invalidParameter(source: String, name: String, message: String)
    /// An HDF5 error underneath (it names file and object itself).
    case hdf5(HDF5Error)
    /// A file said to be HDF5 is not one (missing, a directory, empty, no signature).
    case notHDF5(file: String, problem: H5Signature.Problem)
    /// An HDF5 file that HDF5 cannot read: truncated, or damaged inside. `detail` is one line.
    case damaged(file: String, detail: String)
    /// A feature is NaN or infinite: `x[row, column]`, 0-based as in numpy/h5py.
    case nonFinite(file: String, name: String, row: Int, column: Int, value: Float)
    /// A dataset too large to hold in memory (its declared shape, in bytes as loaded).
    case tooLarge(file: String, name: String, shape: [Int], bytes: Double, memory: Double)
    /// A negative label or domain id in a CSV file, at its 1-based line.
    case negativeInCSV(file: String, line: Int, column: String, value: Int)
    /// A CSV field that is a number, but not the kind the column needs: NaN or infinite in a
    /// feature column, a fraction in the label or domain column.
    case wrongNumberInCSV(file: String, line: Int, column: String, text: String, need: String)
    /// A text corpus path (`data.path`) that does not exist.
    case corpusMissing(path: String)
    /// A path that exists but is not a text corpus in any accepted layout; `reason` says why.
    case notACorpus(path: String, reason: String)
    /// A text corpus with no domain at all.
    case noDomains(source: String)
    /// A domain with no text (0 bytes, or 0 tokens in every split).
    case emptyDomain(source: String, domain: String)
    /// A domain whose stream in `split` is shorter than one window of `needed` = context + 1 tokens.
    case streamTooShort(source: String, domain: String, split: String, tokens: Int, needed: Int)
    /// A token id outside `0..<vocabulary` in a stored token dataset (`dataset[index]`).
    case tokenOutOfRange(source: String, dataset: String, index: Int, value: Int, vocabulary: Int)

    public var description: String {
        switch self {
        case .missingDataset(let file, let name):
            return "\(file): missing dataset '\(name)'"
        case .wrongType(let file, let name, let expected, let found):
            return "\(file): dataset '\(name)' has type \(found), expected \(expected)"
        case .shapeMismatch(let file, let message):
            return "\(file): \(message)"
        case .negativeLabel(let file, let index, let value):
            return "\(file): y[\(index)] is \(value): labels are class ids 0, 1, 2, … (dataset 'y', row \(index))"
        case .labelOutOfRange(let file, let index, let value, let classes):
            return "\(file): y[\(index)] is \(value), not below the class count \(classes) (dataset 'y', row \(index))"
        case .negativeDomain(let file, let index, let value):
            return "\(file): domain[\(index)] is \(value): domain ids are 0, 1, 2, … (dataset 'domain', row \(index))"
        case .badNumber(let file, let line, let column, let text):
            return "\(file):\(line): column '\(column)': '\(text)' is not a valid number"
        case .wrongColumnCount(let file, let line, let expected, let found):
            return "\(file):\(line): expected \(expected) columns, found \(found)"
        case .badHeader(let file, let message):
            return "\(file):1: \(message)"
        case .unreadable(let file, let message):
            return "\(file): cannot read: \(message)"
        case .invalidParameter(let source, let name, let message):
            return "\(source): \(name): \(message)"
        case .hdf5(let error):
            return error.description
        case .notHDF5(let file, let problem):
            return "\(file): \(problem)"
        case .damaged(let file, let detail):
            return "\(file): the HDF5 file is damaged or truncated: \(detail)"
        case .nonFinite(let file, let name, let row, let column, let value):
            return "\(file): \(name)[\(row), \(column)] is \(value) (dataset '\(name)', row \(row), column \(column)); features must be finite numbers"
        case .tooLarge(let file, let name, let shape, let bytes, let memory):
            return "\(file): dataset '\(name)' has shape \(shape), \(gigabytes(bytes)) in memory, more than this machine has (\(gigabytes(memory)))"
        case .wrongNumberInCSV(let file, let line, let column, let text, let need):
            return "\(file):\(line): column '\(column)': '\(text)' is not \(need)"
        case .corpusMissing(let path):
            return "\(path): no such text corpus (give a folder with one .txt file or sub-folder per domain, or an HDF5 corpus file)"
        case .notACorpus(let path, let reason):
            return "\(path): not a text corpus: \(reason)"
        case .noDomains(let source):
            return "\(source): the text corpus has no domains"
        case .emptyDomain(let source, let domain):
            return "\(source): domain '\(domain)' is empty (no text)"
        case .streamTooShort(let source, let domain, let split, let tokens, let needed):
            return "\(source): domain '\(domain)' has \(tokens) \(split) tokens, fewer than context + 1 = \(needed) for one window"
        case .tokenOutOfRange(let source, let dataset, let index, let value, let vocabulary):
            return "\(source): \(dataset)[\(index)] is \(value), not a token id of the vocabulary 0..<\(vocabulary)"
        case .negativeInCSV(let file, let line, let column, let value):
            let what = column == "domain" ? "domain ids" : "labels are class ids"
            return "\(file):\(line): column '\(column)': \(value) is negative; \(what) 0, 1, 2, …"
        }
    }
}

/// "1.5 GB", "3.0e+06 GB".
private func gigabytes(_ bytes: Double) -> String {
    let g = bytes / 1e9
    return g < 1e5 ? String(format: "%.1f GB", g) : String(format: "%.1e GB", g)
}

/// Runs `body`, wrapping any `HDF5Error` into a `DataError`: reading failures of a file that
/// opened become one-line `.damaged` errors (HDF5's own messages span lines and name internals),
/// the rest `.hdf5`.
/// `source`, when given, replaces the file path in `.damaged` (the path as the user wrote it).
func wrappingHDF5<R>(source: String? = nil, _ body: () throws -> R) throws -> R {
    do {
        return try body()
    } catch let error as HDF5Error {
        throw source.map { DataError(reading: error, source: $0) } ?? DataError(reading: error)
    }
}

extension DataError {
    /// The data-file view of an HDF5 failure (see `wrappingHDF5`): a file that does not open, or
    /// a read that fails, is damaged; anything else (a failed write: a full disk, say) stays
    /// `.hdf5`, so its system error still reaches the failure classes. `source`, when given, names
    /// the file instead of HDF5's path.
    public init(reading error: HDF5Error, source: String) {
        self = DataError(reading: error)
        if case .damaged(_, let detail) = self { self = .damaged(file: source, detail: detail) }
    }

    init(reading error: HDF5Error) {
        switch error {
        case .file(let path, let operation, let message) where operation.hasPrefix("open"):
            self = .damaged(file: path, detail: DataError.oneLine(message))
        case .object(let file, let object, let operation, let message)
            where operation.hasPrefix("read") || message.contains("read failed") || message.contains("truncated"):
            self = .damaged(file: file, detail: "cannot \(operation) \(object): " + DataError.oneLine(message))
        default:
            self = .hdf5(error)
        }
    }

    /// HDF5's message in one line: `truncated file: eof = 3000, …, stored_eof = 10048` becomes
    /// "the file has 3000 of its 10048 bytes"; `file read failed: time = …, error message =
    /// 'Is a directory', …` becomes "file read failed: Is a directory"; else the first line.
    static func oneLine(_ message: String) -> String {
        func number(after key: String) -> String? {
            guard let r = message.range(of: key + " = ") else { return nil }
            let digits = message[r.upperBound...].prefix { $0.isNumber }
            return digits.isEmpty ? nil : String(digits)
        }
        if message.contains("truncated file"), let eof = number(after: "eof"), let stored = number(after: "stored_eof") {
            return "the file has \(eof) of its \(stored) bytes"
        }
        if let r = message.range(of: "error message = '") {
            let reason = message[r.upperBound...].prefix { $0 != "'" }
            let head = message.components(separatedBy: ": time =").first ?? "I/O failed"
            return head.trimmingCharacters(in: .whitespacesAndNewlines) + ": " + reason
        }
        let first = message.split(whereSeparator: \.isNewline).first.map(String.init) ?? message
        return first.trimmingCharacters(in: .whitespaces)
    }
}
