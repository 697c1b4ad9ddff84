import CHDF5

/// The dataset transfer property list of every `H5Dread` and `H5Dwrite` here.
///
/// With `H5P_DEFAULT`, a read or write that converts types (variable-length strings always do:
/// memory `char *` to the file's heap references) gets a 1 MiB conversion buffer and a 1 MiB
/// background buffer that HDF5 allocates zeroed on every call. Writing a run's `run.h5` (eight
/// string datasets) spent ~12 ms zeroing fresh pages, in every run and every worker. HDF5
/// converts in passes of at most the buffer's size, so a 64 KiB buffer (4,096 string
/// references, 16,384 floats per pass) gives the same bytes for any size of data.
enum H5Transfer {
    /// Bytes of the conversion and background buffers.
    static let bufferBytes = 64 * 1024

    /// Created on first use and kept for the process (HDF5 closes it at exit).
    nonisolated(unsafe) static let list: hid_t = {
        let plist = H5Pcreate(moe_H5P_DATASET_XFER())
        guard plist >= 0, H5Pset_buffer(plist, bufferBytes, nil, nil) >= 0 else { return moe_H5P_DEFAULT() }
        return plist
    }()
}
