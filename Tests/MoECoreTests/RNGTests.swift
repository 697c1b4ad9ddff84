import XCTest
@testable import MoECore

final class RNGTests: XCTestCase {
    // MARK: Philox4x32-10 and the key derivation, against published vectors

    /// Random123 `kat_vectors`, lines `philox4x32 10 <ctr ×4> <key ×2> <out ×4>`.
    func testPhiloxKnownAnswerVectors() {
        typealias V4 = (UInt32, UInt32, UInt32, UInt32)
        let cases: [(ctr: V4, key: (UInt32, UInt32), out: V4)] = [
            ((0, 0, 0, 0), (0, 0),
             (0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8)),
            ((0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff), (0xffff_ffff, 0xffff_ffff),
             (0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd)),
            ((0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), (0xa409_3822, 0x299f_31d0),
             (0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1)),
        ]
        for (i, c) in cases.enumerated() {
            let r = RNG.philox(counter: c.ctr, key: c.key)
            XCTAssertEqual([r.0, r.1, r.2, r.3], [c.out.0, c.out.1, c.out.2, c.out.3],
                           "Philox4x32-10 known-answer vector \(i)")
        }
    }

    /// Published FNV-1a 64 vectors and SplitMix64's first outputs from state 0.
    func testHashAndMixerKnownAnswers() {
        XCTAssertEqual(RNG.fnv1a(""), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(RNG.fnv1a("a"), 0xaf63_dc4c_8601_ec8c)
        XCTAssertEqual(RNG.fnv1a("foobar"), 0x8594_4171_f739_67e8)
        // SplitMix64 seeded with 0 outputs mix(0), mix(γ), mix(2γ), …
        XCTAssertEqual(RNG.mix(0), 0xe220_a839_7b1d_cdaf)
        XCTAssertEqual(RNG.mix(0x9e37_79b9_7f4a_7c15), 0x6e78_9e6a_a1b9_65f4)
    }

    /// The documented layout: key = mix(seed ^ fnv1a(purpose)), counter = (block lo, block hi,
    /// stream lo, stream hi). Pins the bit stream, so a change that would alter every stored
    /// experiment's numbers fails here; also shows any block is computable on its own.
    func testStreamIsPhiloxOverDocumentedCounterAndKey() {
        let seed: UInt64 = 0x0123_4567_89ab_cdef
        let stream: UInt64 = 0x0000_0005_0000_0007
        var rng = RNG(seed: seed, purpose: "init/blocks/0/ffn/w1", stream: stream)
        let key = RNG.mix(seed ^ RNG.fnv1a("init/blocks/0/ffn/w1"))
        XCTAssertEqual(rng.key, key)
        XCTAssertEqual(rng.seed, seed)
        XCTAssertEqual(rng.stream, stream)
        for block in UInt64(0)..<5 {
            let expected = RNG.philox(
                counter: (UInt32(truncatingIfNeeded: block), UInt32(truncatingIfNeeded: block >> 32), 7, 5),
                key: (UInt32(truncatingIfNeeded: key), UInt32(truncatingIfNeeded: key >> 32)))
            let got = (0..<4).map { _ in rng.nextUInt32() }
            XCTAssertEqual(got, [expected.0, expected.1, expected.2, expected.3], "block \(block)")
            XCTAssertEqual(rng.block, block + 1)
        }
        // nextUInt64 is two 32-bit draws, high word first.
        var a = RNG(seed: 9, purpose: "u64"), b = a
        let hi = UInt64(b.nextUInt32()), lo = UInt64(b.nextUInt32())
        XCTAssertEqual(a.nextUInt64(), hi << 32 | lo)
    }

    // MARK: Determinism and independence

    func testSameSeedPurposeStreamGivesIdenticalSequence() {
        var a = RNG(seed: 42, purpose: "batches", stream: 3)
        var b = RNG(seed: 42, purpose: "batches", stream: 3)
        let xs = (0..<1001).map { _ in a.nextUInt32() }
        let ys = (0..<1001).map { _ in b.nextUInt32() }
        XCTAssertEqual(xs, ys)
        // A copy taken mid-sequence (odd position, spare normal pending) continues identically.
        _ = a.normal()
        var c = a
        XCTAssertEqual((0..<99).map { _ in a.normal() }, (0..<99).map { _ in c.normal() })
        XCTAssertEqual(a.nextUInt32(), c.nextUInt32())
    }

    func testDifferentSeedPurposeOrStreamGivesDifferentSequences() {
        func draw(_ seed: UInt64, _ purpose: String, _ stream: UInt64) -> [UInt32] {
            var r = RNG(seed: seed, purpose: purpose, stream: stream)
            return (0..<64).map { _ in r.nextUInt32() }
        }
        let base = draw(42, "init", 0)
        let variants = [draw(43, "init", 0), draw(42, "init2", 0), draw(42, "Init", 0),
                        draw(42, "init", 1), draw(42, "init", 1 << 32), draw(0, "init", 0)]
        for (i, v) in variants.enumerated() {
            // Independent 32-bit streams agree by chance on ~64/2³² positions: effectively none.
            let same = zip(base, v).filter { $0 == $1 }.count
            XCTAssertLessThanOrEqual(same, 1, "variant \(i) is not independent of the base stream")
        }
    }

    func testDerive() {
        var parent = RNG(seed: 7, purpose: "init")
        let child = parent.derive("blocks/0")
        XCTAssertEqual(child.seed, 7)
        XCTAssertEqual(child.key, RNG.mix(parent.key ^ RNG.fnv1a("blocks/0") ^ RNG.mix(parent.stream)))
        // The parent's stream matters: the same purpose under another parent stream differs.
        XCTAssertNotEqual(RNG(seed: 7, purpose: "init", stream: 1).derive("x").key,
                          RNG(seed: 7, purpose: "init", stream: 2).derive("x").key)
        // Deterministic and independent of how far the parent has been drawn.
        var c1 = child
        _ = (0..<13).map { _ in parent.nextUInt32() }
        var c2 = parent.derive("blocks/0")
        let xs = (0..<32).map { _ in c1.nextUInt32() }
        XCTAssertEqual(xs, (0..<32).map { _ in c2.nextUInt32() })
        // Differs from the parent, from a sibling, from another stream and from a root
        // generator named after the sub-purpose.
        let others = [RNG(seed: 7, purpose: "init"), parent.derive("blocks/1"),
                      parent.derive("blocks/0", stream: 1), RNG(seed: 7, purpose: "blocks/0")]
        for (i, o) in others.enumerated() {
            var other = o
            let ys = (0..<32).map { _ in other.nextUInt32() }
            XCTAssertLessThanOrEqual(zip(xs, ys).filter { $0 == $1 }.count, 1, "other \(i)")
        }
        // Derivation under a different seed differs too.
        var d = RNG(seed: 8, purpose: "init").derive("blocks/0")
        XCTAssertNotEqual(xs, (0..<32).map { _ in d.nextUInt32() })
    }

    // MARK: Distributions

    func testUniformRangeMeanVariance() {
        var rng = RNG(seed: 1, purpose: "uniform")
        let n = 100_000
        let xs = (0..<n).map { _ in rng.uniform() }
        XCTAssertTrue(xs.allSatisfy { $0 >= 0 && $0 < 1 })
        let (mean, variance) = meanAndVariance(xs)
        // σ(mean) = √(1/12/n) ≈ 0.00091; σ(variance) = √((1/80 − 1/144)/n) ≈ 0.00024. ~5σ bounds.
        XCTAssertEqual(mean, 0.5, accuracy: 0.005)
        XCTAssertEqual(variance, 1.0 / 12.0, accuracy: 0.0015)
        // 24-bit resolution: every value is k·2⁻²⁴, from the top 24 bits of the next UInt32.
        var a = RNG(seed: 2, purpose: "u"), b = a
        for _ in 0..<100 { XCTAssertEqual(a.uniform(), Float(b.nextUInt32() >> 8) * 0x1p-24) }
        // Scaled range.
        let ys = (0..<10_000).map { _ in rng.uniform(-3, 5) }
        XCTAssertTrue(ys.allSatisfy { $0 >= -3 && $0 < 5 })
        XCTAssertEqual(meanAndVariance(ys).mean, 1, accuracy: 0.12)  // σ(mean) ≈ 0.023
    }

    func testNormalMomentsAndTails() {
        var rng = RNG(seed: 1, purpose: "normal")
        let n = 100_000
        let xs = (0..<n).map { _ in rng.normal() }
        XCTAssertTrue(xs.allSatisfy { $0.isFinite })
        let (mean, variance) = meanAndVariance(xs)
        XCTAssertEqual(mean, 0, accuracy: 0.02)                   // σ(mean) ≈ 0.0032
        XCTAssertEqual(variance.squareRoot(), 1, accuracy: 0.01)  // σ(std) ≈ 0.0022
        // Tails: P(|z|>2) = 0.0455, P(|z|>3) = 0.0027 (binomial σ ≈ 0.00066 and 0.00016).
        let beyond2 = Double(xs.filter { abs($0) > 2 }.count) / Double(n)
        let beyond3 = Double(xs.filter { abs($0) > 3 }.count) / Double(n)
        XCTAssertEqual(beyond2, 0.0455, accuracy: 0.004)
        XCTAssertEqual(beyond3, 0.0027, accuracy: 0.001)
        // Symmetric: about half negative; Box–Muller with 24-bit u1 cannot exceed √(2·24·ln 2) ≈ 5.77.
        XCTAssertEqual(Double(xs.filter { $0 < 0 }.count) / Double(n), 0.5, accuracy: 0.01)
        XCTAssertLessThan(xs.map { abs($0) }.max()!, 5.8)
        // Excess kurtosis ≈ 0 (a uniform or a two-point distribution would fail this).
        let m4 = xs.reduce(0.0) { $0 + pow(Double($1) - mean, 4) } / Double(n)
        XCTAssertEqual(m4 / (variance * variance), 3, accuracy: 0.15)
    }

    func testBernoulliFrequency() {
        var rng = RNG(seed: 1, purpose: "bernoulli")
        let n = 100_000
        let hits = (0..<n).filter { _ in rng.bernoulli(0.3) }.count
        XCTAssertEqual(Double(hits) / Double(n), 0.3, accuracy: 0.01)  // σ ≈ 0.0014
        XCTAssertFalse((0..<1000).contains { _ in rng.bernoulli(0) })
        XCTAssertTrue((0..<1000).allSatisfy { _ in rng.bernoulli(1) })
    }

    func testIntBelowRangeAndUniformity() {
        var rng = RNG(seed: 1, purpose: "int")
        for bound in [1, 2, 3, 7, 10, 1000, Int(UInt32.max)] {
            for _ in 0..<2000 {
                let v = rng.int(below: bound)
                XCTAssertTrue(v >= 0 && v < bound, "\(v) not in 0..<\(bound)")
            }
        }
        XCTAssertTrue((0..<100).allSatisfy { _ in rng.int(below: 1) == 0 })
        // χ² with 9 and 6 degrees of freedom: the 99.99% quantiles are 33.7 and 27.9.
        for (bound, limit) in [(10, 40.0), (7, 35.0)] {
            var counts = [Int](repeating: 0, count: bound)
            for _ in 0..<(10_000 * bound) { counts[rng.int(below: bound)] += 1 }
            XCTAssertLessThan(chiSquareUniform(counts), limit, "int(below: \(bound)) counts \(counts)")
        }
        // A bound just above 2³¹ is the worst case for modulo bias (a biased `% n` would put
        // about two thirds of the draws in the lower half); Lemire's method stays at one half.
        let big = (1 << 31) + (1 << 30)
        let low = (0..<20_000).filter { _ in rng.int(below: big) < big / 2 }.count
        XCTAssertEqual(Double(low) / 20_000, 0.5, accuracy: 0.02)
    }

    func testPermutationIsDeterministicPermutation() {
        var a = RNG(seed: 5, purpose: "perm"), b = RNG(seed: 5, purpose: "perm")
        let p = a.permutation(1000)
        XCTAssertEqual(p.sorted(), Array(0..<1000))
        XCTAssertEqual(p, b.permutation(1000))
        XCTAssertNotEqual(p, Array(0..<1000))
        var c = RNG(seed: 6, purpose: "perm")
        XCTAssertNotEqual(p, c.permutation(1000))
        XCTAssertEqual(a.permutation(0), [])
        XCTAssertEqual(a.permutation(1), [0])
        // All 6 orders of 3 elements about equally often (χ², 5 dof: 99.99% quantile 25.7).
        var counts: [[Int]: Int] = [:]
        for _ in 0..<12_000 { counts[a.permutation(3), default: 0] += 1 }
        XCTAssertEqual(counts.count, 6)
        XCTAssertLessThan(chiSquareUniform(Array(counts.values)), 30)
        // shuffle keeps the multiset.
        var words = ["a", "b", "b", "c", "d", "e", "f"]
        a.shuffle(&words)
        XCTAssertEqual(words.sorted(), ["a", "b", "b", "c", "d", "e", "f"])
    }

    func testFillNormalAndFillUniform() {
        let t = Tensor(shape: [200, 250])
        var rng = RNG(seed: 3, purpose: "fill")
        var replay = rng
        rng.fillNormal(t, mean: 3, std: 0.5)
        let (mean, variance) = meanAndVariance(t.array)
        XCTAssertEqual(mean, 3, accuracy: 0.01)                     // σ(mean) ≈ 0.0022
        XCTAssertEqual(variance.squareRoot(), 0.5, accuracy: 0.01)  // σ(std) ≈ 0.0016
        // Exactly the sequence of normal() draws, scaled: fills are reproducible.
        for i in 0..<t.count { XCTAssertEqual(t[i], 3 + 0.5 * replay.normal()) }

        let u = Tensor(shape: [50_000])
        u.fill(.nan)
        rng.fillUniform(u, low: -2, high: 5)
        XCTAssertTrue(u.array.allSatisfy { $0 >= -2 && $0 < 5 })  // also: no NaN left unwritten
        let (um, uv) = meanAndVariance(u.array)
        XCTAssertEqual(um, 1.5, accuracy: 0.05)              // σ(mean) ≈ 0.009
        XCTAssertEqual(uv, 49.0 / 12.0, accuracy: 0.1)
    }

    /// A rank holding rows [r₀, r₁) of a batch skips the earlier rows' draws and must then see
    /// exactly the values one process drawing the whole batch gives those rows.
    func testSkipLandsWhereDrawingWould() {
        for start in [0, 1, 3, 4, 5, 8, 1001] {
            var full = RNG(seed: 9, purpose: "dropout/blocks/0", stream: 7)
            let all = (0..<(start + 13)).map { _ in full.uniform() }
            var skipped = RNG(seed: 9, purpose: "dropout/blocks/0", stream: 7)
            skipped.skip(start)
            XCTAssertEqual((0..<13).map { _ in skipped.uniform() }, Array(all[start...]), "skip(\(start))")
        }
        // Skipping from a position mid-block, and twice, adds up.
        var a = RNG(seed: 1, purpose: "p"), b = RNG(seed: 1, purpose: "p")
        _ = a.nextUInt32(); a.skip(6); a.skip(2)
        for _ in 0..<9 { _ = b.nextUInt32() }
        XCTAssertEqual(a.nextUInt32(), b.nextUInt32())
        for start in [0, 1, 2, 7] {
            var full = RNG(seed: 4, purpose: "router/noise/0")
            let all = (0..<(start + 6)).map { _ in full.normal() }
            var skipped = RNG(seed: 4, purpose: "router/noise/0")
            skipped.skipNormals(start)
            XCTAssertEqual((0..<6).map { _ in skipped.normal() }, Array(all[start...]), "skipNormals(\(start))")
        }
    }
}
