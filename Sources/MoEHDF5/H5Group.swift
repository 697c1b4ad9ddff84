import CHDF5

/// What a path inside a file names.
public enum H5ObjectKind: Equatable {
    case group, dataset, namedType
}

/// A place that holds links: the file (its root group) or a group. Paths given to its methods
/// are relative to it, or absolute when they start with "/".
public protocol H5Location: H5Object {}

/// An open group, closed in `deinit` or by `close()`.
public final class H5Group: H5Location {
    public private(set) var hid: hid_t
    public let filePath: String
    public let path: String

    init(hid: hid_t, filePath: String, path: String) {
        self.hid = hid
        self.filePath = filePath
        self.path = path
    }

    deinit { close() }

    /// Closes the group; calling it again does nothing.
    public func close() {
        if hid >= 0 {
            H5Gclose(hid)
            hid = -1
        }
    }
}

/// Joins a location's path and a relative or absolute path into an absolute object path.
func joinPath(_ base: String, _ path: String) -> String {
    if path.hasPrefix("/") { return path }
    if path.isEmpty || path == "." { return base }
    return base.hasSuffix("/") ? base + path : base + "/" + path
}

/// A link-creation property list that creates missing intermediate groups. The caller closes it.
func makeIntermediateLCPL() -> hid_t {
    let lcpl = H5Pcreate(moe_H5P_LINK_CREATE())
    _ = H5Pset_create_intermediate_group(lcpl, 1)
    _ = H5Pset_char_encoding(lcpl, H5T_CSET_UTF8)
    return lcpl
}

extension H5Location {
    /// The absolute path of `path` resolved against this location.
    public func absolutePath(_ path: String) -> String {
        joinPath(self.path, path)
    }

    // MARK: Groups

    /// Creates a group, creating missing intermediate groups. Fails if it already exists.
    @discardableResult
    public func createGroup(_ path: String) throws -> H5Group {
        let lcpl = makeIntermediateLCPL()
        defer { H5Pclose(lcpl) }
        let id = try checkID(H5Gcreate2(hid, path, lcpl, moe_H5P_DEFAULT(), moe_H5P_DEFAULT()),
                             file: filePath, object: absolutePath(path), "create group")
        return H5Group(hid: id, filePath: filePath, path: absolutePath(path))
    }

    /// Opens an existing group.
    public func openGroup(_ path: String) throws -> H5Group {
        guard exists(path) else { throw HDF5Error.notFound(file: filePath, object: absolutePath(path)) }
        let id = try checkID(H5Gopen2(hid, path, moe_H5P_DEFAULT()),
                             file: filePath, object: absolutePath(path), "open group")
        return H5Group(hid: id, filePath: filePath, path: absolutePath(path))
    }

    /// Opens the group if it exists, creates it (and its parents) otherwise.
    public func requireGroup(_ path: String) throws -> H5Group {
        exists(path) ? try openGroup(path) : try createGroup(path)
    }

    /// True if every component of `path` exists and resolves (links are followed, so a dangling
    /// soft or external link counts as absent). Checked component by component, because
    /// `H5Lexists` fails, rather than answering false, when an intermediate group is missing.
    public func exists(_ path: String) -> Bool {
        let components = path.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in components {
            prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + component
            if H5Lexists(hid, prefix, moe_H5P_DEFAULT()) <= 0 { return false }
        }
        if components.isEmpty { return true }
        return H5Oexists_by_name(hid, prefix, moe_H5P_DEFAULT()) > 0
    }

    /// What `path` names, or nil if it does not exist (or is a dangling link).
    public func kind(of path: String) -> H5ObjectKind? {
        guard exists(path) else { return nil }
        let object = H5Oopen(hid, path, moe_H5P_DEFAULT())
        guard object >= 0 else {
            _ = H5Eclear2(moe_H5E_DEFAULT())
            return nil
        }
        defer { H5Oclose(object) }
        switch H5Iget_type(object) {
        case H5I_GROUP: return .group
        case H5I_DATASET: return .dataset
        case H5I_DATATYPE: return .namedType
        default: return nil
        }
    }

    /// Names of the links directly inside this location (or inside the group at `path`), in name order.
    public func children(of path: String = ".") throws -> [String] {
        // Open the group first: HDF5 1.10's *_by_name calls do not follow an external link
        // that ends the path ("address undefined"), opening it does.
        let group = path == "." ? nil : try openGroup(path)
        let id = group?.hid ?? hid
        let object = absolutePath(path)
        var info = H5G_info_t()
        try check(H5Gget_info(id, &info), file: filePath, object: object, "list group")
        var names: [String] = []
        names.reserveCapacity(Int(info.nlinks))
        for index in 0..<info.nlinks {
            let length = H5Lget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, moe_H5P_DEFAULT())
            guard length >= 0 else {
                throw HDF5Error.object(file: filePath, object: object, operation: "list group", message: hdf5ErrorMessage())
            }
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            let written = H5Lget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, index, &buffer, buffer.count,
                                             moe_H5P_DEFAULT())
            guard written >= 0 else {
                throw HDF5Error.object(file: filePath, object: object, operation: "list group", message: hdf5ErrorMessage())
            }
            names.append(String(decoding: buffer.prefix(Int(written)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names
    }

    // MARK: Links

    /// Creates an external link `name` → `object` in `file`. A relative `file` is resolved by
    /// HDF5 against the directory of the file holding the link (then the working directory), so
    /// links between files of one run directory keep working when the directory moves.
    public func createExternalLink(_ name: String, file: String, object: String) throws {
        let lcpl = makeIntermediateLCPL()
        defer { H5Pclose(lcpl) }
        try check(H5Lcreate_external(file, object, hid, name, lcpl, moe_H5P_DEFAULT()),
                  file: filePath, object: absolutePath(name), "create external link to \(file):\(object)")
    }

    /// Creates a soft link `name` → `target` (an absolute or relative path in the same file).
    public func createSoftLink(_ name: String, target: String) throws {
        let lcpl = makeIntermediateLCPL()
        defer { H5Pclose(lcpl) }
        try check(H5Lcreate_soft(target, hid, name, lcpl, moe_H5P_DEFAULT()),
                  file: filePath, object: absolutePath(name), "create soft link to \(target)")
    }

    /// Removes the link `name` (the object is freed when no other link refers to it).
    public func deleteLink(_ name: String) throws {
        try check(H5Ldelete(hid, name, moe_H5P_DEFAULT()), file: filePath, object: absolutePath(name), "delete link")
    }

    // MARK: Opening datasets

    /// Opens an existing dataset (following soft and external links).
    public func openDataset(_ path: String) throws -> H5Dataset {
        guard exists(path) else { throw HDF5Error.notFound(file: filePath, object: absolutePath(path)) }
        let id = try checkID(H5Dopen2(hid, path, moe_H5P_DEFAULT()),
                             file: filePath, object: absolutePath(path), "open dataset")
        return H5Dataset(hid: id, filePath: filePath, path: absolutePath(path))
    }

    /// Reads a whole numeric dataset with its shape.
    public func read<T: H5Numeric>(_ path: String, as type: T.Type = T.self) throws -> (values: [T], shape: [Int]) {
        try openDataset(path).readWithShape(type)
    }

    /// Reads a scalar (or one-element) numeric dataset.
    public func readScalar<T: H5Numeric>(_ path: String, as type: T.Type = T.self) throws -> T {
        try openDataset(path).readScalar(type)
    }

    /// Reads a string dataset.
    public func readString(_ path: String) throws -> String {
        try openDataset(path).readString()
    }
}
