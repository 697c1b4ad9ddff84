import Foundation

/// Tells whether a path is an HDF5 file *before* HDF5 opens it, so a user who hands moe-run a
/// directory, an empty file or a CSV named `.h5` gets one plain sentence instead of the library's
/// error stack (`file signature not found`, `errno = 21, 'Is a directory'`).
///
/// HDF5 files carry the 8-byte signature `\x89HDF\r\n\x1a\n` at offset 0, or after a user block
/// at offset 512, 1024, 2048, … (HDF5 File Format Specification, "Format Signature").
public enum H5Signature {
    /// Why a path is not an HDF5 file.
    public enum Problem: Equatable, Sendable, CustomStringConvertible {
        case missing
        case directory
        case unreadable(String)
        case empty
        /// No signature; `text` when the first bytes look like text (a CSV file, say).
        case noSignature(text: Bool)

        public var description: String {
            switch self {
            case .missing: return "no such file"
            case .directory: return "is a directory, not a file"
            case .unreadable(let reason): return "cannot read the file: \(reason)"
            case .empty: return "not an HDF5 file: the file is empty (0 bytes)"
            case .noSignature(let text):
                return "not an HDF5 file (no HDF5 signature" + (text ? "; it looks like text)" : ")")
            }
        }
    }

    static let bytes: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]

    /// nil when `path` is a readable file with an HDF5 signature, else why not.
    public static func problem(at path: String) -> Problem? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return .missing }
        if isDirectory.boolValue { return .directory }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            return .unreadable(String(cString: strerror(errno)))
        }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        if size == 0 { return .empty }
        var offset: UInt64 = 0
        while offset + 8 <= size {
            guard (try? handle.seek(toOffset: offset)) != nil, let head = try? handle.read(upToCount: 8) else { break }
            if Array(head) == bytes { return nil }
            offset = offset == 0 ? 512 : offset * 2
        }
        try? handle.seek(toOffset: 0)
        let start = (try? handle.read(upToCount: 512)).map { Array($0) } ?? []
        return .noSignature(text: looksLikeText(start))
    }

    /// Printable ASCII/UTF-8 with line breaks, no NUL: what a CSV or YAML file starts with.
    static func looksLikeText(_ start: [UInt8]) -> Bool {
        guard !start.isEmpty, !start.contains(0) else { return false }
        let printable = start.filter { $0 >= 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }.count
        return printable == start.count && String(decoding: start, as: UTF8.self).unicodeScalars.allSatisfy { $0 != "\u{FFFD}" }
    }
}
