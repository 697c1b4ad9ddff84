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
        try check(H5Dwrite(id, type, moe_H5S_ALL(), moe_H5S_ALL(), moe_H5P_DEFAULT(), &pointers),
                  file: filePath, object: object, "write dataset")
    }
}
