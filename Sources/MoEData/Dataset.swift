import MoECore

/// A labelled classification data set held in memory.
///
/// `x` is `[count, features]` Float32 (a `Tensor`, shared by reference: treat it as read-only;
/// every operation here that changes values, such as standardisation or subsetting, returns a new
/// `Dataset` with its own tensor). `y` holds class ids in `0..<classes`; `domain`, when present,
/// the domain (cluster, source, client) id of each sample, used by domain shards and by the
/// oracle `domain` router.
public struct Dataset {
    public let x: Tensor
    public let y: [Int]
    public let domain: [Int]?
    /// Number of classes. At least `max(y) + 1`; may be larger when a subset or a file lacks
    /// some class (subsets keep their parent's count so models agree on the output width).
    public let classes: Int

    /// Number of samples.
    public var count: Int { y.count }
    /// Features per sample.
    public var features: Int { x.shape[1] }
    /// Number of domains (`max(domain) + 1`), 0 without domain ids.
    public var domainCount: Int { (domain?.max()).map { $0 + 1 } ?? 0 }

    /// Validates and wraps the arrays. `classes` defaults to `max(y) + 1` (0 for an empty set).
    /// `source` names the origin in error messages.
    public init(x: Tensor, y: [Int], domain: [Int]? = nil, classes: Int? = nil, source: String = "dataset") throws {
        guard x.rank == 2 else {
            throw DataError.shapeMismatch(file: source, message: "x must be [samples, features], found shape \(x.shape)")
        }
        guard y.count == x.shape[0] else {
            throw DataError.shapeMismatch(file: source, message: "y has \(y.count) labels but x has \(x.shape[0]) rows")
        }
        if let domain, domain.count != y.count {
            throw DataError.shapeMismatch(file: source, message: "domain has \(domain.count) ids but x has \(y.count) rows")
        }
        if let index = y.firstIndex(where: { $0 < 0 }) {
            throw DataError.negativeLabel(file: source, index: index, value: y[index])
        }
        if let domain, let index = domain.firstIndex(where: { $0 < 0 }) {
            throw DataError.negativeDomain(file: source, index: index, value: domain[index])
        }
        let needed = (y.max() ?? -1) + 1
        let classes = classes ?? needed
        if classes < needed, let index = y.firstIndex(where: { $0 >= classes }) {
            throw DataError.labelOutOfRange(file: source, index: index, value: y[index], classes: classes)
        }
        self.x = x
        self.y = y
        self.domain = domain
        self.classes = classes
    }

    /// Internal initialiser for values already validated.
    init(validatedX x: Tensor, y: [Int], domain: [Int]?, classes: Int) {
        self.x = x
        self.y = y
        self.domain = domain
        self.classes = classes
    }

    /// The samples at `indices`, in that order (repeats allowed), with their own storage and the
    /// same class count.
    public func subset(_ indices: [Int]) -> Dataset {
        let width = features
        let out = Tensor(shape: [indices.count, width])
        for (row, index) in indices.enumerated() {
            precondition(index >= 0 && index < count, "subset index \(index) outside 0..<\(count)")
            (out.data + row * width).update(from: x.data + index * width, count: width)
        }
        return Dataset(validatedX: out, y: indices.map { y[$0] }, domain: domain.map { d in indices.map { d[$0] } },
                       classes: classes)
    }

    /// Number of samples per class, indexed by class id.
    public func classCounts() -> [Int] {
        var counts = [Int](repeating: 0, count: classes)
        for label in y { counts[label] += 1 }
        return counts
    }

    /// True if both have identical shapes, bit-identical features, and equal labels and domains.
    public func bitwiseEqual(_ other: Dataset) -> Bool {
        x.bitwiseEqual(other.x) && y == other.y && domain == other.domain && classes == other.classes
    }
}
