import MoECore

/// Seeded, shuffled mini-batches over a data set, gathered into preallocated buffers.
///
/// Each epoch visits a permutation of the samples drawn from `RNG(seed, "batches", stream: epoch)`
/// (or the identity when `shuffle` is false), so epoch `e` is the same whatever happened before
/// it: a resumed run continues with the same batches. Rows are copied into `x` (`[batchSize,
/// features]`) and labels / domain ids / source indices into buffers of `batchSize`, all
/// allocated once in `init`; iterating allocates nothing.
///
/// **Last partial batch.** With `.keep` (the default) the last batch of an epoch holds the
/// remaining `count % batchSize` samples, so every sample is seen exactly once per epoch; only the
/// first `rows` rows of the buffers are valid. With `.drop` it is skipped, so every batch is full
/// (the dropped samples differ per epoch because the order does).
///
/// Typical use:
/// ```
/// let batches = try MiniBatches(train, batchSize: 64, seed: seed)
/// batches.start(epoch: e)
/// while batches.next() {
///     trainer.trainStep(batches.x.data, labels: batches.labelPointer, rows: batches.rows)
/// }
/// ```
public final class MiniBatches {
    public enum Remainder: Equatable {
        case keep, drop
    }

    public let dataset: Dataset
    public let batchSize: Int
    public let seed: UInt64
    public let shuffle: Bool
    public let remainder: Remainder

    /// The current batch's features, `[batchSize, features]`; rows `0..<rows` are valid.
    public let x: Tensor
    /// Valid rows in the current batch (≤ `batchSize`; 0 before the first `next()`).
    public private(set) var rows = 0
    /// The epoch being iterated.
    public private(set) var epoch = 0
    /// Index of the current batch within the epoch (-1 before the first `next()`).
    public private(set) var batchIndex = -1

    private let labelStorage: UnsafeMutableBufferPointer<Int>
    private let domainStorage: UnsafeMutableBufferPointer<Int>?
    private let indexStorage: UnsafeMutableBufferPointer<Int>
    private var order: [Int]
    private var cursor = 0

    public init(_ dataset: Dataset, batchSize: Int, seed: UInt64, shuffle: Bool = true,
                remainder: Remainder = .keep) throws {
        guard batchSize >= 1 else {
            throw DataError.invalidParameter(source: "batches", name: "batch_size", message: "must be at least 1, got \(batchSize)")
        }
        self.dataset = dataset
        self.batchSize = batchSize
        self.seed = seed
        self.shuffle = shuffle
        self.remainder = remainder
        x = Tensor(shape: [batchSize, dataset.features])
        labelStorage = .allocate(capacity: batchSize)
        labelStorage.initialize(repeating: 0)
        indexStorage = .allocate(capacity: batchSize)
        indexStorage.initialize(repeating: 0)
        if dataset.domain != nil {
            let storage = UnsafeMutableBufferPointer<Int>.allocate(capacity: batchSize)
            storage.initialize(repeating: 0)
            domainStorage = storage
        } else {
            domainStorage = nil
        }
        order = Array(0..<dataset.count)
        start(epoch: 0)
    }

    deinit {
        labelStorage.deallocate()
        indexStorage.deallocate()
        domainStorage?.deallocate()
    }

    /// Batches per epoch under the remainder policy.
    public var batchesPerEpoch: Int {
        let n = dataset.count
        return remainder == .keep ? (n + batchSize - 1) / batchSize : n / batchSize
    }

    /// Labels of the current batch (`rows` values).
    public var labels: UnsafeBufferPointer<Int> { UnsafeBufferPointer(rebasing: labelStorage[0..<rows]) }
    /// Pointer to the label buffer, for kernels taking `UnsafePointer<Int>` plus a row count
    /// (valid while this iterator lives; rows `0..<rows` hold the current batch).
    public var labelPointer: UnsafePointer<Int> { UnsafePointer(labelStorage.baseAddress!) }
    /// Domain ids of the current batch, if the data set has them.
    public var domains: UnsafeBufferPointer<Int>? {
        domainStorage.map { UnsafeBufferPointer(rebasing: $0[0..<rows]) }
    }
    /// Row indices (into `dataset`) of the current batch.
    public var indices: UnsafeBufferPointer<Int> { UnsafeBufferPointer(rebasing: indexStorage[0..<rows]) }

    /// The sample order of `epoch` (a permutation of `0..<count`).
    public func order(epoch: Int) -> [Int] {
        var result = Array(0..<dataset.count)
        if shuffle {
            var rng = RNG(seed: seed, purpose: "batches", stream: UInt64(epoch))
            rng.shuffle(&result)
        }
        return result
    }

    /// Rewinds to the first batch of `epoch`.
    public func start(epoch: Int) {
        precondition(epoch >= 0, "epoch must not be negative")
        self.epoch = epoch
        for i in order.indices { order[i] = i }  // in place: no allocation
        if shuffle {
            var rng = RNG(seed: seed, purpose: "batches", stream: UInt64(epoch))
            rng.shuffle(&order)
        }
        cursor = 0
        rows = 0
        batchIndex = -1
    }

    /// Gathers the next batch into the buffers; false at the end of the epoch.
    public func next() -> Bool {
        let remaining = order.count - cursor
        let size = min(batchSize, remaining)
        guard size > 0, size == batchSize || remainder == .keep else {
            rows = 0
            return false
        }
        let width = dataset.features
        let source = dataset.x.data
        for r in 0..<size {
            let index = order[cursor + r]
            (x.data + r * width).update(from: source + index * width, count: width)
            labelStorage[r] = dataset.y[index]
            indexStorage[r] = index
            if let domainStorage, let domain = dataset.domain { domainStorage[r] = domain[index] }
        }
        cursor += size
        rows = size
        batchIndex += 1
        return true
    }
}
