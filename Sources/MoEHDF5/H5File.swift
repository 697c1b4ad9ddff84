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
        guard id >= 0 else {
            throw HDF5Error.file(path: path, operation: "create file", message: hdf5ErrorMessage())
        }
        return H5File(hid: id, filePath: path)
    }

    /// Opens an existing file.
    public static func open(_ path: String, mode: Mode = .readOnly) throws -> H5File {
        HDF5Library.ensureInitialized()
        let flags = mode == .readOnly ? moe_H5F_ACC_RDONLY() : moe_H5F_ACC_RDWR()
        let id = H5Fopen(path, flags, moe_H5P_DEFAULT())
        guard id >= 0 else {
            throw HDF5Error.file(path: path, operation: "open file", message: hdf5ErrorMessage())
        }
        return H5File(hid: id, filePath: path)
    }

    /// Writes HDF5's buffers for this file to the operating system.
    public func flush() throws {
        if H5Fflush(hid, H5F_SCOPE_GLOBAL) < 0 {
            throw HDF5Error.file(path: filePath, operation: "flush file", message: hdf5ErrorMessage())
        }
    }

    /// Number of groups, datasets, named types and attributes still open through this file.
    public var openObjectCount: Int {
        let mask = moe_H5F_OBJ_ALL() & ~moe_H5F_OBJ_FILE() | moe_H5F_OBJ_LOCAL()
        return max(0, Int(H5Fget_obj_count(hid, mask)))
    }

    /// Closes the file; calling it again does nothing. Errors are ignored here; use
    /// `flush()` first when they matter (as `createAtomically` does).
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
        if status < 0 {
            throw HDF5Error.file(path: filePath, operation: "close file", message: hdf5ErrorMessage())
        }
    }

    /// Writes a file so that it becomes visible only when complete.
    ///
    /// `body` fills a new file at `path + ".tmp"`. Then the file is flushed and closed, the tmp
    /// file is `fsync`ed, renamed to `path` (replacing any previous file atomically: a reader
    /// that has the old file open keeps reading the old one) and the directory is `fsync`ed so
    /// the rename survives a crash. Objects opened in `body` must not outlive it: if any is still
    /// open when `body` returns, the write fails rather than renaming a file HDF5 has not closed.
    /// (That is why `body` returns nothing: a returned dataset would still be open.)
    /// If anything throws, the tmp file is removed and the error rethrown; `path` is untouched.
    public static func createAtomically(_ path: String, _ body: (H5File) throws -> Void) throws {
        let tmpPath = path + ".tmp"
        let file = try create(tmpPath)
        do {
            try body(file)
            try file.flush()
            let stillOpen = file.openObjectCount
            if stillOpen > 0 {
                throw HDF5Error.file(path: tmpPath, operation: "finish atomic write",
                                     message: "\(stillOpen) objects opened in the closure are still open")
            }
            try file.closeChecked()
            try fsyncPath(tmpPath, directory: false)
            if rename(tmpPath, path) != 0 {
                throw HDF5Error.system(path: path, operation: "rename from \(tmpPath)", message: errnoMessage())
            }
            try fsyncPath(directoryOf(path), directory: true)
        } catch {
            file.close()
            unlink(tmpPath)
            throw error
        }
    }
}

/// The text of the current `errno`.
private func errnoMessage() -> String {
    String(cString: strerror(errno))
}

/// The directory part of a path ("." for a bare file name).
func directoryOf(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    let directory = String(path[..<slash])
    return directory.isEmpty ? "/" : directory
}

/// `fsync`s a file or a directory.
private func fsyncPath(_ path: String, directory: Bool) throws {
    let fd = directory ? open(path, O_RDONLY | O_DIRECTORY) : open(path, O_RDONLY)
    guard fd >= 0 else {
        throw HDF5Error.system(path: path, operation: "open for fsync", message: errnoMessage())
    }
    defer { _ = close(fd) }
    if fsync(fd) != 0 {
        throw HDF5Error.system(path: path, operation: "fsync", message: errnoMessage())
    }
}
