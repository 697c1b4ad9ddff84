import CHDF5
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An open HDF5 file, closed in `deinit` or by `close()`. As an `H5Location` it is the root
/// group "/": groups, datasets, links and attributes are created on it directly.
///
/// HDF5 keeps a file open while any object in it is open, so a dataset may outlive the
/// `H5File` it came from. HDF5 is not thread-safe: use one file from one thread.
public final class H5File: H5Location {
    public enum Mode {
        case readOnly, readWrite
    }

    public private(set) var hid: hid_t
    public let filePath: String
    public var path: String { "/" }

    private init(hid: hid_t, filePath: String) {
        self.hid = hid
        self.filePath = filePath
    }

    deinit { close() }

    /// Creates a new file, truncating any existing one.
    public static func create(_ path: String) throws -> H5File {
        HDF5Library.ensureInitialized()
        let id = H5Fcreate(path, moe_H5F_ACC_TRUNC(), moe_H5P_DEFAULT(), moe_H5P_DEFAULT())
        guard id >= 0 else { throw fileError(path: path, operation: "create file", while: "creating") }
        return H5File(hid: id, filePath: path)
    }

    /// Creates a file that lives in memory only (HDF5's core driver without a backing store):
    /// HDF5 never touches the disk for it, so no write of HDF5's can fail for want of space or
    /// permission. `path` names it in messages. `image()` returns its bytes.
    static func createInMemory(_ path: String) throws -> H5File {
        HDF5Library.ensureInitialized()
        let fapl = H5Pcreate(moe_H5P_FILE_ACCESS())
        guard fapl >= 0 else { throw fileError(path: path, operation: "create file", while: "creating") }
        defer { H5Pclose(fapl) }
        guard H5Pset_fapl_core(fapl, 1 << 20, false) >= 0 else { throw fileError(path: path, operation: "create file", while: "creating") }
        let id = H5Fcreate(path, moe_H5F_ACC_TRUNC(), moe_H5P_DEFAULT(), fapl)
        guard id >= 0 else { throw fileError(path: path, operation: "create file", while: "creating") }
        return H5File(hid: id, filePath: path)
    }

    /// The complete bytes of the file as it would be on disk (HDF5 flushes it first).
    func image() throws -> [UInt8] {
        let size = H5Fget_file_image(hid, nil, 0)
        guard size >= 0 else { throw HDF5Error.file(path: filePath, operation: "take the file's image", message: hdf5ErrorMessage()) }
        var failed = false
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            failed = H5Fget_file_image(hid, buffer.baseAddress, size) != size
            count = failed ? 0 : size
        }
        if failed { throw HDF5Error.file(path: filePath, operation: "take the file's image", message: hdf5ErrorMessage()) }
        return bytes
    }

    /// Opens an existing file.
    public static func open(_ path: String, mode: Mode = .readOnly) throws -> H5File {
        HDF5Library.ensureInitialized()
        let flags = mode == .readOnly ? moe_H5F_ACC_RDONLY() : moe_H5F_ACC_RDWR()
        let id = H5Fopen(path, flags, moe_H5P_DEFAULT())
        guard id >= 0 else { throw fileError(path: path, operation: "open file", while: "opening") }
        return H5File(hid: id, filePath: path)
    }

    /// Writes HDF5's buffers for this file to the operating system.
    public func flush() throws {
        if H5Fflush(hid, H5F_SCOPE_GLOBAL) < 0 { throw fileError(path: filePath, operation: "flush file", while: "writing") }
    }

    /// Number of groups, datasets, named types and attributes still open through this file.
    public var openObjectCount: Int {
        let mask = moe_H5F_OBJ_ALL() & ~moe_H5F_OBJ_FILE() | moe_H5F_OBJ_LOCAL()
        return max(0, Int(H5Fget_obj_count(hid, mask)))
    }

    /// Closes the file; calling it again does nothing. Errors are ignored here; use
    /// `flush()` first when they matter (as `createAtomically` does). A file whose close failed
    /// (a full disk) is never passed to HDF5 again: its identifier is dropped here, and HDF5's
    /// exit handler, which would close it once more and crash, is not installed (`HDF5Library`).
    public func close() {
        if hid >= 0 {
            H5Fclose(hid)
            hid = -1
        }
    }

    /// Closes the file, reporting failure.
    func closeChecked() throws {
        guard hid >= 0 else { return }
        let status = H5Fclose(hid)
        hid = -1
        if status < 0 { throw fileError(path: filePath, operation: "close file", while: "writing") }
    }

    /// Writes a file so that it becomes visible only when complete.
    ///
    /// `body` fills a new file that HDF5 keeps in memory (`createInMemory`). Then the file is
    /// flushed, its image taken and the file closed; the image is written to `path + ".tmp"` with
    /// plain system calls, `fsync`ed, renamed to `path` (replacing any previous file atomically: a
    /// reader that has the old file open keeps reading the old one) and the directory is `fsync`ed
    /// so the rename survives a crash. Objects opened in `body` must not outlive it: if any is
    /// still open when `body` returns, the write fails rather than writing a file HDF5 has not
    /// closed. (That is why `body` returns nothing: a returned dataset would still be open.)
    ///
    /// If anything throws, the tmp file is removed and the error rethrown; `path` is untouched.
    /// Because HDF5 itself never writes to the disk here, a full disk, a read-only file system or
    /// a refused permission is met by our own system calls: it ends as
    /// `HDF5Error.system(path, operation, errno)` (e.g. "no space left on device while writing
    /// PATH") and never leaves HDF5 with a file it failed to flush (HDF5 1.10 cannot close such a
    /// file safely, see `HDF5Library`).
    public static func createAtomically(_ path: String, _ body: (H5File) throws -> Void) throws {
        try writeAtomically(try image(of: path, body), to: path)
    }

    /// The bytes of the file `body` fills, built in memory (`createInMemory`, named `path + ".tmp"`
    /// in messages) and never on the disk: the first half of `createAtomically`, for a caller that
    /// hands the second half (`writeAtomically`) to another thread. HDF5 is called only here, so
    /// only the thread that owns HDF5 may call it. Objects opened in `body` must not outlive it.
    public static func image(of path: String, _ body: (H5File) throws -> Void) throws -> [UInt8] {
        let tmpPath = path + ".tmp"
        let file = try createInMemory(tmpPath)
        defer { file.close() }
        try body(file)
        try file.flush()
        let stillOpen = file.openObjectCount
        if stillOpen > 0 {
            throw HDF5Error.file(path: tmpPath, operation: "finish atomic write",
                                 message: "\(stillOpen) objects opened in the closure are still open")
        }
        let bytes = try file.image()
        try file.closeChecked()
        return bytes
    }

    /// The second half of `createAtomically`: `bytes` go to `path + ".tmp"` with plain system
    /// calls, are `fsync`ed, renamed to `path` and the directory is `fsync`ed. On any error the
    /// tmp file is removed and `path` is untouched; the error is `HDF5Error.system(path, …)`.
    /// No HDF5 call: safe on any thread (one write per path at a time).
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let tmpPath = path + ".tmp"
        do {
            try writeFile(tmpPath, bytes, reportedAs: path)
            if rename(tmpPath, path) != 0 {
                throw HDF5Error.system(path: path, operation: "renaming \(tmpPath) to", code: errno)
            }
            try fsyncDirectory(directoryOf(path))
        } catch {
            unlink(tmpPath)
            throw error
        }
    }
}

/// Writes `bytes` to a new file at `path` and `fsync`s it; errors name `reportedAs` (the file
/// being replaced, which is what the user knows) with the `errno` of the call that failed.
private func writeFile(_ path: String, _ bytes: [UInt8], reportedAs name: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw HDF5Error.system(path: name, operation: "writing", code: errno) }
    defer { _ = close(fd) }
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw HDF5Error.system(path: name, operation: "writing", code: n < 0 ? errno : ENOSPC) }
        offset += n
    }
    if fsync(fd) != 0 { throw HDF5Error.system(path: name, operation: "writing", code: errno) }
}

/// The directory part of a path ("." for a bare file name).
func directoryOf(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    let directory = String(path[..<slash])
    return directory.isEmpty ? "/" : directory
}

/// `fsync`s a directory (so a rename in it survives a crash).
private func fsyncDirectory(_ path: String) throws {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw HDF5Error.system(path: path, operation: "opening (to sync)", code: errno) }
    defer { _ = close(fd) }
    if fsync(fd) != 0 { throw HDF5Error.system(path: path, operation: "syncing", code: errno) }
}
