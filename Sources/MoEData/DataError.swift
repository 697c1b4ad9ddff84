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

    public var description: String {
        switch self {
        case .missingDataset(let file, let name):
            return "\(file): missing dataset '\(name)'"
        case .wrongType(let file, let name, let expected, let found):
            return "\(file): dataset '\(name)' has type \(found), expected \(expected)"
        case .shapeMismatch(let file, let message):
            return "\(file): \(message)"
        case .negativeLabel(let file, let index, let value):
            return "\(file): label \(value) of sample \(index) is negative"
        case .labelOutOfRange(let file, let index, let value, let classes):
            return "\(file): label \(value) of sample \(index) is not below the class count \(classes)"
        case .negativeDomain(let file, let index, let value):
            return "\(file): domain \(value) of sample \(index) is negative"
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
        }
    }
}

/// Runs `body`, wrapping any `HDF5Error` into `DataError.hdf5`.
func wrappingHDF5<R>(_ body: () throws -> R) throws -> R {
    do {
        return try body()
    } catch let error as HDF5Error {
        throw DataError.hdf5(error)
    }
}
