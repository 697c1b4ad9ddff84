import Foundation
import XCTest
@testable import MoEComm

/// A small deterministic generator for the tests (SplitMix64).
private struct TestRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    /// Roughly normal (sum of uniforms), mean 0, standard deviation about `scale`.
    mutating func gaussian(_ scale: Float = 1) -> Float {
        var s: Float = 0
        for _ in 0..<4 { s += uniform() }
        return (s - 2) * 1.732 * scale
    }
}

/// The encode/decode speed is measured by `make bench` (moe-bench, `Bench.gradientCompression`), not here.
final class GradientCompressionTests: XCTestCase {
    // MARK: helpers

    private func encode(_ c: GradientCompressor, _ g: [Float]) -> [UInt8] {
        g.withUnsafeBufferPointer { Array(c.encode($0.baseAddress!)) }
    }

    private func decode(_ bytes: [UInt8], _ scheme: CompressionScheme, _ n: Int) throws -> [Float] {
        var sum = [Float](repeating: 0, count: n)
        try bytes.withUnsafeBytes { b in
            try sum.withUnsafeMutableBufferPointer { try GradientCompressor.decodeAdd(b, scheme: scheme, count: n, into: $0.baseAddress!) }
        }
        return sum
    }

    private func half(_ x: Float) -> UInt16 { GradientKernels.halfBits(x) }

    // MARK: fp16

    func testFP16HandCheckedValues() throws {
        XCTAssertEqual(half(1.0), 0x3C00)
        XCTAssertEqual(half(-2.0), 0xC000)
        XCTAssertEqual(half(0), 0x0000)
        XCTAssertEqual(half(-0.0), 0x8000)
        XCTAssertEqual(half(65504), 0x7BFF)
        // 65520 is the tie between 65504 and 65536 (= inf in binary16): saturates to 65504.
        XCTAssertEqual(half(65520), 0x7BFF)
        XCTAssertEqual(half(1e6), 0x7BFF)
        XCTAssertEqual(half(-70000), 0xFBFF)
        XCTAssertEqual(half(.infinity), 0x7C00)
        XCTAssertEqual(half(-.infinity), 0xFC00)
        XCTAssertEqual(half(.nan), 0x7E00)
        // 0.1 → 0x2E66 = 0.0999755859375.
        XCTAssertEqual(half(0.1), 0x2E66)
        XCTAssertEqual(GradientKernels.floatFromHalf(0x2E66), 0.0999755859375)
        // Subnormals: 2^-24 is the smallest; 1e-8 < 2^-25 rounds to 0; 2^-25 is a tie → 0 (even);
        // 3·2^-25 is a tie between 1 and 2 ulps → 2 (even); 2^-14 is the smallest normal.
        XCTAssertEqual(half(1e-8), 0x0000)
        XCTAssertEqual(half(-1e-8), 0x8000)
        XCTAssertEqual(half(0x1p-24), 0x0001)
        XCTAssertEqual(half(0x1p-25), 0x0000)
        XCTAssertEqual(half(0x1.8p-24), 0x0002)
        XCTAssertEqual(half(0x1.000002p-25), 0x0001)
        XCTAssertEqual(half(0x1p-14), 0x0400)
        XCTAssertEqual(half(0x1.ff8p-15), 0x03FF)   // the largest subnormal
        XCTAssertEqual(half(0x1.ffcp-15), 0x0400)   // its tie with 2^-14 rounds up into the normals (even)
        XCTAssertEqual(GradientKernels.floatFromHalf(0x0001), 0x1p-24)
        XCTAssertEqual(GradientKernels.floatFromHalf(0x03FF), 1023 * 0x1p-24)
        XCTAssertEqual(GradientKernels.floatFromHalf(0x8000).bitPattern, (-0.0 as Float).bitPattern)
        // Ties to even in the normal range: 1 + 2^-11 → 1; 1 + 3·2^-11 → 1 + 2^-9;
        // 2049 → 2048, 2051 → 2052 (the spacing is 2 there).
        XCTAssertEqual(half(1 + 0x1p-11), 0x3C00)
        XCTAssertEqual(half(1 + 0x1.8p-10), 0x3C02)
        XCTAssertEqual(half(2049), 0x6800)
        XCTAssertEqual(half(2051), 0x6802)
        XCTAssertEqual(half(2049.001), 0x6801)
        XCTAssertTrue(GradientKernels.floatFromHalf(0x7E00).isNaN)
        XCTAssertEqual(GradientKernels.floatFromHalf(0xFC00), -.infinity)

        // Through the compressor: saturation leaves the excess in the residual.
        let c = try GradientCompressor(scheme: .fp16, count: 4, ratio: 1)
        let bytes = encode(c, [1, 65520, 0.1, 1e-8])
        XCTAssertEqual(try decode(bytes, .fp16, 4), [1, 65504, 0.0999755859375, 0])
        XCTAssertEqual(c.residual, [0, 16, 0.1 - 0.0999755859375, 1e-8])
    }

    #if !((os(macOS) || targetEnvironment(macCatalyst)) && arch(x86_64))
    /// Every binary16 decodes like Swift's `Float16`, and random floats (all exponents) encode
    /// like `Float16`'s round-to-nearest-even conversion (saturating where it gives inf).
    func testFP16MatchesFloat16OnEveryHalfAndRandomFloats() {
        for h in 0...UInt16.max {
            let reference = Float(Float16(bitPattern: h))
            let mine = GradientKernels.floatFromHalf(h)
            if reference.isNaN { XCTAssertTrue(mine.isNaN); continue }
            XCTAssertEqual(mine.bitPattern, reference.bitPattern, "half 0x\(String(h, radix: 16))")
            XCTAssertEqual(half(mine), h)
        }
        var rng = TestRandom(7)
        var mismatches = 0
        for _ in 0..<200_000 {
            // Exponents from 2^-30 to 2^18, random mantissa and sign.
            let bits = UInt32(truncatingIfNeeded: rng.next())
            let x = Float(bitPattern: (bits & 0x807F_FFFF) | ((97 + (bits >> 23) % 49) << 23))
            var expected = Float16(x).bitPattern
            if expected & 0x7FFF == 0x7C00 { expected = (expected & 0x8000) | 0x7BFF }
            if half(x) != expected { mismatches += 1 }
        }
        XCTAssertEqual(mismatches, 0)
    }
    #endif

    /// Optional cross-check against NumPy's float32 → float16 (round to nearest even), when
    /// `MOE_RUN_PYTHON` names a Python with NumPy.
    func testFP16MatchesNumPyWhenPythonIsSet() throws {
        guard let python = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"], !python.isEmpty else {
            throw XCTSkip("MOE_RUN_PYTHON is not set")
        }
        var rng = TestRandom(11)
        let xs: [Float] = (0..<100_000).map { _ in
            let bits = UInt32(truncatingIfNeeded: rng.next())
            return Float(bitPattern: (bits & 0x807F_FFFF) | ((97 + (bits >> 23) % 49) << 23))
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-fp16-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("x.f32"), output = dir.appendingPathComponent("h.u16")
        try xs.withUnsafeBytes { try Data($0).write(to: input) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", "import numpy as np, sys; np.fromfile(sys.argv[1], '<f4').astype(np.float16).view('<u2').tofile(sys.argv[2])",
                       input.path, output.path]
        try p.run(); p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let data = try Data(contentsOf: output)
        XCTAssertEqual(data.count, 2 * xs.count)
        let reference = data.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
        var mismatches = 0
        for (x, r) in zip(xs, reference) {
            let expected = r & 0x7FFF == 0x7C00 ? (r & 0x8000) | 0x7BFF : r
            if half(x) != expected { mismatches += 1 }
        }
        XCTAssertEqual(mismatches, 0)
    }

    // MARK: int8

    func testInt8KnownBlocks() throws {
        // Block 0: max 127 → s = 1; v/s rounds to nearest, ties to even: 0.5 → 0, 1.5 → 2, 2.5 → 2,
        // −0.5 → 0, −126.6 → −127, 3.49 → 3. Block 1 (entries 256…): max 254 → s = 2.
        var g = [Float](repeating: 0, count: 260)
        g[0] = 127; g[1] = -0.5; g[2] = 0.5; g[3] = 1.5; g[4] = 2.5; g[5] = -126.6; g[6] = 3.49
        g[256] = 254; g[257] = 3; g[258] = 5; g[259] = -1
        let c = try GradientCompressor(scheme: .int8, count: 260)
        let bytes = encode(c, g)
        XCTAssertEqual(bytes.count, 16 + 2 * 4 + 260)
        XCTAssertEqual(Array(bytes[0..<16]), [0x47, 0x43, 1, 2, 4, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
        let scales = bytes[16..<24].withUnsafeBytes { [Float(bitPattern: $0.loadUnaligned(as: UInt32.self)),
                                                        Float(bitPattern: $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self))] }
        XCTAssertEqual(scales, [1, 2])
        let codes = bytes[24...].map { Int8(bitPattern: $0) }
        XCTAssertEqual(Array(codes[0..<8]), [127, 0, 0, 2, 2, -127, 3, 0])
        XCTAssertEqual(Array(codes[256..<260]), [127, 2, 2, 0])
        let d = try decode(bytes, .int8, 260)
        XCTAssertEqual(Array(d[0..<7]), [127, 0, 0, 2, 2, -127, 3])
        XCTAssertEqual(Array(d[256..<260]), [254, 4, 4, 0])
        let e = c.residual
        XCTAssertEqual(e[1], -0.5); XCTAssertEqual(e[4], 0.5); XCTAssertEqual(e[259], -1)
        XCTAssertEqual(e[5], -126.6 + 127, accuracy: 1e-5)
        // A block of zeros has scale 0 and decodes to zeros; a NaN makes its block NaN and leaves
        // no residual.
        let z = try GradientCompressor(scheme: .int8, count: 3)
        XCTAssertEqual(try decode(encode(z, [0, 0, 0]), .int8, 3), [0, 0, 0])
        let bad = try decode(encode(z, [1, .nan, 2]), .int8, 3)
        XCTAssertTrue(bad.allSatisfy { $0.isNaN })
        XCTAssertEqual(z.residual, [0, 0, 0])
    }

    // MARK: topk

    func testTopKPicksLargestWithTiesToLowerIndex() throws {
        let g: [Float] = [1, -5, 3, 5, -5, 2, 0, 4]
        for (ratio, indices) in [(0.25, [1, 3]), (0.375, [1, 3, 4]), (0.5, [1, 3, 4, 7]), (0.01, [1]), (1.0, Array(0..<8))] {
            let c = try GradientCompressor(scheme: .topk, count: 8, ratio: ratio)
            let bytes = encode(c, g)
            XCTAssertEqual(bytes.count, 16 + 8 * indices.count)
            let sent = bytes[16...].withUnsafeBytes { b in (0..<indices.count).map { Int(b.loadUnaligned(fromByteOffset: 8 * $0, as: UInt32.self)) } }
            XCTAssertEqual(sent, indices, "ratio \(ratio)")
            let d = try decode(bytes, .topk, 8)
            for i in 0..<8 { XCTAssertEqual(d[i], indices.contains(i) ? g[i] : 0) }
            for i in 0..<8 { XCTAssertEqual(c.residual[i], indices.contains(i) ? 0 : g[i]) }
        }
        XCTAssertEqual(GradientCompressor.topKCount(count: 100, ratio: 0.07), 7)
        XCTAssertEqual(GradientCompressor.topKCount(count: 1000, ratio: 0.0015), 2)
        XCTAssertEqual(GradientCompressor.topKCount(count: 10, ratio: 0.01), 1)
        XCTAssertEqual(GradientCompressor.topKCount(count: 10, ratio: 1), 10)
        XCTAssertEqual(GradientCompressor.topKCount(count: 0, ratio: 0.5), 0)
        XCTAssertThrowsError(try GradientCompressor(scheme: .topk, count: 10, ratio: 0))
        XCTAssertThrowsError(try GradientCompressor(scheme: .topk, count: 10, ratio: 1.5))
    }

    /// The radix select against a full sort by (|v| descending, index ascending), with many ties
    /// (values on a coarse grid) and values spread over many exponents.
    func testTopKMatchesSortReference() throws {
        var rng = TestRandom(3)
        for (n, ratio, coarse) in [(10_000, 0.01, true), (10_000, 0.1, false), (5_000, 0.5, true), (777, 0.003, false)] {
            let g: [Float] = (0..<n).map { _ in
                coarse ? Float(Int(rng.uniform() * 40) - 20) * 0.25 : rng.gaussian() * Float(1 << (rng.next() % 12)) }
            let c = try GradientCompressor(scheme: .topk, count: n, ratio: ratio)
            let k = c.keptCount
            let expected = (0..<n).sorted { (abs(g[$0]), -$0) > (abs(g[$1]), -$1) }.prefix(k).sorted()
            let bytes = encode(c, g)
            let sent = bytes[16...].withUnsafeBytes { b in (0..<k).map { Int(b.loadUnaligned(fromByteOffset: 8 * $0, as: UInt32.self)) } }
            XCTAssertEqual(sent, Array(expected), "n \(n) ratio \(ratio)")
        }
    }

    func testTopKWithConstantGradientEventuallySendsEveryCoordinate() throws {
        let n = 64
        var rng = TestRandom(5)
        let g: [Float] = (0..<n).map { _ in 0.1 + 0.9 * rng.uniform() }
        let c = try GradientCompressor(scheme: .topk, count: n, ratio: 0.01)
        XCTAssertEqual(c.keptCount, 1)
        var sent = Set<Int>()
        var steps = 0
        while sent.count < n && steps < 5_000 {
            let bytes = encode(c, g)
            let d = try decode(bytes, .topk, n)
            for i in 0..<n where d[i] != 0 { sent.insert(i) }
            steps += 1
        }
        XCTAssertEqual(sent.count, n, "after \(steps) steps")
    }

    // MARK: error feedback

    /// The defining property: Σ_t D(m_t) = Σ_t g_t − e_T.
    func testErrorFeedbackSumsToInputsMinusResidual() throws {
        let n = 1000, steps = 40
        for (scheme, ratio) in [(CompressionScheme.fp16, 1.0), (.int8, 1.0), (.topk, 0.05), (.topk, 0.001), (.none, 1.0)] {
            var rng = TestRandom(17)
            let c = try GradientCompressor(scheme: scheme, count: n, ratio: ratio)
            var sumG = [Double](repeating: 0, count: n), sumD = [Double](repeating: 0, count: n)
            for _ in 0..<steps {
                let g: [Float] = (0..<n).map { i in rng.gaussian(i % 7 == 0 ? 100 : 1e-3) }
                let d = try decode(encode(c, g), scheme, n)
                for i in 0..<n { sumG[i] += Double(g[i]); sumD[i] += Double(d[i]) }
                XCTAssertTrue(c.lastRelativeError >= 0 && c.lastRelativeError < (scheme == .topk ? 1 : 0.01), "\(scheme) \(c.lastRelativeError)")
            }
            let e = scheme == .none ? [Float](repeating: 0, count: n) : c.residual
            var worst = 0.0
            for i in 0..<n {
                let scale = 1 + abs(sumG[i])
                worst = max(worst, abs(sumD[i] - (sumG[i] - Double(e[i]))) / scale)
            }
            XCTAssertLessThan(worst, 1e-4, "\(scheme) ratio \(ratio)")
            if scheme == .none { XCTAssertEqual(c.lastRelativeError, 0) }
        }
    }

    func testNoneRoundTripIsExact() throws {
        var rng = TestRandom(1)
        let g: [Float] = (0..<300).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()) & 0xFF7F_FFFF) }
        let c = try GradientCompressor(scheme: .none, count: g.count)
        let bytes = encode(c, g)
        XCTAssertEqual(bytes.count, 16 + 4 * g.count)
        XCTAssertEqual(try decode(bytes, .none, g.count).map(\.bitPattern), g.map(\.bitPattern))
        XCTAssertEqual(c.residual, [])
        XCTAssertEqual(c.lastRelativeError, 0)
        // decodeAdd adds: twice gives 2g.
        var sum = [Float](repeating: 0, count: g.count)
        try bytes.withUnsafeBytes { b in
            try sum.withUnsafeMutableBufferPointer { s in
                try GradientCompressor.decodeAdd(b, scheme: .none, count: g.count, into: s.baseAddress!)
                try GradientCompressor.decodeAdd(b, scheme: .none, count: g.count, into: s.baseAddress!)
            }
        }
        XCTAssertEqual(sum, g.map { $0 + $0 })
    }

    func testMalformedMessagesThrowAndAddNothing() throws {
        let n = 40
        let g: [Float] = (0..<n).map { Float($0) - 20 }
        func expectThrow(_ bytes: [UInt8], _ scheme: CompressionScheme, count: Int = n, _ fragment: String,
                         file: StaticString = #filePath, line: UInt = #line) {
            var sum = [Float](repeating: 1, count: max(count, n))
            XCTAssertThrowsError(try bytes.withUnsafeBytes { b in
                try sum.withUnsafeMutableBufferPointer { try GradientCompressor.decodeAdd(b, scheme: scheme, count: count, into: $0.baseAddress!) }
            }, file: file, line: line) { error in
                let message = (error as? CollectiveError)?.description ?? "\(error)"
                XCTAssertTrue(message.contains(fragment), message, file: file, line: line)
                XCTAssertFalse(message.contains("\n"), file: file, line: line)
            }
            XCTAssertTrue(sum.allSatisfy { $0 == 1 }, "nothing added", file: file, line: line)
        }
        let fp16 = encode(try GradientCompressor(scheme: .fp16, count: n), g)
        expectThrow(fp16, .int8, "scheme tag 1 (fp16), expected 2")
        var unknown = fp16; unknown[3] = 9
        expectThrow(unknown, .fp16, "unknown scheme tag 9")
        expectThrow(Array(fp16.dropLast()), .fp16, "truncated")
        expectThrow(Array(fp16.prefix(10)), .fp16, "shorter than the 16-byte header")
        expectThrow([], .fp16, "shorter than the 16-byte header")
        expectThrow(fp16 + [0], .fp16, "trailing bytes")
        expectThrow(fp16, .fp16, count: n - 1, "holds 40 entries")
        var magic = fp16; magic[0] = 0
        expectThrow(magic, .fp16, "bad magic")
        var version = fp16; version[2] = 7
        expectThrow(version, .fp16, "format version 7")
        let int8 = encode(try GradientCompressor(scheme: .int8, count: n), g)
        var block = int8; block[9] = 2   // block size 512
        expectThrow(block, .int8, "block size 512")
        expectThrow(Array(int8.dropLast(3)), .int8, "truncated")
        let topk = encode(try GradientCompressor(scheme: .topk, count: n, ratio: 0.1), g)   // k = 4
        var order = topk; order.swapAt(16, 24)        // first two indices swapped
        expectThrow(order, .topk, "not above the previous")
        var range = topk; range[16 + 24] = 200        // last index 200 ≥ 40
        expectThrow(range, .topk, "out of range")
        var kTooBig = topk; kTooBig[8] = 41
        expectThrow(kTooBig, .topk, "keeps 41 entries")
        expectThrow(Array(topk.dropLast(8)), .topk, "truncated")
        // The untouched messages decode.
        XCTAssertNoThrow(try decode(fp16, .fp16, n))
        XCTAssertNoThrow(try decode(int8, .int8, n))
        XCTAssertNoThrow(try decode(topk, .topk, n))
    }

    // MARK: checkpoint

    func testResidualSaveRestoreContinuesIdentically() throws {
        let n = 700
        for (scheme, ratio) in [(CompressionScheme.fp16, 1.0), (.int8, 1.0), (.topk, 0.02), (.none, 1.0)] {
            var rng = TestRandom(23)
            let gradients: [[Float]] = (0..<12).map { _ in (0..<n).map { _ in rng.gaussian(0.3) } }
            let a = try GradientCompressor(scheme: scheme, count: n, ratio: ratio)
            var messages: [[UInt8]] = []
            var saved: [Float] = []
            for (t, g) in gradients.enumerated() {
                messages.append(encode(a, g))
                if t == 5 { saved = a.residual }
            }
            let b = try GradientCompressor(scheme: scheme, count: n, ratio: ratio)
            try b.restoreResidual(saved)
            for t in 6..<12 {
                XCTAssertEqual(encode(b, gradients[t]), messages[t], "\(scheme) step \(t)")
            }
            XCTAssertEqual(b.residual.map(\.bitPattern), a.residual.map(\.bitPattern))
            XCTAssertThrowsError(try b.restoreResidual([Float](repeating: 0, count: n + 1)))
            b.resetResidual()
            XCTAssertTrue(b.residual.allSatisfy { $0 == 0 })
        }
    }

    // MARK: sizes

    func testByteCounts() throws {
        let n = 1000
        let g = [Float](repeating: 0.5, count: n)
        for (scheme, ratio, bytes) in [(CompressionScheme.none, 1.0, 16 + 4 * n), (.fp16, 1.0, 16 + 2 * n),
                                       (.int8, 1.0, 16 + 4 * 4 + n), (.topk, 0.01, 16 + 8 * 10), (.topk, 0.0001, 16 + 8)] {
            let c = try GradientCompressor(scheme: scheme, count: n, ratio: ratio)
            XCTAssertEqual(encode(c, g).count, bytes, "\(scheme)")
            XCTAssertEqual(c.lastBytes, bytes)
        }
        // Empty vectors encode to a bare header and decode to nothing.
        for scheme in CompressionScheme.allCases {
            let c = try GradientCompressor(scheme: scheme, count: 0, ratio: 0.5)
            let bytes = encode(c, [])
            XCTAssertEqual(bytes.count, 16)
            XCTAssertEqual(try decode(bytes, scheme, 0), [])
        }
        XCTAssertEqual(CompressionScheme(rawValue: "topk"), .topk)
        XCTAssertEqual(CompressionScheme.allCases.map(\.rawValue), ["none", "fp16", "int8", "topk"])
    }
}
