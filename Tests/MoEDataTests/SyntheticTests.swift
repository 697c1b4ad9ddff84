import MoECore
@testable import MoEData
import MoENN
import XCTest

final class SyntheticTests: XCTestCase {
    func testSameParametersGiveIdenticalBits() throws {
        let spec = SyntheticDomains(samples: 1200, seed: 7)
        let a = try spec.generate()
        let b = try spec.generate()
        XCTAssertTrue(a.bitwiseEqual(b))
        XCTAssertEqual(a.x.shape, [1200, 16])
        XCTAssertEqual(a.classes, 4)
        XCTAssertEqual(a.domainCount, 4)

        var other = spec
        other.seed = 8
        let c = try other.generate()
        XCTAssertFalse(a.x.bitwiseEqual(c.x))
        XCTAssertNotEqual(a.y, c.y)
    }

    func testMoreSamplesDescribeTheSameTask() throws {
        // Calibration does not depend on the sample count: the first draws of a longer stream
        // are the same points whenever they come from the same domain sequence.
        let small = try SyntheticDomains(domains: 1, samples: 100, seed: 3).generate()
        let large = try SyntheticDomains(domains: 1, samples: 300, seed: 3).generate()
        XCTAssertTrue(small.bitwiseEqual(large.subset(Array(0..<100))))
    }

    func testDomainsAndLabelsAreBalanced() throws {
        let spec = SyntheticDomains(features: 12, classes: 5, domains: 3, samples: 3000, seed: 11)
        let data = try spec.generate()
        let domain = try XCTUnwrap(data.domain)
        for k in 0..<3 {
            let members = domain.indices.filter { domain[$0] == k }
            XCTAssertEqual(members.count, 1000)
            let counts = data.subset(members).classCounts()
            let fair = 1000 / 5
            for (label, count) in counts.enumerated() {
                XCTAssertGreaterThan(count, fair * 6 / 10, "domain \(k) class \(label): \(counts)")
                XCTAssertLessThan(count, fair * 14 / 10, "domain \(k) class \(label): \(counts)")
            }
        }
    }

    func testDomainsAreSeparatedAndTeachersDiffer() throws {
        let spec = SyntheticDomains(samples: 2000, seed: 5)
        let data = try spec.generate()
        let domain = try XCTUnwrap(data.domain)
        // Nearest-centre classification recovers the domain almost always.
        let f = data.features
        var centroids = [[Double]](repeating: [Double](repeating: 0, count: f), count: 4)
        var sizes = [Int](repeating: 0, count: 4)
        for i in 0..<data.count {
            sizes[domain[i]] += 1
            for j in 0..<f { centroids[domain[i]][j] += Double(data.x[i * f + j]) }
        }
        for k in 0..<4 { centroids[k] = centroids[k].map { $0 / Double(sizes[k]) } }
        var recovered = 0
        for i in 0..<data.count {
            let distances = (0..<4).map { k in (0..<f).reduce(0.0) { $0 + pow(Double(data.x[i * f + $1]) - centroids[k][$1], 2) } }
            if distances.firstIndex(of: distances.min()!) == domain[i] { recovered += 1 }
        }
        XCTAssertGreaterThan(Double(recovered) / Double(data.count), 0.97)

        // Teachers differ per domain: on the same local offsets z they agree little more than
        // chance (1/4), so no single function of z serves every domain.
        let teachers = (0..<4).map { spec.makeTeacher(domain: $0) }
        var rng = RNG(seed: 99, purpose: "test/z")
        var scratch = TeacherScratch(hidden: spec.teacherHidden, classes: spec.classes)
        var agreements = 0, pairs = 0
        for _ in 0..<500 {
            let z = (0..<f).map { _ in Double(rng.normal()) }
            let labels = teachers.map { $0.classify(z, &scratch).label }
            for a in 0..<4 { for b in (a + 1)..<4 { pairs += 1; if labels[a] == labels[b] { agreements += 1 } } }
        }
        XCTAssertLessThan(Double(agreements) / Double(pairs), 0.45)
    }

    func testParameterValidation() throws {
        XCTAssertThrowsError(try SyntheticDomains(classes: 1).generate()) { error in
            XCTAssertEqual("\(error)", "synthetic: classes: must be at least 2, got 1")
        }
        XCTAssertThrowsError(try SyntheticDomains(labelNoise: 1.5).generate())
        XCTAssertThrowsError(try SyntheticDomains(margin: -1).generate())
        XCTAssertEqual(try SyntheticDomains(samples: 0).generate().count, 0)
        let noisy = try SyntheticDomains(samples: 2000, labelNoise: 0.5, seed: 1).generate()
        let clean = try SyntheticDomains(samples: 2000, labelNoise: 0, seed: 1).generate()
        let changed = zip(noisy.y, clean.y).filter { $0 != $1 }.count
        XCTAssertGreaterThan(changed, 2000 * 3 / 10)  // half replaced, a quarter of those by the same class
        XCTAssertLessThan(changed, 2000 * 45 / 100)
    }

    /// The design promise: a plain residual MLP learns the default task to > 90 % validation
    /// accuracy from 4,000 samples, while the task is far from linearly solvable.
    func testResidualMLPLearnsTheDefaultTask() throws {
        let data = try SyntheticDomains(samples: 4000, seed: 1).generate()
        let splits = try data.split(train: 0.8, val: 0.2, seed: 1)
        let norm = Standardization.fit(splits.train)
        let train = norm.apply(splits.train), val = norm.apply(splits.val)

        func fit(hidden: Int, ffn: Int, blocks: Int, epochs: Int) throws -> Double {
            let model = ResidualMLP(config: ModelConfig(features: 16, classes: 4, hidden: hidden, ffn: ffn, blocks: blocks),
                                    seed: 1)
            let batches = try MiniBatches(train, batchSize: 64, seed: 1)
            let trainer = Trainer(model: model, config: OptimizerConfig(lr: 3e-3),
                                  totalSteps: epochs * batches.batchesPerEpoch, seed: 1)
            for epoch in 0..<epochs {
                batches.start(epoch: epoch)
                while batches.next() { trainer.trainStep(batches.x.data, labels: batches.labelPointer, rows: batches.rows) }
            }
            return model.evaluate(x: val.x, labels: val.y).accuracy
        }
        let mlp = try fit(hidden: 64, ffn: 256, blocks: 2, epochs: 25)
        XCTAssertGreaterThan(mlp, 0.90)
        let linearish = try fit(hidden: 4, ffn: 4, blocks: 0, epochs: 10)
        print("synthetic default task: residual MLP val accuracy \(mlp), width-4 linear-ish model \(linearish)")
        XCTAssertLessThan(linearish, 0.75, "a tiny model that cannot separate domains must not solve it")
    }
}
