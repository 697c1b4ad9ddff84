import CHDF5
#if canImport(Glibc)
import Glibc
#endif

extension H5Location {
    /// Writes a 1-D dataset of variable-length UTF-8 strings (`[values.count]`; h5py reads each
    /// element as `bytes` or, with `.asstr()`, `str`), contiguous and unfiltered. Missing parent
    /// groups are created.
    public func createStrings(_ path: String, _ values: [String]) throws {
        let object = absolutePath(path)
        let type = makeUTF8StringType()
        defer { H5Tclose(type) }
        var dims = hsizes([values.count])
        let space = H5Screate_simple(1, &dims, nil)
        defer { H5Sclose(space) }
        let lcpl = makeIntermediateLCPL()
        defer { H5Pclose(lcpl) }
        let id = try checkID(H5Dcreate2(hid, path, type, space, lcpl, moe_H5P_DEFAULT(), moe_H5P_DEFAULT()),
                             file: filePath, object: object, "create dataset")
        defer { H5Dclose(id) }
        guard !values.isEmpty else { return }
        let copies = values.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        var pointers: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) }
        try check(H5Dwrite(id, type, moe_H5S_ALL(), moe_H5S_ALL(), H5Transfer.list, &pointers),
                  file: filePath, object: object, "write dataset")
    }

    /// Reads a 1-D (or scalar) string dataset, variable- or fixed-length (as h5py writes with
    /// `h5py.string_dtype()` or numpy `S` arrays), as Swift strings (invalid UTF-8 repaired).
    /// A dataset of another type throws `typeMismatch`.
    public func readStrings(_ path: String) throws -> [String] {
        let dataset = try openDataset(path)
        let object = dataset.path
        let fileType = try checkID(H5Dget_type(dataset.hid), file: filePath, object: object, "get the type of dataset")
        defer { H5Tclose(fileType) }
        guard H5Tget_class(fileType) == H5T_STRING else {
            throw HDF5Error.typeMismatch(file: filePath, object: object, expected: "string",
                                         found: H5DType(typeID: fileType).description)
        }
        let count = try dataset.count
        guard count > 0 else { return [] }
        let memType = H5Tcopy(fileType)
        defer { H5Tclose(memType) }
        if H5Tis_variable_str(fileType) > 0 {
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            try check(H5Dread(dataset.hid, memType, moe_H5S_ALL(), moe_H5S_ALL(), H5Transfer.list, &pointers),
                      file: filePath, object: object, "read dataset")
            defer { pointers.forEach { if let p = $0 { H5free_memory(p) } } }
            return pointers.map { $0.map { String(cString: $0) } ?? "" }
        }
        let size = H5Tget_size(fileType)
        var bytes = [UInt8](repeating: 0, count: size * count)
        try bytes.withUnsafeMutableBytes { raw in
            try check(H5Dread(dataset.hid, memType, moe_H5S_ALL(), moe_H5S_ALL(), H5Transfer.list, raw.baseAddress!),
                      file: filePath, object: object, "read dataset")
        }
        let spacePadded = H5Tget_strpad(fileType) == H5T_STR_SPACEPAD
        return (0..<count).map { i in
            let field = bytes[(i * size)..<((i + 1) * size)]
            var text = String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
            if spacePadded { while text.last == " " { text.removeLast() } }
            return text
        }
    }
}
