import MoECore

/// How a data set is divided among experts (the `branch` strategy trains one expert per shard).
public enum ShardStrategy: Equatable, Sendable {
    /// Shard `i` holds the samples whose domain id `d` has `d % shards == i`: with as many shards
    /// as domains, shard `i` is exactly domain `i`. Needs domain ids.
    case domain
    /// Contiguous, near-equal ranges of row indices (sizes differ by at most one).
    case index
    /// A seeded random near-equal partition (RNG purpose `"shards"`).
    case random(seed: UInt64)
}

extension Dataset {
    /// Row indices of each shard (each list ascending). Together they partition `0..<count`.
    /// Throws if `count < 1`, if `.domain` is asked of data without domain ids, or if a
    /// domain shard would be empty (more shards than domains).
    public func shardIndices(_ count: Int, by strategy: ShardStrategy) throws -> [[Int]] {
        guard count >= 1 else {
            throw DataError.invalidParameter(source: "shards", name: "count", message: "must be at least 1, got \(count)")
        }
        let n = self.count
        switch strategy {
        case .index:
            return (0..<count).map { Array(($0 * n / count)..<(($0 + 1) * n / count)) }
        case .random(let seed):
            var rng = RNG(seed: seed, purpose: "shards")
            let order = rng.permutation(n)
            return (0..<count).map { Array(order[($0 * n / count)..<(($0 + 1) * n / count)]).sorted() }
        case .domain:
            guard let domain else {
                throw DataError.invalidParameter(source: "shards", name: "strategy",
                                                 message: "domain shards need domain ids, and this data set has none")
            }
            var shards = [[Int]](repeating: [], count: count)
            for (index, d) in domain.enumerated() { shards[d % count].append(index) }
            if let empty = shards.firstIndex(where: \.isEmpty) {
                throw DataError.invalidParameter(source: "shards", name: "count",
                    message: "shard \(empty) has no samples: \(count) shards but \(domainCount) domains")
            }
            return shards
        }
    }

    /// The shards as data sets (each with the full class count).
    public func shards(_ count: Int, by strategy: ShardStrategy) throws -> [Dataset] {
        try shardIndices(count, by: strategy).map { subset($0) }
    }
}
