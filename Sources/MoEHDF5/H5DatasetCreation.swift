import CHDF5

/// How a new fixed-size dataset is stored.
public enum H5Storage: Equatable {
    /// Chunked with shuffle + deflate (gzip level 4) when the data is larger than
    /// `H5Storage.compressionThreshold` bytes, contiguous otherwise. Small datasets stay
    /// contiguous because chunk indexing and filter overhead outweigh any saving there.
    case automatic
    /// One contiguous block, no filters.
    case contiguous
    /// Chunked with shuffle + deflate level 4, whatever the size.
    case compressed

    /// Datasets above this many bytes are compressed by `.automatic` (64 KiB).
    public static let compressionThreshold = 64 * 1024
    /// Chunks are made no larger than this (256 KiB), well inside HDF5's 1 MiB default chunk cache.
    public static let targetChunkBytes = 256 * 1024
    /// The gzip (deflate) level of compressed datasets and series, 0...9, for the whole process
    /// (a run sets it once from the spec's `output.compression`; 0 = chunked without filters).
    nonisolated(unsafe) public static var deflateLevel: UInt32 = 4

    /// Runs `body` with `deflateLevel` 0 and puts the level back: for files that live only while
    /// a run does (a training task's checkpoint files), where gzip costs far more time than the
    /// space it saves (float weights shrink by ~15 %).
    public static func uncompressed<T>(_ body: () throws -> T) rethrows -> T {
        let level = deflateLevel
        deflateLevel = 0
        defer { deflateLevel = level }
        return try body()
    }
}

/// A chunk shape for a dataset of `shape`: the full shape, halving the dimensions in turn
/// (first, second, ..., skipping those already 1) until a chunk is at most `targetBytes`.
func chooseChunkShape(_ shape: [Int], elementSize: Int, targetBytes: Int = H5Storage.targetChunkBytes) -> [Int] {
    var chunk = shape.map { max($0, 1) }
    var axis = 0
    while elementCount(chunk) * elementSize > targetBytes, chunk.contains(where: { $0 > 1 }) {
        if chunk[axis] > 1 { chunk[axis] = (chunk[axis] + 1) / 2 }
        axis = (axis + 1) % chunk.count
    }
    return chunk
}

/// A dataset-creation property list: chunked with `chunk` and shuffle + deflate, or default
/// (contiguous) when `chunk` is nil. The caller closes it.
func makeDCPL(chunk: [Int]?) -> hid_t {
    let dcpl = H5Pcreate(moe_H5P_DATASET_CREATE())
    if let chunk {
        var dims = hsizes(chunk)
        _ = H5Pset_chunk(dcpl, Int32(dims.count), &dims)
        if H5Storage.deflateLevel > 0 {
            _ = H5Pset_shuffle(dcpl)
            _ = H5Pset_deflate(dcpl, min(H5Storage.deflateLevel, 9))
        }
    }
    return dcpl
}

extension H5Location {
    /// Creates a dataset (and missing parent groups) from `type`, `space` and `dcpl`, then writes it.
    private func makeDataset(_ path: String, type: hid_t, space: hid_t, dcpl: hid_t,
                             write: (hid_t) -> herr_t) throws -> H5Dataset {
        let object = absolutePath(path)
        let lcpl = makeIntermediateLCPL()
        defer { H5Pclose(lcpl) }
        let id = try checkID(H5Dcreate2(hid, path, type, space, lcpl, dcpl, moe_H5P_DEFAULT()),
                             file: filePath, object: object, "create dataset")
        let dataset = H5Dataset(hid: id, filePath: filePath, path: object)
        try check(write(id), file: filePath, object: object, "write dataset")
        return dataset
    }

    /// Writes a whole numeric array of any rank. `shape` defaults to `[values.count]`; `[]` makes
    /// a scalar. Its element count must equal `values.count`.
    @discardableResult
    public func createDataset<T: H5Numeric>(_ path: String, _ values: [T], shape: [Int]? = nil,
                                            storage: H5Storage = .automatic) throws -> H5Dataset {
        try values.withUnsafeBufferPointer {
            try createDataset(path, from: $0, shape: shape ?? [values.count], storage: storage)
        }
    }

    /// Writes a whole numeric array of any rank from a buffer (e.g. a tensor's storage).
    @discardableResult
    public func createDataset<T: H5Numeric>(_ path: String, from values: UnsafeBufferPointer<T>, shape: [Int],
                                            storage: H5Storage = .automatic) throws -> H5Dataset {
        let object = absolutePath(path)
        guard shape.allSatisfy({ $0 >= 0 }), elementCount(shape) == values.count else {
            throw HDF5Error.shapeMismatch(file: filePath, object: object,
                                          message: "shape \(shape) does not hold \(values.count) values")
        }
        let dtype = T.h5DType
        let bytes = values.count * dtype.byteSize
        let compress = !shape.isEmpty && (storage == .compressed ||
                                          (storage == .automatic && bytes > H5Storage.compressionThreshold))
        let dcpl = makeDCPL(chunk: compress ? chooseChunkShape(shape, elementSize: dtype.byteSize) : nil)
        defer { H5Pclose(dcpl) }
        var dims = hsizes(shape)
        let space = shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(dims.count), &dims, nil)
        defer { H5Sclose(space) }
        return try makeDataset(path, type: dtype.fileType!, space: space, dcpl: dcpl) { id in
            guard let base = values.baseAddress, values.count > 0 else { return 0 }
            return H5Dwrite(id, dtype.nativeType!, moe_H5S_ALL(), moe_H5S_ALL(), H5Transfer.list, base)
        }
    }

    /// Writes a rank-0 (scalar) numeric dataset.
    @discardableResult
    public func createScalar<T: H5Numeric>(_ path: String, _ value: T) throws -> H5Dataset {
        try createDataset(path, [value], shape: [], storage: .contiguous)
    }

    /// Writes a scalar variable-length UTF-8 string dataset (h5py reads it as `str`).
    @discardableResult
    public func createString(_ path: String, _ value: String) throws -> H5Dataset {
        let type = makeUTF8StringType()
        defer { H5Tclose(type) }
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let dcpl = makeDCPL(chunk: nil)
        defer { H5Pclose(dcpl) }
        return try makeDataset(path, type: type, space: space, dcpl: dcpl) { id in
            value.withCString { chars in
                var pointer: UnsafePointer<CChar>? = chars
                return H5Dwrite(id, type, moe_H5S_ALL(), moe_H5S_ALL(), H5Transfer.list, &pointer)
            }
        }
    }

    /// Creates an empty extendable series: shape `[0] + rowShape`, first dimension unlimited,
    /// chunked along it (`chunkRows` rows per chunk; by default about 16 KiB per chunk, at least
    /// one row) with shuffle + deflate. Grow it with `H5Dataset.append`. `rowShape` `[]` gives a
    /// 1-D series (metrics), `[width]` a `[steps, width]` table (router loads).
    @discardableResult
    public func createSeries<T: H5Numeric>(_ path: String, of type: T.Type, rowShape: [Int] = [],
                                           chunkRows: Int? = nil) throws -> H5Dataset {
        let object = absolutePath(path)
        guard rowShape.allSatisfy({ $0 > 0 }) else {
            throw HDF5Error.shapeMismatch(file: filePath, object: object,
                                          message: "row shape \(rowShape) must have positive dimensions")
        }
        let rowBytes = elementCount(rowShape) * T.h5DType.byteSize
        let rows = max(1, chunkRows ?? min(4096, max(1, 16 * 1024 / rowBytes)))
        let dcpl = makeDCPL(chunk: [rows] + rowShape)
        defer { H5Pclose(dcpl) }
        var dims = hsizes([0] + rowShape)
        var maxDims = [moe_H5S_UNLIMITED()] + hsizes(rowShape)
        let space = H5Screate_simple(Int32(dims.count), &dims, &maxDims)
        defer { H5Sclose(space) }
        return try makeDataset(path, type: T.h5DType.fileType!, space: space, dcpl: dcpl) { _ in 0 }
    }
}
