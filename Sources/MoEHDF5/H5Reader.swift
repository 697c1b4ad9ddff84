import CHDF5

/// Read access shared by datasets and attributes: both are "a typed array with a dataspace",
/// and differ only in the HDF5 calls that reach their type, space and data.
struct H5Reader {
    enum Kind { case dataset, attribute }

    let hid: hid_t
    let kind: Kind
    let file: String
    let object: String

    private var what: String { kind == .dataset ? "dataset" : "attribute" }

    /// Runs `body` with the stored datatype, closing it afterwards.
    func withFileType<R>(_ body: (hid_t) throws -> R) throws -> R {
        let type = kind == .dataset ? H5Dget_type(hid) : H5Aget_type(hid)
        _ = try checkID(type, file: file, object: object, "get the type of \(what)")
        defer { H5Tclose(type) }
        return try body(type)
    }

    /// The stored element type.
    func dtype() throws -> H5DType {
        try withFileType { H5DType(typeID: $0) }
    }

    /// The current shape; `[]` for a scalar.
    func shape() throws -> [Int] {
        let space = kind == .dataset ? H5Dget_space(hid) : H5Aget_space(hid)
        _ = try checkID(space, file: file, object: object, "get the dataspace of \(what)")
        defer { H5Sclose(space) }
        guard let shape = shapeOf(space: space) else {
            throw HDF5Error.object(file: file, object: object, operation: "read the shape of \(what)",
                                   message: hdf5ErrorMessage())
        }
        return shape
    }

    /// Reads every element with memory type `memType` into `buffer`.
    private func rawRead(_ memType: hid_t, _ buffer: UnsafeMutableRawPointer) -> herr_t {
        switch kind {
        case .dataset: return H5Dread(hid, memType, moe_H5S_ALL(), moe_H5S_ALL(), H5Transfer.list, buffer)
        case .attribute: return H5Aread(hid, memType, buffer)
        }
    }

    /// Checks that values of `T` can be read from the stored type without changing kind:
    /// float to float and integer to integer convert (HDF5 converts width, e.g. float64 to
    /// Float); float to integer or string to number is refused.
    func checkReadable<T: H5Numeric>(_ type: T.Type) throws {
        let stored = try dtype()
        let wanted = T.h5DType
        let compatible = (stored.isFloatingPoint && wanted.isFloatingPoint) || (stored.isInteger && wanted.isInteger)
        if !compatible {
            throw HDF5Error.typeMismatch(file: file, object: object, expected: wanted.description, found: stored.description)
        }
    }

    /// Reads all elements into `buffer`, whose count must equal the element count.
    func read<T: H5Numeric>(into buffer: UnsafeMutableBufferPointer<T>) throws {
        try checkReadable(T.self)
        let count = elementCount(try shape())
        guard buffer.count == count else {
            throw HDF5Error.shapeMismatch(file: file, object: object,
                                          message: "buffer holds \(buffer.count) elements, \(what) has \(count)")
        }
        guard count > 0, let base = buffer.baseAddress, let memType = T.h5DType.nativeType else { return }
        try check(rawRead(memType, base), file: file, object: object, "read \(what)")
    }

    /// Reads all elements, row-major, with the shape.
    func read<T: H5Numeric>(_ type: T.Type) throws -> (values: [T], shape: [Int]) {
        let shape = try shape()
        let count = elementCount(shape)
        let values = try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            try read(into: buffer)
            initialized = count
        }
        return (values, shape)
    }

    /// Reads a single value; the stored object must hold exactly one element (scalar or `[1]`).
    func readScalar<T: H5Numeric>(_ type: T.Type) throws -> T {
        let (values, shape) = try read(T.self)
        guard values.count == 1 else {
            throw HDF5Error.shapeMismatch(file: file, object: object,
                                          message: "expected a single value, found shape \(shape)")
        }
        return values[0]
    }

    /// Reads a string stored as a variable-length or fixed-length string with one element.
    func readString() throws -> String {
        try withFileType { fileType in
            guard H5Tget_class(fileType) == H5T_STRING else {
                throw HDF5Error.typeMismatch(file: file, object: object, expected: "string",
                                             found: H5DType(typeID: fileType).description)
            }
            let count = elementCount(try shape())
            guard count == 1 else {
                throw HDF5Error.shapeMismatch(file: file, object: object,
                                              message: "expected one string, found \(count)")
            }
            // Reading with a copy of the stored type keeps its character set and padding.
            let memType = H5Tcopy(fileType)
            defer { H5Tclose(memType) }
            if H5Tis_variable_str(fileType) > 0 {
                var pointer: UnsafeMutablePointer<CChar>? = nil
                try check(rawRead(memType, &pointer), file: file, object: object, "read string \(what)")
                guard let pointer else { return "" }
                defer { H5free_memory(pointer) }
                return String(cString: pointer)
            }
            let size = H5Tget_size(fileType)
            var bytes = [UInt8](repeating: 0, count: size + 1)
            try bytes.withUnsafeMutableBytes { raw in
                try check(rawRead(memType, raw.baseAddress!), file: file, object: object, "read string \(what)")
            }
            let end = bytes.firstIndex(of: 0) ?? size
            var text = String(decoding: bytes[..<end], as: UTF8.self)
            if H5Tget_strpad(fileType) == H5T_STR_SPACEPAD {
                while text.last == " " { text.removeLast() }
            }
            return text
        }
    }
}
