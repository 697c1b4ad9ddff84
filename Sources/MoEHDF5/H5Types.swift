import CHDF5

/// The element type of a stored dataset or attribute, as seen by a reader.
public enum H5DType: Equatable, CustomStringConvertible {
    case float32, float64
    case int8, int16, int32, int64
    case uint8, uint16, uint32, uint64
    /// Fixed- or variable-length string.
    case string
    /// Anything else (compound, enum, opaque, ...): HDF5's class name and size in bytes.
    case other(String)

    public var description: String {
        switch self {
        case .float32: return "float32"
        case .float64: return "float64"
        case .int8: return "int8"
        case .int16: return "int16"
        case .int32: return "int32"
        case .int64: return "int64"
        case .uint8: return "uint8"
        case .uint16: return "uint16"
        case .uint32: return "uint32"
        case .uint64: return "uint64"
        case .string: return "string"
        case .other(let name): return name
        }
    }

    /// True for the floating-point types.
    public var isFloatingPoint: Bool { self == .float32 || self == .float64 }

    /// True for the signed and unsigned integer types.
    public var isInteger: Bool {
        switch self {
        case .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64: return true
        default: return false
        }
    }
}

/// A Swift number type that maps one-to-one onto an HDF5 native type.
///
/// Stored on disk as the little-endian IEEE / two's complement type of the same width, which is
/// what h5py and numpy call `<f4`, `<f8`, `<i4`, `<i8`, `|u1`, `<u2`. `Int` is stored as int64 (64-bit platforms only).
public protocol H5Numeric: BitwiseCopyable {
    /// The dtype written to files for this Swift type.
    static var h5DType: H5DType { get }
}

extension Float: H5Numeric { public static var h5DType: H5DType { .float32 } }
extension Double: H5Numeric { public static var h5DType: H5DType { .float64 } }
extension Int32: H5Numeric { public static var h5DType: H5DType { .int32 } }
extension Int64: H5Numeric { public static var h5DType: H5DType { .int64 } }
extension UInt8: H5Numeric { public static var h5DType: H5DType { .uint8 } }
extension UInt16: H5Numeric { public static var h5DType: H5DType { .uint16 } }
extension Int: H5Numeric {
    public static var h5DType: H5DType {
        precondition(MemoryLayout<Int>.size == 8, "MoEHDF5 stores Int as int64 and needs a 64-bit platform")
        return .int64
    }
}

extension H5DType {
    /// HDF5's native (memory) type for the numeric dtypes this module writes.
    var nativeType: hid_t? {
        switch self {
        case .float32: return moe_H5T_NATIVE_FLOAT()
        case .float64: return moe_H5T_NATIVE_DOUBLE()
        case .int32: return moe_H5T_NATIVE_INT32()
        case .int64: return moe_H5T_NATIVE_INT64()
        case .uint8: return moe_H5T_NATIVE_UINT8()
        case .uint16: return moe_H5T_NATIVE_UINT16()
        default: return nil
        }
    }

    /// The little-endian file type for the numeric dtypes this module writes.
    var fileType: hid_t? {
        switch self {
        case .float32: return moe_H5T_IEEE_F32LE()
        case .float64: return moe_H5T_IEEE_F64LE()
        case .int32: return moe_H5T_STD_I32LE()
        case .int64: return moe_H5T_STD_I64LE()
        case .uint8: return moe_H5T_STD_U8LE()
        case .uint16: return moe_H5T_STD_U16LE()
        default: return nil
        }
    }

    /// Element size in bytes for the numeric dtypes.
    var byteSize: Int {
        switch self {
        case .int8, .uint8: return 1
        case .int16, .uint16: return 2
        case .float32, .int32, .uint32: return 4
        case .float64, .int64, .uint64: return 8
        case .string, .other: return 0
        }
    }

    /// Classifies an HDF5 datatype identifier.
    init(typeID: hid_t) {
        let cls = H5Tget_class(typeID)
        let size = H5Tget_size(typeID)
        if cls == H5T_FLOAT {
            switch size {
            case 4: self = .float32
            case 8: self = .float64
            default: self = .other("float\(size * 8)")
            }
        } else if cls == H5T_INTEGER {
            let signed = H5Tget_sign(typeID) != H5T_SGN_NONE
            switch (size, signed) {
            case (1, true): self = .int8
            case (2, true): self = .int16
            case (4, true): self = .int32
            case (8, true): self = .int64
            case (1, false): self = .uint8
            case (2, false): self = .uint16
            case (4, false): self = .uint32
            case (8, false): self = .uint64
            default: self = .other("int\(size * 8)")
            }
        } else if cls == H5T_STRING {
            self = .string
        } else {
            self = .other("HDF5 type class \(cls.rawValue), \(size) bytes")
        }
    }
}

/// A new variable-length UTF-8 string type (h5py reads it as `str`). The caller closes it.
func makeUTF8StringType() -> hid_t {
    let type = H5Tcopy(moe_H5T_C_S1())
    _ = H5Tset_size(type, moe_H5T_VARIABLE())
    _ = H5Tset_cset(type, H5T_CSET_UTF8)
    return type
}

/// Converts a shape to HDF5 dimensions.
func hsizes(_ shape: [Int]) -> [hsize_t] {
    shape.map { hsize_t($0) }
}

/// Number of elements of a shape (1 for rank 0).
func elementCount(_ shape: [Int]) -> Int {
    shape.reduce(1, *)
}

/// Reads the current extent of a dataspace. A scalar dataspace has shape `[]`; a null one `[0]`.
func shapeOf(space: hid_t) -> [Int]? {
    let rank = H5Sget_simple_extent_ndims(space)
    if rank < 0 { return nil }
    if H5Sget_simple_extent_type(space) == H5S_NULL { return [0] }
    if rank == 0 { return [] }
    var dims = [hsize_t](repeating: 0, count: Int(rank))
    if H5Sget_simple_extent_dims(space, &dims, nil) < 0 { return nil }
    return dims.map { Int($0) }
}
