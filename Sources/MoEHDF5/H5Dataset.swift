import CHDF5

/// How a dataset's data is laid out in the file.
public enum H5Layout: Equatable {
    case contiguous, chunked, compact, other
}

/// An open dataset, closed in `deinit` or by `close()`.
///
/// Reading converts widths within a kind (a float64 dataset can be read as `Float`, int32 as
/// `Int64`); reading across kinds (integers as floats, strings as numbers) throws `typeMismatch`.
public final class H5Dataset: H5Object {
    public private(set) var hid: hid_t
    public let filePath: String
    public let path: String

    init(hid: hid_t, filePath: String, path: String) {
        self.hid = hid
        self.filePath = filePath
        self.path = path
    }

    deinit { close() }

    /// Closes the dataset; calling it again does nothing.
    public func close() {
        if hid >= 0 {
            H5Dclose(hid)
            hid = -1
        }
    }

    private var reader: H5Reader {
        H5Reader(hid: hid, kind: .dataset, file: filePath, object: path)
    }

    // MARK: Metadata (no data is read)

    /// The stored element type.
    public var dtype: H5DType { get throws { try reader.dtype() } }

    /// The current shape; `[]` for a scalar dataset.
    public var shape: [Int] { get throws { try reader.shape() } }

    /// Number of elements (1 for a scalar).
    public var count: Int { get throws { elementCount(try shape) } }

    /// The storage layout (contiguous, chunked, ...).
    public var layout: H5Layout {
        get throws {
            let plist = try checkID(H5Dget_create_plist(hid), file: filePath, object: path, "get creation properties")
            defer { H5Pclose(plist) }
            switch H5Pget_layout(plist) {
            case H5D_CONTIGUOUS: return .contiguous
            case H5D_CHUNKED: return .chunked
            case H5D_COMPACT: return .compact
            default: return .other
            }
        }
    }

    /// The chunk shape, or nil for a dataset that is not chunked.
    public var chunkShape: [Int]? {
        get throws {
            let plist = try checkID(H5Dget_create_plist(hid), file: filePath, object: path, "get creation properties")
            defer { H5Pclose(plist) }
            guard H5Pget_layout(plist) == H5D_CHUNKED else { return nil }
            let rank = Int(H5Pget_chunk(plist, 0, nil))
            var dims = [hsize_t](repeating: 0, count: max(rank, 1))
            try check(H5Pget_chunk(plist, Int32(rank), &dims), file: filePath, object: path, "get chunk shape")
            return dims.prefix(rank).map { Int($0) }
        }
    }

    /// Number of filters (shuffle, deflate, ...) in the dataset's pipeline.
    public var filterCount: Int {
        get throws {
            let plist = try checkID(H5Dget_create_plist(hid), file: filePath, object: path, "get creation properties")
            defer { H5Pclose(plist) }
            return Int(H5Pget_nfilters(plist))
        }
    }

    /// Bytes the data occupies in the file (after compression).
    public var storageSize: Int { Int(H5Dget_storage_size(hid)) }

    // MARK: Reading

    /// All values, row-major, with the shape.
    public func readWithShape<T: H5Numeric>(_ type: T.Type = T.self) throws -> (values: [T], shape: [Int]) {
        try reader.read(type)
    }

    /// All values, row-major.
    public func read<T: H5Numeric>(_ type: T.Type = T.self) throws -> [T] {
        try reader.read(type).values
    }

    /// Reads all values into `buffer`, whose count must equal `count` (no intermediate array).
    public func read<T: H5Numeric>(into buffer: UnsafeMutableBufferPointer<T>) throws {
        try reader.read(into: buffer)
    }

    /// The single value of a scalar (or one-element) dataset.
    public func readScalar<T: H5Numeric>(_ type: T.Type = T.self) throws -> T {
        try reader.readScalar(type)
    }

    /// The value of a string dataset (variable- or fixed-length).
    public func readString() throws -> String {
        try reader.readString()
    }

    // MARK: Appending to extendable series

    /// Appends to a series created with `createSeries`: the values are whole rows, i.e. their
    /// count must be a multiple of the row size (the product of the dimensions after the first;
    /// 1 for a 1-D series). Rank-1 series take any number of values; `[steps, width]` series
    /// take `k * width` values for `k` new rows.
    public func append<T: H5Numeric>(_ values: [T]) throws {
        try values.withUnsafeBufferPointer { try append(contentsOf: $0) }
    }

    /// Appends whole rows from a buffer; see `append(_:)`.
    public func append<T: H5Numeric>(contentsOf values: UnsafeBufferPointer<T>) throws {
        let stored = try dtype
        guard stored == T.h5DType else {
            throw HDF5Error.typeMismatch(file: filePath, object: path, expected: stored.description,
                                         found: T.h5DType.description)
        }
        let oldShape = try shape
        guard !oldShape.isEmpty else {
            throw HDF5Error.shapeMismatch(file: filePath, object: path, message: "cannot append to a scalar dataset")
        }
        let rowSize = elementCount(Array(oldShape.dropFirst()))
        guard rowSize > 0, values.count % rowSize == 0 else {
            throw HDF5Error.shapeMismatch(file: filePath, object: path,
                                          message: "\(values.count) values are not whole rows of \(rowSize) (shape \(oldShape))")
        }
        let rows = values.count / rowSize
        guard rows > 0, let base = values.baseAddress else { return }

        var newShape = oldShape
        newShape[0] += rows
        var newDims = hsizes(newShape)
        try check(H5Dset_extent(hid, &newDims), file: filePath, object: path,
                  "extend dataset to \(newShape) (is it an extendable series?)")

        let fileSpace = try checkID(H5Dget_space(hid), file: filePath, object: path, "get dataspace")
        defer { H5Sclose(fileSpace) }
        var start = [hsize_t](repeating: 0, count: oldShape.count)
        start[0] = hsize_t(oldShape[0])
        var block = hsizes(oldShape)
        block[0] = hsize_t(rows)
        try check(H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, &start, nil, &block, nil),
                  file: filePath, object: path, "select rows to append")
        let memSpace = H5Screate_simple(Int32(block.count), &block, nil)
        defer { H5Sclose(memSpace) }
        try check(H5Dwrite(hid, T.h5DType.nativeType!, memSpace, fileSpace, H5Transfer.list, base),
                  file: filePath, object: path, "append \(rows) rows")
    }
}
