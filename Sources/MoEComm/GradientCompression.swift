import Foundation

// Gradient compression for data-parallel training (`parallelism.compression`, ARCHITECTURE §3
// "Collectives"): every rank encodes its local gradient with a `GradientCompressor`, publishes
// the bytes with `Communicator.allGatherV`, and every rank adds every rank's decoded message into
// one sum with `GradientCompressor.decodeAdd`, in rank order 0 … N−1 — so the summed gradient is
// the same bits on every rank and in every rerun.
//
// Error feedback (lossy schemes). Each rank keeps a residual e (what it owes the others):
//
//     v_t = g_t + e_{t−1}            (the gradient plus what earlier messages left out)
//     m_t = C(v_t)                   (compress; D(m_t) is what the other ranks will see)
//     e_t = v_t − D(m_t)             (remember what was left out)
//
// so Σ_{t=1}^{T} D(m_t) = Σ_{t=1}^{T} g_t − e_T exactly (up to the float rounding of the two
// additions): nothing is lost, only delayed. That is what makes aggressive compression converge
// like uncompressed SGD: Seide et al. 2014, "1-Bit Stochastic Gradient Descent and its
// Application to Data-Parallel Distributed Training of Speech DNNs"; Karimireddy et al. 2019,
// "Error Feedback Fixes SignSGD and other Gradient Compression Schemes"; Stich, Cordonnier &
// Jaggi 2018, "Sparsified SGD with Memory"; Lin et al. 2018, "Deep Gradient Compression" (top-k
// with local accumulation). The residual is part of the training state: a checkpoint keeps it
// (`residual`, `restoreResidual`) so a resumed run continues bit for bit.
//
// Wire format (all little-endian), a 16-byte header then the payload:
//
//     byte 0–1   magic "GC" (0x47 0x43)
//     byte 2     format version (1)
//     byte 3     scheme tag: none 0, fp16 1, int8 2, topk 3
//     byte 4–7   UInt32 n, the number of gradient entries
//     byte 8–11  UInt32 parameter: int8 block size (256), topk k, 0 otherwise
//     byte 12–15 reserved, 0
//
//     none   n Float32                                     4·n bytes
//     fp16   n IEEE binary16                               2·n bytes
//     int8   ⌈n/B⌉ Float32 scales, then n Int8 codes       n + 4·⌈n/B⌉ bytes (B = 256)
//     topk   k pairs (UInt32 index, Float32 value),
//            indices strictly ascending                    8·k bytes
//
// Non-finite gradients (a diverged step) are transmitted as non-finite values, so every rank
// sees the divergence: fp16 keeps ±inf and NaN, an int8 block holding one decodes to NaN, top-k
// ranks NaN above +inf and sends it. Where the decoded value is not finite the residual is set
// to 0 (it would otherwise poison every later step).

/// `parallelism.compression`: how a data-parallel rank encodes its gradient for the all-reduce.
/// The raw values are the spec's spellings.
public enum CompressionScheme: String, CaseIterable, Sendable {
    /// Raw Float32: exact, 4 bytes per entry, no residual.
    case none
    /// IEEE binary16, round to nearest even, saturating at ±65504: 2 bytes per entry.
    case fp16
    /// Per-block (256 entries) symmetric 8-bit quantisation with a Float32 scale per block:
    /// about 1.016 bytes per entry.
    case int8
    /// The k = max(1, ⌈ratio·n⌉) entries of largest magnitude, as (index, value) pairs:
    /// 8 bytes per kept entry.
    case topk

    /// The tag in byte 3 of the header.
    public var tag: UInt8 {
        switch self { case .none: return 0; case .fp16: return 1; case .int8: return 2; case .topk: return 3 }
    }
    /// The scheme of a header tag (nil if unknown).
    public init?(tag: UInt8) {
        switch tag { case 0: self = .none; case 1: self = .fp16; case 2: self = .int8; case 3: self = .topk; default: return nil }
    }
    /// Whether decoding loses information (so the compressor keeps an error-feedback residual).
    public var isLossy: Bool { self != .none }
}

/// One rank's gradient encoder with error feedback (see the comment at the top of the file for
/// the formulas and the wire format). It owns the residual e (n floats, lossy schemes only) and
/// the output buffer, both allocated once in `init`: `encode` allocates nothing.
///
/// Not thread-safe; one per rank and parameter vector.
public final class GradientCompressor {
    /// Entries per int8 block (one Float32 scale each).
    public static let int8BlockSize = 256
    /// Bytes of the header in front of every message.
    public static let headerBytes = 16

    public let scheme: CompressionScheme
    /// Number of gradient entries n.
    public let count: Int
    /// `parallelism.ratio` (used by topk only).
    public let ratio: Double
    /// Entries a topk message keeps: max(1, ⌈ratio·n⌉), at most n (0 when n = 0); n for the
    /// other schemes.
    public let keptCount: Int
    /// ‖v − D(C(v))‖₂ / ‖v‖₂ of the last `encode` (0 when v = 0 and for `none`; NaN or 0 when v
    /// holds non-finite values). v is the gradient plus the residual.
    public private(set) var lastRelativeError: Double = 0
    /// Length in bytes of the last encoded message (header included).
    public private(set) var lastBytes: Int = 0

    /// e, n floats (empty for `none`).
    private let e: UnsafeMutablePointer<Float>
    private let eCount: Int
    /// The output message (header + payload), `capacity` bytes, 64-byte aligned.
    private let buffer: UnsafeMutableRawPointer
    private let capacity: Int
    /// topk: candidate keys of the radix select (n) and its histograms (4 × 2048).
    private let scratch: UnsafeMutablePointer<UInt32>
    private let histogram: UnsafeMutablePointer<UInt32>

    /// - Parameters:
    ///   - scheme: the encoding.
    ///   - n: gradient entries, 0 ≤ n < 2³².
    ///   - ratio: topk's kept fraction, 0 < ratio ≤ 1 (ignored by the other schemes).
    /// - Throws: `CollectiveError.invalidArgument` for n or ratio out of range.
    public init(scheme: CompressionScheme, count n: Int, ratio: Double = 0.01) throws {
        guard n >= 0, n <= Int(UInt32.max) else {
            throw CollectiveError.invalidArgument("gradient compression: \(n) entries (must be 0 … \(UInt32.max))")
        }
        if scheme == .topk {
            guard ratio.isFinite, ratio > 0, ratio <= 1 else {
                throw CollectiveError.invalidArgument("gradient compression: topk ratio \(ratio) is not in (0, 1]")
            }
        }
        self.scheme = scheme
        self.count = n
        self.ratio = ratio
        self.keptCount = scheme == .topk ? GradientCompressor.topKCount(count: n, ratio: ratio) : n
        self.capacity = GradientCompressor.encodedByteCount(scheme: scheme, count: n, kept: keptCount)
        self.buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
        self.buffer.initializeMemory(as: UInt8.self, repeating: 0, count: capacity)
        self.eCount = scheme.isLossy ? n : 0
        self.e = .allocate(capacity: max(eCount, 1))
        self.e.initialize(repeating: 0, count: max(eCount, 1))
        let scratchCount = scheme == .topk ? max(n, 1) : 1
        self.scratch = .allocate(capacity: scratchCount)
        self.scratch.initialize(repeating: 0, count: scratchCount)
        self.histogram = .allocate(capacity: 4 * 2048)
        self.histogram.initialize(repeating: 0, count: 4 * 2048)
    }

    deinit {
        buffer.deallocate()
        e.deallocate()
        scratch.deallocate()
        histogram.deallocate()
    }

    /// k = max(1, ⌈ratio·n⌉) clamped to n (0 for n = 0). The ceiling forgives a relative 1e-12
    /// of binary rounding in ratio·n, so 0.07 · 100 keeps 7 entries, not 8.
    public static func topKCount(count n: Int, ratio: Double) -> Int {
        guard n > 0 else { return 0 }
        let x = ratio * Double(n)
        let k = (x - x * 1e-12).rounded(.up)
        guard k.isFinite else { return n }
        return min(n, max(1, k >= Double(n) ? n : Int(k)))
    }

    /// Exact length of a message of `scheme` for n entries (`kept` = k for topk).
    public static func encodedByteCount(scheme: CompressionScheme, count n: Int, kept: Int) -> Int {
        switch scheme {
        case .none: return headerBytes + 4 * n
        case .fp16: return headerBytes + 2 * n
        case .int8: return headerBytes + 4 * ((n + int8BlockSize - 1) / int8BlockSize) + n
        case .topk: return headerBytes + 8 * kept
        }
    }

    // MARK: Residual (checkpointed training state)

    /// A copy of the error-feedback residual e (n floats; empty for `none`).
    public var residual: [Float] {
        Array(UnsafeBufferPointer(start: e, count: eCount))
    }

    /// Replaces the residual (from a checkpoint): `values` must hold n floats (none for `none`).
    public func restoreResidual(_ values: [Float]) throws {
        guard values.count == eCount else {
            throw CollectiveError.invalidArgument("gradient compression: a residual of \(values.count) floats for \(scheme.rawValue) with \(eCount)")
        }
        values.withUnsafeBufferPointer { if eCount > 0 { e.update(from: $0.baseAddress!, count: eCount) } }
    }

    /// Sets the residual to 0 (a fresh start).
    public func resetResidual() {
        if eCount > 0 { e.update(repeating: 0, count: eCount) }
    }

    // MARK: Encoding

    /// Encodes v = g + e (g: n floats) and updates e ← v − D(message). Returns the message, which
    /// stays valid until the next `encode` or until the compressor is released. Sets
    /// `lastBytes` and `lastRelativeError`.
    public func encode(_ g: UnsafePointer<Float>) -> UnsafeRawBufferPointer {
        let n = count
        writeHeader(parameter: scheme == .int8 ? UInt32(GradientCompressor.int8BlockSize) : scheme == .topk ? UInt32(keptCount) : 0)
        let payload = buffer + GradientCompressor.headerBytes
        if scheme == .none {
            payload.copyMemory(from: g, byteCount: 4 * n)
            lastRelativeError = 0
        } else if scheme == .topk {
            for i in 0..<n { e[i] += g[i] }
            let vNorm2 = GradientKernels.sumOfSquares(e, n)
            encodeTopK(into: payload)
            let errNorm2 = GradientKernels.sumOfSquares(e, n)
            lastRelativeError = vNorm2 == 0 ? 0 : (errNorm2 / vNorm2).squareRoot()
        } else {
            // fp16 and int8 work element- or block-wise: in chunks that stay in the L1 cache
            // (v = g + e, ‖v‖², encode and e ← v − D, ‖e‖²) the data crosses memory once.
            let chunk = GradientCompressor.encodeChunk
            let blockSize = GradientCompressor.int8BlockSize
            let scales = payload, codes = payload + 4 * ((n + blockSize - 1) / blockSize)
            var vNorm2 = 0.0, errNorm2 = 0.0
            var start = 0
            while start < n {
                let length = min(chunk, n - start)
                let v = e + start, gc = g + start
                for i in 0..<length { v[i] += gc[i] }
                vNorm2 += GradientKernels.sumOfSquares(v, length)
                if scheme == .fp16 {
                    GradientKernels.encodeFP16(v, length, into: payload + 2 * start)
                } else {
                    GradientKernels.encodeInt8(v, length, blockSize: blockSize,
                                               scales: scales + 4 * (start / blockSize), codes: codes + start)
                }
                errNorm2 += GradientKernels.sumOfSquares(v, length)
                start += length
            }
            lastRelativeError = vNorm2 == 0 ? 0 : (errNorm2 / vNorm2).squareRoot()
        }
        lastBytes = GradientCompressor.encodedByteCount(scheme: scheme, count: n, kept: keptCount)
        return UnsafeRawBufferPointer(start: buffer, count: lastBytes)
    }

    private func writeHeader(parameter: UInt32) {
        buffer.storeBytes(of: 0x47, toByteOffset: 0, as: UInt8.self)
        buffer.storeBytes(of: 0x43, toByteOffset: 1, as: UInt8.self)
        buffer.storeBytes(of: GradientCompressor.formatVersion, toByteOffset: 2, as: UInt8.self)
        buffer.storeBytes(of: scheme.tag, toByteOffset: 3, as: UInt8.self)
        buffer.storeBytes(of: UInt32(count).littleEndian, toByteOffset: 4, as: UInt32.self)
        buffer.storeBytes(of: parameter.littleEndian, toByteOffset: 8, as: UInt32.self)
        buffer.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
    }

    static let formatVersion: UInt8 = 1
    /// Entries per cache-resident chunk of the fp16 and int8 encoders (a multiple of the int8
    /// block size).
    static let encodeChunk = 2048

    /// Top-k of v (in e) by magnitude, ties to the lower index: finds the threshold key T (the
    /// k-th largest |v| as its bit pattern, which orders like the magnitude; NaN above +inf) by an
    /// exact radix select (11 + 11 + 10 bits: three histograms, O(n) worst case, deterministic),
    /// then one ascending pass emits every entry above T and the first `need` entries equal to T,
    /// zeroing them in e (e ← v − D(m)).
    private func encodeTopK(into payload: UnsafeMutableRawPointer) {
        let n = count, k = keptCount
        guard k > 0 else { return }
        var threshold: UInt32 = 0
        var need = n  // entries equal to the threshold still to take
        if k < n {
            let keys = UnsafeRawPointer(e)
            // Pass 1: the top 11 bits over all n, into 4 interleaved histograms (gradients fall
            // into few bins: one histogram would wait on its own increments), then summed.
            histogram.update(repeating: 0, count: 4 * 2048)
            var i = 0
            while i + 4 <= n {
                for lane in 0..<4 {
                    let key = keys.load(fromByteOffset: 4 * (i + lane), as: UInt32.self) & 0x7FFF_FFFF
                    histogram[lane * 2048 + Int(key >> 21)] &+= 1
                }
                i += 4
            }
            while i < n {
                let key = keys.load(fromByteOffset: 4 * i, as: UInt32.self) & 0x7FFF_FFFF
                histogram[Int(key >> 21)] &+= 1
                i += 1
            }
            for b in 0..<2048 { histogram[b] = histogram[b] &+ histogram[2048 + b] &+ histogram[4096 + b] &+ histogram[6144 + b] }
            var (bin, remaining) = GradientCompressor.selectBin(histogram, bins: 2048, k: k)
            let b1 = UInt32(bin)
            var m = 0
            for i in 0..<n {
                let key = keys.load(fromByteOffset: 4 * i, as: UInt32.self) & 0x7FFF_FFFF
                scratch[m] = key
                m &+= (key >> 21) == b1 ? 1 : 0
            }
            // Pass 2: the middle 11 bits of the candidates.
            histogram.update(repeating: 0, count: 2048)
            for j in 0..<m { histogram[Int((scratch[j] >> 10) & 0x7FF)] &+= 1 }
            (bin, remaining) = GradientCompressor.selectBin(histogram, bins: 2048, k: remaining)
            let b2 = UInt32(bin)
            var m2 = 0
            for j in 0..<m {
                let key = scratch[j]
                scratch[m2] = key
                m2 &+= ((key >> 10) & 0x7FF) == b2 ? 1 : 0
            }
            // Pass 3: the low 10 bits.
            histogram.update(repeating: 0, count: 1024)
            for j in 0..<m2 { histogram[Int(scratch[j] & 0x3FF)] &+= 1 }
            (bin, remaining) = GradientCompressor.selectBin(histogram, bins: 1024, k: remaining)
            threshold = b1 << 21 | b2 << 10 | UInt32(bin)
            need = remaining
        }
        var written = 0
        for i in 0..<n {
            let v = e[i]
            let key = v.bitPattern & 0x7FFF_FFFF
            if key > threshold || (key == threshold && need > 0) {
                if key == threshold { need -= 1 }
                payload.storeBytes(of: UInt32(i).littleEndian, toByteOffset: 8 * written, as: UInt32.self)
                payload.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: 8 * written + 4, as: UInt32.self)
                written += 1
                e[i] = 0
                if written == k { break }
            }
        }
        assert(written == k)
    }

    /// The bin, counted from the top, where the k-th largest falls, and how many of that bin's
    /// entries are needed (k minus the entries in higher bins).
    private static func selectBin(_ h: UnsafeMutablePointer<UInt32>, bins: Int, k: Int) -> (Int, Int) {
        var above = 0
        var b = bins - 1
        while b > 0 && above + Int(h[b]) < k {
            above += Int(h[b])
            b -= 1
        }
        return (b, k - above)
    }

    // MARK: Decoding

    /// sum[i] += D(bytes)[i] for i in 0 ..< count, after checking the header (magic, version,
    /// scheme tag, count, parameter) and the exact length, and for topk that the indices are
    /// strictly ascending and below n. On any error nothing is added.
    /// - Throws: `CollectiveError.invalidArgument` with a one-line message.
    public static func decodeAdd(_ bytes: UnsafeRawBufferPointer, scheme: CompressionScheme, count n: Int,
                                 into sum: UnsafeMutablePointer<Float>) throws {
        func fail(_ message: String) -> CollectiveError {
            CollectiveError.invalidArgument("compressed gradient (\(scheme.rawValue), \(n) entries): \(message)")
        }
        guard bytes.count >= headerBytes, let p = bytes.baseAddress else {
            throw fail("\(bytes.count) bytes, shorter than the \(headerBytes)-byte header")
        }
        guard p.load(fromByteOffset: 0, as: UInt8.self) == 0x47, p.load(fromByteOffset: 1, as: UInt8.self) == 0x43 else {
            throw fail("bad magic (not a compressed gradient)")
        }
        let version = p.load(fromByteOffset: 2, as: UInt8.self)
        guard version == formatVersion else { throw fail("format version \(version), expected \(formatVersion)") }
        let tag = p.load(fromByteOffset: 3, as: UInt8.self)
        guard let actual = CompressionScheme(tag: tag) else { throw fail("unknown scheme tag \(tag)") }
        guard actual == scheme else { throw fail("scheme tag \(tag) (\(actual.rawValue)), expected \(scheme.tag)") }
        let encodedCount = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        guard encodedCount == n else { throw fail("message holds \(encodedCount) entries") }
        let parameter = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        guard p.loadUnaligned(fromByteOffset: 12, as: UInt32.self) == 0 else { throw fail("reserved header bytes are not 0") }
        let expected: Int
        switch scheme {
        case .none, .fp16:
            guard parameter == 0 else { throw fail("parameter \(parameter), expected 0") }
            expected = encodedByteCount(scheme: scheme, count: n, kept: 0)
        case .int8:
            guard parameter == int8BlockSize else { throw fail("int8 block size \(parameter), expected \(int8BlockSize)") }
            expected = encodedByteCount(scheme: scheme, count: n, kept: 0)
        case .topk:
            guard parameter <= n else { throw fail("keeps \(parameter) entries, more than \(n)") }
            expected = encodedByteCount(scheme: scheme, count: n, kept: parameter)
        }
        guard bytes.count == expected else {
            throw fail(bytes.count < expected ? "truncated: \(bytes.count) bytes, expected \(expected)"
                                              : "\(bytes.count) bytes, expected \(expected) (trailing bytes)")
        }
        let payload = p + headerBytes
        switch scheme {
        case .none: GradientKernels.addFloats(payload, n, into: sum)
        case .fp16: GradientKernels.addFP16(payload, n, into: sum)
        case .int8: GradientKernels.addInt8(payload, n, blockSize: int8BlockSize, into: sum)
        case .topk:
            var previous = -1
            for j in 0..<parameter {
                let index = Int(UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: 8 * j, as: UInt32.self)))
                guard index > previous, index < n else {
                    throw fail(index >= n ? "pair \(j): index \(index) out of range 0..<\(n)"
                                          : "pair \(j): index \(index) not above the previous \(previous)")
                }
                previous = index
            }
            for j in 0..<parameter {
                let index = Int(UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: 8 * j, as: UInt32.self)))
                sum[index] += Float(bitPattern: UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: 8 * j + 4, as: UInt32.self)))
            }
        }
    }
}
