import CHDF5
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
    /// A system call on a file failed with `errno` `code`: one of ours around a file (writing an
    /// atomic file's image, fsync, rename) or one inside HDF5's file driver (HDF5 reports its
    /// errno on its error stack). `operation` is what was being done, as a gerund ("writing").
    /// The caller decides from `code` whether retrying can help (`ENOSPC` cannot).
    case system(path: String, operation: String, code: Int32)

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
        case .system(let path, let operation, let code):
            return "\(systemErrorText(code)) while \(operation) \(path)"
        }
    }

    /// The `errno` of a failed system call (`.system`), else nil.
    public var systemErrorCode: Int32? {
        if case .system(_, _, let code) = self { return code }
        return nil
    }
}

/// The C library's text for `errno` `code`, starting in lower case to sit inside a sentence
/// ("no space left on device", "permission denied").
public func systemErrorText(_ code: Int32) -> String {
    let text = String(cString: strerror(code))
    guard let first = text.first, text.dropFirst().first?.isLowercase ?? true else { return text }
    return first.lowercased() + text.dropFirst()
}

/// One-time library set-up, before the first file is opened or created:
/// - HDF5 prints its error stack to stderr on every failure by default; we report errors through
///   `HDF5Error` instead, so automatic printing is switched off.
/// - HDF5's exit handler (`H5_term_library`) is not installed. It closes every identifier still
///   open, and HDF5 1.10 keeps the identifier of a file whose `H5Fclose` failed (its flush hit a
///   full disk) while freeing its state: the exit handler then dereferences freed memory and the
///   process dies with SIGSEGV after it has already reported its error. Every file this project
///   writes is closed (and checked) before it is renamed into place (`createAtomically`), and
///   files open for reading need no closing at exit, so nothing is lost without it.
enum HDF5Library {
    private static let initialized: Bool = {
        _ = H5dont_atexit()
        _ = H5open()
        _ = H5Eset_auto2(moe_H5E_DEFAULT(), nil, nil)
        return true
    }()

    static func ensureInitialized() {
        _ = initialized
    }
}

extension H5File {
    /// Whether the calling thread may use HDF5 while another thread of the process does (each
    /// with files of its own): true when the library is built thread-safe (one global lock
    /// around every call, as Debian's libhdf5 is). It then also turns HDF5's automatic error
    /// printing off for the calling thread, which a thread-safe build keeps per thread.
    public static func isUsableFromThisThread() -> Bool {
        HDF5Library.ensureInitialized()
        var safe: hbool_t = false
        guard H5is_library_threadsafe(&safe) >= 0, safe else { return false }
        _ = H5Eset_auto2(moe_H5E_DEFAULT(), nil, nil)
        return true
    }
}

/// Collects the descriptions of the current thread's HDF5 error stack.
private final class ErrorStackCollector {
    var descriptions: [String] = []
}

/// What HDF5's error stack says about the call that just failed: its most specific description
/// and, when a system call inside HDF5's file driver failed, that call's `errno` (HDF5 writes it
/// into the description as "errno = 28, error message = '…'", together with a timestamp, the
/// buffer address and sizes, none of which is for users).
struct HDF5Failure {
    var message: String
    var code: Int32?
}

/// Reads HDF5's current error stack (walked from the innermost entry outwards), then clears it.
/// Must be called right after the failing call, before any other HDF5 API call resets the stack.
func hdf5Failure() -> HDF5Failure {
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
    if let code = collector.descriptions.lazy.compactMap(systemErrno).first {
        return HDF5Failure(message: systemErrorText(code), code: code)
    }
    let first = collector.descriptions.first ?? "unknown HDF5 error"
    return HDF5Failure(message: first.split(whereSeparator: \.isNewline).joined(separator: " "), code: nil)
}

/// The `errno = N` HDF5's file drivers write into their error descriptions, if any.
private func systemErrno(_ description: String) -> Int32? {
    guard let range = description.firstRange(of: "errno = ") else { return nil }
    let digits = description[range.upperBound...].prefix(while: \.isNumber)
    return Int32(digits).flatMap { $0 > 0 ? $0 : nil }
}

/// The message of `hdf5Failure()`: the system's text when a system call failed, else HDF5's
/// most specific description (e.g. "object 'x' doesn't exist" rather than "unable to open
/// dataset").
func hdf5ErrorMessage() -> String {
    hdf5Failure().message
}

/// The error of a failed file-level call (`H5Fopen`, `H5Fcreate`, `H5Fflush`): `.system` when
/// HDF5's driver reports a failed system call (so callers see the `errno`), else `.file`.
func fileError(path: String, operation: String, while gerund: String) -> HDF5Error {
    let failure = hdf5Failure()
    if let code = failure.code { return .system(path: path, operation: gerund, code: code) }
    return .file(path: path, operation: operation, message: failure.message)
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
