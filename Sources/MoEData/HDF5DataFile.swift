import Foundation
import MoECore
import MoEHDF5

/// HDF5 data files (ARCHITECTURE §5.4): in a group (the root by default)
/// - `x` float32 `[n, features]` (float64 accepted, converted to Float32 on reading),
/// - `y` int64 `[n]` (any integer type accepted, e.g. int32),
/// - optional `domain` int64 `[n]` (any integer type accepted),
/// - optional integer attribute `classes` on the group, for files that lack some class.
extension Dataset {
    /// Loads a data set from the HDF5 file at `path`, from `group` ("/" by default). `source`
    /// names the file in errors (default: `path`).
    ///
    /// Nothing about the file is trusted: a path that is not an HDF5 file, a truncated file,
    /// missing datasets, wrong types or ranks, a declared shape larger than memory, and NaN or
    /// infinite features are each one `DataError` naming the file (and dataset, row, column).
    public static func load(hdf5 path: String, group: String = "/", source: String? = nil) throws -> Dataset {
        let name = source ?? path
        if let problem = H5Signature.problem(at: path) { throw DataError.notHDF5(file: name, problem: problem) }
        let file = try wrappingHDF5(source: name) { try H5File.open(path) }
        if group == "/" || group.isEmpty {
            return try load(from: file, source: name)
        }
        guard file.exists(group) else { throw DataError.missingDataset(file: name, name: group) }
        let location = try wrappingHDF5(source: name) { try file.openGroup(group) }
        return try load(from: location, source: "\(name):\(location.path)")
    }

    /// Loads `x`, `y` and optional `domain` from an open file or group. `source` names it in errors.
    public static func load(from location: H5Location, source: String) throws -> Dataset {
        for name in ["x", "y"] {
            switch location.kind(of: name) {
            case .dataset: continue
            case nil: throw DataError.missingDataset(file: source, name: name)
            case .some(let kind):
                throw DataError.shapeMismatch(file: source, message: "'\(name)' must be a dataset, found a \(kind == .group ? "group" : "named type")")
            }
        }
        let x = try readFeatures(location, source: source)
        let y = try readIntegers(location, name: "y", rows: x.shape[0], source: source)
        var domain: [Int]? = nil
        if location.exists("domain") {
            domain = try readIntegers(location, name: "domain", rows: x.shape[0], source: source)
        }
        var classes: Int? = nil
        if location.hasAttribute("classes") {
            classes = try wrappingHDF5(source: source) { try location.attribute("classes", as: Int.self) }
        }
        return try Dataset(x: x, y: y, domain: domain, classes: classes, source: source)
    }

    /// Bytes the loader may allocate for one dataset: the machine's memory.
    static var memoryLimit: Double { Double(ProcessInfo.processInfo.physicalMemory) }

    /// Throws `.tooLarge` when `shape` (elements of `bytesPerElement`) does not fit in memory;
    /// checked before allocating, so a file declaring `[10⁹, 10⁶]` is refused, not a crash.
    static func checkFits(_ shape: [Int], bytesPerElement: Int, name: String, source: String) throws {
        let bytes = shape.reduce(Double(bytesPerElement)) { $0 * Double($1) }
        if bytes > memoryLimit {
            throw DataError.tooLarge(file: source, name: name, shape: shape, bytes: bytes, memory: memoryLimit)
        }
    }

    /// Reads `x` straight into a new tensor's storage, then checks every value is finite.
    private static func readFeatures(_ location: H5Location, source: String) throws -> Tensor {
        try wrappingHDF5(source: source) {
            let dataset = try location.openDataset("x")
            let dtype = try dataset.dtype
            guard dtype == .float32 || dtype == .float64 else {
                throw DataError.wrongType(file: source, name: "x", expected: "float32 (or float64)", found: dtype.description)
            }
            let shape = try dataset.shape
            guard shape.count == 2 else {
                throw DataError.shapeMismatch(file: source, message: "x must be 2-D [samples, features], found shape \(shape)")
            }
            guard shape[1] >= 1 else {
                throw DataError.shapeMismatch(file: source, message: "x has no feature columns (shape \(shape))")
            }
            try checkFits(shape, bytesPerElement: 4, name: "x", source: source)
            let x = Tensor(shape: shape)
            try dataset.read(into: x.buffer)
            if let bad = x.buffer.firstIndex(where: { !$0.isFinite }) {
                throw DataError.nonFinite(file: source, name: "x", row: bad / shape[1], column: bad % shape[1], value: x.buffer[bad])
            }
            return x
        }
    }

    /// Reads a 1-D integer dataset of `rows` values as `[Int]`.
    private static func readIntegers(_ location: H5Location, name: String, rows: Int, source: String) throws -> [Int] {
        try wrappingHDF5(source: source) {
            guard location.kind(of: name) == .dataset else {
                throw DataError.shapeMismatch(file: source, message: "'\(name)' must be a dataset, found a group")
            }
            let dataset = try location.openDataset(name)
            let dtype = try dataset.dtype
            guard dtype.isInteger else {
                let what = name == "y" ? "labels" : "domain ids"
                throw DataError.wrongType(file: source, name: name, expected: "an integer type (int64 or int32; \(what) are whole numbers)",
                                          found: dtype.description)
            }
            let shape = try dataset.shape
            guard shape.count == 1 else {
                throw DataError.shapeMismatch(file: source, message: "\(name) must be 1-D [samples], found shape \(shape)")
            }
            guard shape[0] == rows else {
                let what = name == "y" ? "labels" : "ids"
                throw DataError.shapeMismatch(file: source, message: "\(name) has \(shape[0]) \(what) but x has \(rows) rows")
            }
            return try dataset.read(Int.self)
        }
    }

    /// Writes `x` (float32), `y` (int64), `domain` (int64, if present) and the `classes`
    /// attribute into the group at `path` of `location` (created if needed; "." = the location itself).
    public func write(to location: H5Location, path: String = ".") throws {
        try wrappingHDF5 {
            let group: H5Location = (path == "." || path.isEmpty) ? location : try location.requireGroup(path)
            try group.createDataset("x", from: UnsafeBufferPointer(x.buffer), shape: x.shape)
            try group.createDataset("y", y)
            if let domain { try group.createDataset("domain", domain) }
            try group.setAttribute("classes", classes)
        }
    }

    /// Writes the data set as a new HDF5 data file, atomically (tmp file, fsync, rename).
    public func write(hdf5 path: String) throws {
        try wrappingHDF5 {
            try H5File.createAtomically(path) { file in try write(to: file) }
        }
    }
}
