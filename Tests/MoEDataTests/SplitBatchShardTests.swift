import MoECore
import MoEData
import MoEHDF5
import XCTest

final class SplitTests: DataTestCase {
    func testSplitSizesDisjointnessAndDeterminism() throws {
        let data = try makeDataset(rows: 101)
        let splits = try data.split(train: 0.7, val: 0.15, seed: 3)
        XCTAssertEqual(splits.train.count, 71)  // round(70.7)
        XCTAssertEqual(splits.val.count, 15)    // round(15.15)
        XCTAssertEqual(splits.test.count, 15)
        let all = splits.trainIndices + splits.valIndices + splits.testIndices
        XCTAssertEqual(all.sorted(), Array(0..<101), "the three parts partition the data")
        XCTAssertEqual(Set(splits.trainIndices).intersection(splits.valIndices), [])
        // Rows really are the indexed ones, classes kept.
        XCTAssertTrue(splits.val.bitwiseEqual(data.subset(splits.valIndices)))
        XCTAssertEqual(splits.test.classes, data.classes)

        let again = try data.split(train: 0.7, val: 0.15, seed: 3)
        XCTAssertEqual(again.trainIndices, splits.trainIndices)
        let other = try data.split(train: 0.7, val: 0.15, seed: 4)
        XCTAssertNotEqual(other.trainIndices, splits.trainIndices)

        XCTAssertThrowsError(try data.split(train: 0.9, val: 0.2, seed: 1)) { error in
            XCTAssertTrue("\(error)".contains("sum to"), "\(error)")
        }
        XCTAssertThrowsError(try data.split(train: -0.1, val: 0.2, seed: 1))
        XCTAssertEqual(try data.split(train: 1, val: 0, seed: 1).test.count, 0)
    }

    func testStandardizationFitsOnTrainAndRoundtrips() throws {
        var values: [Float] = []
        for i in 0..<50 { values += [Float(i), 5, Float(i % 7) * 2] }  // middle feature constant
        let data = try Dataset(x: Tensor(shape: [50, 3], values: values), y: [Int](repeating: 0, count: 50))
        let splits = try data.split(train: 0.6, val: 0.2, seed: 9)
        let norm = Standardization.fit(splits.train)
        XCTAssertEqual(norm.std[1], 1, "a constant feature keeps std 1")
        let train = norm.apply(splits.train)
        let stats = Standardization.fit(train)
        for j in [0, 2] {
            XCTAssertEqual(stats.mean[j], 0, accuracy: 1e-5)
            XCTAssertEqual(stats.std[j], 1, accuracy: 1e-5)
        }
        XCTAssertEqual(train.x[1], 0)  // constant feature centred
        // Validation uses the training statistics, not its own.
        let val = norm.apply(splits.val)
        XCTAssertEqual(val.x[0], (splits.val.x[0] - norm.mean[0]) / norm.std[0])
        XCTAssertFalse(splits.train.x.bitwiseEqual(train.x), "apply returns a copy; the input is untouched")

        let file = try H5File.create(path("norm.h5"))
        try norm.write(to: file, path: "model/standardization")
        XCTAssertEqual(try Standardization.read(from: file, path: "model/standardization"), norm)
    }
}

final class BatchTests: DataTestCase {
    func testBatchesAreDeterministicAndCoverEveryEpoch() throws {
        let data = try makeDataset(rows: 23, features: 4)
        let a = try MiniBatches(data, batchSize: 5, seed: 42)
        let b = try MiniBatches(data, batchSize: 5, seed: 42)
        XCTAssertEqual(a.batchesPerEpoch, 5)
        let storage = a.x.data
        var epochOrders: [[Int]] = []
        for epoch in 0..<3 {
            a.start(epoch: epoch)
            b.start(epoch: epoch)
            var seen: [Int] = []
            var sizes: [Int] = []
            while a.next() {
                XCTAssertTrue(b.next())
                XCTAssertEqual(Array(a.indices), Array(b.indices))
                sizes.append(a.rows)
                for (r, index) in a.indices.enumerated() {
                    XCTAssertEqual(a.labels[r], data.y[index])
                    XCTAssertEqual(a.domains?[r], data.domain?[index])
                    for j in 0..<4 { XCTAssertEqual(a.x[r * 4 + j], data.x[index * 4 + j]) }
                }
                seen += a.indices
            }
            XCTAssertFalse(b.next())
            XCTAssertEqual(sizes, [5, 5, 5, 5, 3], "keep: the last batch is partial")
            XCTAssertEqual(seen.sorted(), Array(0..<23), "every sample exactly once per epoch")
            XCTAssertEqual(seen, a.order(epoch: epoch))
            epochOrders.append(seen)
        }
        XCTAssertNotEqual(epochOrders[0], epochOrders[1], "each epoch has its own order")
        XCTAssertEqual(a.x.data, storage, "the batch tensor is reused, not reallocated")

        // Epoch order depends only on (seed, epoch): starting at epoch 2 directly gives the same batches.
        let fresh = try MiniBatches(data, batchSize: 5, seed: 42)
        fresh.start(epoch: 2)
        var direct: [Int] = []
        while fresh.next() { direct += fresh.indices }
        XCTAssertEqual(direct, epochOrders[2])
        let otherSeed = try MiniBatches(data, batchSize: 5, seed: 43)
        XCTAssertNotEqual(otherSeed.order(epoch: 0), epochOrders[0])
    }

    func testDropPolicyAndUnshuffled() throws {
        let data = try makeDataset(rows: 23, withDomain: false)
        let batches = try MiniBatches(data, batchSize: 5, seed: 1, shuffle: false, remainder: .drop)
        XCTAssertEqual(batches.batchesPerEpoch, 4)
        var seen: [Int] = []
        while batches.next() {
            XCTAssertEqual(batches.rows, 5)
            XCTAssertNil(batches.domains)
            seen += batches.indices
        }
        XCTAssertEqual(seen, Array(0..<20))
        XCTAssertEqual(batches.batchIndex, 3)
        XCTAssertThrowsError(try MiniBatches(data, batchSize: 0, seed: 1))
    }
}

final class ShardTests: DataTestCase {
    private func assertPartition(_ shards: [[Int]], of n: Int, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(shards.flatMap { $0 }.sorted(), Array(0..<n), file: file, line: line)
    }

    func testShardsPartitionTheData() throws {
        let data = try makeDataset(rows: 30)  // domains 0, 1, 2 cycling
        let byDomain = try data.shardIndices(3, by: .domain)
        assertPartition(byDomain, of: 30)
        for (i, shard) in byDomain.enumerated() {
            XCTAssertTrue(shard.allSatisfy { data.domain![$0] == i }, "shard \(i) is exactly domain \(i)")
        }
        let byIndex = try data.shardIndices(4, by: .index)
        assertPartition(byIndex, of: 30)
        XCTAssertEqual(byIndex.map(\.count), [7, 8, 7, 8])
        XCTAssertEqual(byIndex[0], Array(0..<7))
        let random = try data.shardIndices(4, by: .random(seed: 5))
        assertPartition(random, of: 30)
        XCTAssertEqual(random.map(\.count), [7, 8, 7, 8])
        XCTAssertNotEqual(random, byIndex)
        XCTAssertEqual(try data.shardIndices(4, by: .random(seed: 5)), random)

        let datasets = try data.shards(3, by: .domain)
        XCTAssertEqual(datasets.map(\.count), [10, 10, 10])
        XCTAssertEqual(datasets[1].domain, [Int](repeating: 1, count: 10))
        XCTAssertEqual(datasets[1].classes, data.classes)

        // Fewer shards than domains: domains are grouped by id modulo the shard count.
        let grouped = try data.shardIndices(2, by: .domain)
        assertPartition(grouped, of: 30)
        XCTAssertTrue(grouped[0].allSatisfy { data.domain![$0] % 2 == 0 })
    }

    func testShardErrors() throws {
        let data = try makeDataset(rows: 30)
        XCTAssertThrowsError(try data.shardIndices(4, by: .domain)) { error in
            XCTAssertTrue("\(error)".contains("4 shards but 3 domains"), "\(error)")
        }
        XCTAssertThrowsError(try makeDataset(rows: 10, withDomain: false).shardIndices(2, by: .domain))
        XCTAssertThrowsError(try data.shardIndices(0, by: .index))
    }
}
