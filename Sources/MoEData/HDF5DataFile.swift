import MoECore
import MoEHDF5

/// HDF5 data files (ARCHITECTURE §5.4): in a group (the root by default)
/// - `x` float32 `[n, features]` (float64 accepted, converted to Float32 on reading),
/// - `y` int64 `[n]` (any integer type accepted, e.g. int32),
/// - optional `domain` int64 `[n]` (any integer type accepted),
/// - optional integer attribute `classes` on the group, for files that lack some class.
extension Dataset {
    /// Loads a data set from the HDF5 file at `path`, from `group` ("/" by default).
    public static func load(hdf5 path: String, group: String = "/") throws -> Dataset {
        let file = try wrappingHDF5 { try H5File.open(path) }
        if group == "/" || group.isEmpty {
            return try load(from: file, source: path)
        }
        guard file.exists(group) else { throw DataError.missingDataset(file: path, name: group) }
        let location = try wrappingHDF5 { try file.openGroup(group) }
        return try load(from: location, source: "\(path):\(location.path)")
    }

    /// Loads `x`, `y` and optional `domain` from an open file or group. `source` names it in errors.
    public static func load(from location: H5Location, source: String) throws -> Dataset {
        for name in ["x", "y"] where location.kind(of: name) != .dataset {
            throw DataError.missingDataset(file: source, name: name)
        }
        let x = try readFeatures(location, source: source)
        let y = try readIntegers(location, name: "y", source: source)
        guard y.count == x.shape[0] else {
            throw DataError.shapeMismatch(file: source, message: "y has \(y.count) labels but x has \(x.shape[0]) rows")
        }
        var domain: [Int]? = nil
        if location.exists("domain") {
            domain = try readIntegers(location, name: "domain", source: source)
        }
        var classes: Int? = nil
        if location.hasAttribute("classes") {
            classes = try wrappingHDF5 { try location.attribute("classes", as: Int.self) }
        }
        return try Dataset(x: x, y: y, domain: domain, classes: classes, source: source)
    }

    /// Reads `x` straight into a new tensor's storage.
    private static func readFeatures(_ location: H5Location, source: String) throws -> Tensor {
        try wrappingHDF5 {
            let dataset = try location.openDataset("x")
            let dtype = try dataset.dtype
            guard dtype == .float32 || dtype == .float64 else {
                throw DataError.wrongType(file: source, name: "x", expected: "float32 (or float64)", found: dtype.description)
            }
            let shape = try dataset.shape
            guard shape.count == 2 else {
                throw DataError.shapeMismatch(file: source, message: "x must be 2-D [samples, features], found shape \(shape)")
            }
            let x = Tensor(shape: shape)
            try dataset.read(into: x.buffer)
            return x
        }
    }

    /// Reads a 1-D integer dataset as `[Int]`.
    private static func readIntegers(_ location: H5Location, name: String, source: String) throws -> [Int] {
        try wrappingHDF5 {
            let dataset = try location.openDataset(name)
            let dtype = try dataset.dtype
            guard dtype.isInteger else {
                throw DataError.wrongType(file: source, name: name, expected: "int64 (or int32)", found: dtype.description)
            }
            let shape = try dataset.shape
            guard shape.count == 1 else {
                throw DataError.shapeMismatch(file: source, message: "\(name) must be 1-D [samples], found shape \(shape)")
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
