import CHDF5

/// Anything HDF5 can hang attributes on: a file (its root group), a group or a dataset.
public protocol H5Object: AnyObject {
    /// The raw HDF5 identifier; negative once closed.
    var hid: hid_t { get }
    /// The path of the file on disk, for error messages.
    var filePath: String { get }
    /// The object's absolute path inside the file ("/" for the root).
    var path: String { get }
}

/// An open attribute, closed in `deinit` or by `close()`.
///
/// In error messages an attribute is named `<object path>@<attribute name>`.
public final class H5Attribute {
    public private(set) var hid: hid_t
    public let name: String
    public let filePath: String
    /// Path of the object the attribute belongs to.
    public let ownerPath: String

    init(hid: hid_t, name: String, filePath: String, ownerPath: String) {
        self.hid = hid
        self.name = name
        self.filePath = filePath
        self.ownerPath = ownerPath
    }

    deinit { close() }

    /// Closes the attribute; calling it again does nothing.
    public func close() {
        if hid >= 0 {
            H5Aclose(hid)
            hid = -1
        }
    }

    private var reader: H5Reader {
        H5Reader(hid: hid, kind: .attribute, file: filePath, object: "\(ownerPath)@\(name)")
    }

    /// The stored element type.
    public var dtype: H5DType { get throws { try reader.dtype() } }
    /// The shape; `[]` for a scalar attribute.
    public var shape: [Int] { get throws { try reader.shape() } }

    /// All values, row-major. Float↔float and int↔int widths convert; other kinds throw.
    public func read<T: H5Numeric>(_ type: T.Type = T.self) throws -> [T] {
        try reader.read(type).values
    }

    /// The single value of a scalar (or one-element) attribute.
    public func readScalar<T: H5Numeric>(_ type: T.Type = T.self) throws -> T {
        try reader.readScalar(type)
    }

    /// The value of a string attribute (variable- or fixed-length).
    public func readString() throws -> String {
        try reader.readString()
    }
}

/// Collects attribute names during `H5Aiterate2`.
private final class AttributeNameCollector {
    var list: [String] = []
}

extension H5Object {
    private func attributeObject(_ name: String) -> String { "\(path)@\(name)" }

    /// True if the attribute exists (false also when the object itself cannot be queried).
    public func hasAttribute(_ name: String) -> Bool {
        H5Aexists(hid, name) > 0
    }

    /// Opens an existing attribute.
    public func openAttribute(_ name: String) throws -> H5Attribute {
        guard hasAttribute(name) else {
            throw HDF5Error.notFound(file: filePath, object: attributeObject(name))
        }
        let id = try checkID(H5Aopen(hid, name, moe_H5P_DEFAULT()), file: filePath,
                             object: attributeObject(name), "open attribute")
        return H5Attribute(hid: id, name: name, filePath: filePath, ownerPath: path)
    }

    /// Names of all attributes, in name order.
    public func attributeNames() throws -> [String] {
        let names = AttributeNameCollector()
        var index: hsize_t = 0
        let status = withExtendedLifetime(names) {
            H5Aiterate2(hid, H5_INDEX_NAME, H5_ITER_INC, &index, { _, name, _, context in
                guard let name, let context else { return 0 }
                Unmanaged<AttributeNameCollector>.fromOpaque(context).takeUnretainedValue().list.append(String(cString: name))
                return 0
            }, Unmanaged.passUnretained(names).toOpaque())
        }
        try check(status, file: filePath, object: path, "list attributes")
        return names.list
    }

    /// Removes an attribute if it exists.
    public func deleteAttribute(_ name: String) throws {
        if hasAttribute(name) {
            try check(H5Adelete(hid, name), file: filePath, object: attributeObject(name), "delete attribute")
        }
    }

    /// Creates (or replaces) an attribute from a type, a dataspace and a writer.
    private func writeAttribute(_ name: String, type: hid_t, space: hid_t,
                                _ write: (hid_t) -> herr_t) throws {
        let object = attributeObject(name)
        try deleteAttribute(name)
        let attr = try checkID(H5Acreate2(hid, name, type, space, moe_H5P_DEFAULT(), moe_H5P_DEFAULT()),
                               file: filePath, object: object, "create attribute")
        defer { H5Aclose(attr) }
        try check(write(attr), file: filePath, object: object, "write attribute")
    }

    /// Sets a variable-length UTF-8 string attribute (h5py reads it as `str`).
    public func setAttribute(_ name: String, _ value: String) throws {
        let type = makeUTF8StringType()
        defer { H5Tclose(type) }
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        try writeAttribute(name, type: type, space: space) { attr in
            value.withCString { chars in
                var pointer: UnsafePointer<CChar>? = chars
                return H5Awrite(attr, type, &pointer)
            }
        }
    }

    /// Sets a scalar numeric attribute.
    public func setAttribute<T: H5Numeric>(_ name: String, _ value: T) throws {
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        try writeAttribute(name, type: T.h5DType.fileType!, space: space) { attr in
            withUnsafeBytes(of: value) { H5Awrite(attr, T.h5DType.nativeType!, $0.baseAddress) }
        }
    }

    /// Sets a one-dimensional numeric array attribute.
    public func setAttribute<T: H5Numeric>(_ name: String, _ values: [T]) throws {
        var dims = [hsize_t(values.count)]
        let space = H5Screate_simple(1, &dims, nil)
        defer { H5Sclose(space) }
        try writeAttribute(name, type: T.h5DType.fileType!, space: space) { attr in
            values.withUnsafeBytes { raw in
                // A zero-length array has nothing to write (and no buffer to pass).
                guard let base = raw.baseAddress else { return 0 }
                return H5Awrite(attr, T.h5DType.nativeType!, base)
            }
        }
    }

    /// Reads a string attribute.
    public func stringAttribute(_ name: String) throws -> String {
        try openAttribute(name).readString()
    }

    /// Reads a scalar numeric attribute.
    public func attribute<T: H5Numeric>(_ name: String, as type: T.Type = T.self) throws -> T {
        try openAttribute(name).readScalar(type)
    }

    /// Reads a numeric array attribute.
    public func arrayAttribute<T: H5Numeric>(_ name: String, as type: T.Type = T.self) throws -> [T] {
        try openAttribute(name).read(type)
    }
}
