import MoECore
import MoEHDF5

/// Train / validation / test parts of one data set.
public struct DataSplits {
    public let train: Dataset
    public let val: Dataset
    public let test: Dataset
    /// Row indices of each part in the original data set (each sorted ascending).
    public let trainIndices: [Int]
    public let valIndices: [Int]
    public let testIndices: [Int]

    /// The sizes `Dataset.split` gives `n` samples: `round(train · n)`, `round(val · n)` (at most
    /// what is left) and the rest. Pre-flight checks use it to know each part before splitting.
    public static func sizes(of n: Int, train: Double, val: Double) -> (train: Int, val: Int, test: Int) {
        let trainCount = min(n, Int((train * Double(n)).rounded()))
        let valCount = min(n - trainCount, Int((val * Double(n)).rounded()))
        return (trainCount, valCount, n - trainCount - valCount)
    }
}

extension Dataset {
    /// Splits into train, validation and test by fractions of `count` after a seeded shuffle
    /// (RNG purpose `"splits"`; not stratified). Sizes are `round(train · n)` and `round(val · n)`;
    /// the test part gets the rest, so `train + val` may be below 1 and the three parts always
    /// partition the data. Each part keeps the original row order and the class count.
    public func split(train: Double, val: Double, seed: UInt64) throws -> DataSplits {
        func fail(_ name: String, _ message: String) -> DataError {
            DataError.invalidParameter(source: "split", name: name, message: message)
        }
        guard train >= 0, train <= 1 else { throw fail("train", "fraction must be in [0, 1], got \(train)") }
        guard val >= 0, val <= 1 else { throw fail("val", "fraction must be in [0, 1], got \(val)") }
        guard train + val <= 1 + 1e-9 else { throw fail("train + val", "fractions sum to \(train + val) > 1") }
        let n = count
        let (trainCount, valCount, _) = DataSplits.sizes(of: n, train: train, val: val)
        var rng = RNG(seed: seed, purpose: "splits")
        let order = rng.permutation(n)
        let trainIndices = order[0..<trainCount].sorted()
        let valIndices = order[trainCount..<(trainCount + valCount)].sorted()
        let testIndices = order[(trainCount + valCount)...].sorted()
        return DataSplits(train: subset(trainIndices), val: subset(valIndices), test: subset(testIndices),
                          trainIndices: trainIndices, valIndices: valIndices, testIndices: testIndices)
    }
}

/// Per-feature standardisation `(x − mean) / std`, fitted on the training part and applied to
/// every part (so validation and test see no statistics of their own). The statistics are
/// returned so a checkpoint can store them and `eval` can apply the same transform.
///
/// A feature whose standard deviation is below `epsilon` (e.g. a pixel that is always 0) gets
/// `std = 1`, so it is centred but not blown up.
public struct Standardization: Equatable {
    public let mean: [Float]
    public let std: [Float]

    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == std.count, "mean and std lengths differ")
        self.mean = mean
        self.std = std
    }

    /// Population mean and standard deviation of each feature (accumulated in Double).
    public static func fit(_ data: Dataset, epsilon: Float = 1e-6) -> Standardization {
        let (n, f) = (data.count, data.features)
        var sum = [Double](repeating: 0, count: f)
        for i in 0..<n {
            let row = data.x.row(i)
            for j in 0..<f { sum[j] += Double(row[j]) }
        }
        let mean = sum.map { n > 0 ? $0 / Double(n) : 0 }
        var squares = [Double](repeating: 0, count: f)
        for i in 0..<n {
            let row = data.x.row(i)
            for j in 0..<f {
                let d = Double(row[j]) - mean[j]
                squares[j] += d * d
            }
        }
        let std = squares.map { n > 0 ? ($0 / Double(n)).squareRoot() : 1 }
            .map { $0 < Double(epsilon) ? 1 : Float($0) }
        return Standardization(mean: mean.map(Float.init), std: std)
    }

    /// Standardises a tensor `[rows, features]` in place.
    public func apply(inPlace x: Tensor) {
        precondition(x.rank == 2 && x.shape[1] == mean.count, "standardisation for \(mean.count) features, got \(x.shape)")
        // Division, not multiplication by 1/std, so numpy's (x - mean) / std gives the same bits.
        let f = mean.count
        for i in 0..<x.shape[0] {
            let row = x.row(i)
            for j in 0..<f { row[j] = (row[j] - mean[j]) / std[j] }
        }
    }

    /// A standardised copy of `data` (labels and domains shared, features copied).
    public func apply(_ data: Dataset) -> Dataset {
        let x = data.x.copy()
        apply(inPlace: x)
        return Dataset(validatedX: x, y: data.y, domain: data.domain, classes: data.classes)
    }

    /// Applies to all three parts, with statistics from `train`.
    public func apply(_ splits: DataSplits) -> DataSplits {
        DataSplits(train: apply(splits.train), val: apply(splits.val), test: apply(splits.test),
                   trainIndices: splits.trainIndices, valIndices: splits.valIndices, testIndices: splits.testIndices)
    }

    /// Writes `mean` and `std` (float32 `[features]`) into the group at `path` (created if needed).
    public func write(to location: H5Location, path: String) throws {
        try wrappingHDF5 {
            let group = try location.requireGroup(path)
            try group.createDataset("mean", mean)
            try group.createDataset("std", std)
        }
    }

    /// Reads statistics written by `write(to:path:)`.
    public static func read(from location: H5Location, path: String) throws -> Standardization {
        try wrappingHDF5 {
            let group = try location.openGroup(path)
            let mean = try group.read("mean", as: Float.self).values
            let std = try group.read("std", as: Float.self).values
            guard mean.count == std.count else {
                throw DataError.shapeMismatch(file: group.filePath,
                                              message: "\(group.path): mean has \(mean.count) values, std \(std.count)")
            }
            return Standardization(mean: mean, std: std)
        }
    }
}
