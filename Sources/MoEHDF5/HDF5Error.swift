import CHDF5

/// The one error type of MoEHDF5.
///
/// Every case names the file and, where there is one, the object path inside it, so that a
/// message reaching the user says *where* as well as *what*. `message` is HDF5's own description
/// of the innermost entry of its error stack (the most specific one, e.g.
/// "object 'x' doesn't exist" rather than "unable to open dataset").
public enum HDF5Error: Error, CustomStringConvertible, Equatable {
    /// Opening, creating or closing a file failed.
    case file(path: String, operation: String, message: String)
    /// An operation on an object (group, dataset, attribute, link) failed inside HDF5.
    case object(file: String, object: String, operation: String, message: String)
    /// The named object or attribute does not exist.
    case notFound(file: String, object: String)
    /// The stored element type is not the one asked for (e.g. reading an integer dataset as Float).
    case typeMismatch(file: String, object: String, expected: String, found: String)
    /// The shape of the data given or stored does not fit the request.
    case shapeMismatch(file: String, object: String, message: String)
    /// A POSIX call (fsync, rename, unlink) around a file failed.
    case system(path: String, operation: String, message: String)

    /// The file the error is about.
    public var file: String {
        switch self {
        case .file(let path, _, _), .system(let path, _, _): return path
        case .object(let file, _, _, _), .notFound(let file, _),
             .typeMismatch(let file, _, _, _), .shapeMismatch(let file, _, _): return file
        }
    }

    /// The object path inside the file, if the error is about an object.
    public var object: String? {
        switch self {
        case .file, .system: return nil
        case .object(_, let object, _, _), .notFound(_, let object),
             .typeMismatch(_, let object, _, _), .shapeMismatch(_, let object, _): return object
        }
    }

    public var description: String {
        switch self {
        case .file(let path, let operation, let message):
            return "\(path): cannot \(operation): \(message)"
        case .object(let file, let object, let operation, let message):
            return "\(file):\(object): cannot \(operation): \(message)"
        case .notFound(let file, let object):
            return "\(file):\(object): no such object"
        case .typeMismatch(let file, let object, let expected, let found):
            return "\(file):\(object): expected \(expected) data, found \(found)"
        case .shapeMismatch(let file, let object, let message):
            return "\(file):\(object): shape mismatch: \(message)"
        case .system(let path, let operation, let message):
            return "\(path): \(operation) failed: \(message)"
        }
    }
}

/// One-time library set-up: HDF5 prints its error stack to stderr on every failure by default;
/// we report errors through `HDF5Error` instead, so automatic printing is switched off once,
/// before the first file is opened or created.
enum HDF5Library {
    private static let initialized: Bool = {
        _ = H5open()
        _ = H5Eset_auto2(moe_H5E_DEFAULT(), nil, nil)
        return true
    }()

    static func ensureInitialized() {
        _ = initialized
    }
}

/// Collects the descriptions of the current thread's HDF5 error stack.
private final class ErrorStackCollector {
    var descriptions: [String] = []
}

/// The most specific description on HDF5's current error stack (walked from the innermost
/// entry outwards), then clears the stack. Must be called right after the failing call, before
/// any other HDF5 API call resets the stack.
func hdf5ErrorMessage() -> String {
    let collector = ErrorStackCollector()
    withExtendedLifetime(collector) {
        let context = Unmanaged.passUnretained(collector).toOpaque()
        _ = H5Ewalk2(moe_H5E_DEFAULT(), H5E_WALK_UPWARD, { _, entry, context in
            guard let entry, let context else { return 0 }
            let collector = Unmanaged<ErrorStackCollector>.fromOpaque(context).takeUnretainedValue()
            if let desc = entry.pointee.desc {
                let text = String(cString: desc)
                if !text.isEmpty { collector.descriptions.append(text) }
            }
            return 0
        }, context)
    }
    _ = H5Eclear2(moe_H5E_DEFAULT())
    return collector.descriptions.first ?? "unknown HDF5 error"
}

/// Throws `.object` with HDF5's message when an HDF5 status (herr_t / htri_t) is negative.
@inline(__always)
func check(_ status: Int32, file: String, object: String, _ operation: @autoclosure () -> String) throws {
    if status < 0 {
        throw HDF5Error.object(file: file, object: object, operation: operation(), message: hdf5ErrorMessage())
    }
}

/// Returns the identifier, or throws `.object` with HDF5's message when it is negative.
@inline(__always)
func checkID(_ id: hid_t, file: String, object: String, _ operation: @autoclosure () -> String) throws -> hid_t {
    if id < 0 {
        throw HDF5Error.object(file: file, object: object, operation: operation(), message: hdf5ErrorMessage())
    }
    return id
}
