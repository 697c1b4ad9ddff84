import MoECore

/// A growable activation buffer: storage is allocated for the largest batch seen so far and
/// reused for every smaller one (row-major prefixes), so the training loop stops allocating
/// after its first step.
public final class Scratch {
    public let width: Int
    public private(set) var capacityRows = 0
    public private(set) var tensor = Tensor(shape: [0])

    public init(width: Int) { self.width = width }

    /// Makes room for `rows` rows (keeps the storage when it is already large enough).
    public func ensure(rows: Int) {
        if rows > capacityRows {
            tensor = Tensor(shape: [rows, width])
            capacityRows = rows
        }
    }

    @inlinable public var data: UnsafeMutablePointer<Float> { tensor.data }
}
