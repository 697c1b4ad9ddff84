/// A counter-based random number generator: Philox4x32-10 (Salmon et al., "Parallel random
/// numbers: as easy as 1, 2, 3", SC 2011), the generator PyTorch and JAX use on GPUs.
///
/// A stream is fully determined by `(seed, purpose, stream)`: the seed and a 64-bit FNV-1a hash
/// of the purpose string form the 64-bit Philox key; `stream` fills the upper half of the
/// 128-bit counter and the block index the lower half. Two generators with different purposes
/// (e.g. `"init/blocks/0/ffn/w1"` and `"batches"`) are independent, and any block can be
/// computed without the ones before it, so results never depend on the order in which tasks
/// or workers draw their numbers.
public struct RNG: Sendable {
    public let seed: UInt64
    public let key: UInt64
    public let stream: UInt64
    /// Index of the next 128-bit block to generate.
    public private(set) var block: UInt64
    private var buffer: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
    private var used = 4
    private var spareNormal: Float?

    /// A generator for `purpose` under `seed`; `stream` separates e.g. epochs or steps.
    public init(seed: UInt64, purpose: String, stream: UInt64 = 0) {
        self.seed = seed
        self.key = RNG.mix(seed ^ RNG.fnv1a(purpose))
        self.stream = stream
        self.block = 0
    }

    /// A generator derived from this one's key and stream for a sub-purpose.
    public func derive(_ purpose: String, stream: UInt64 = 0) -> RNG {
        RNG(rawKey: RNG.mix(key ^ RNG.fnv1a(purpose) ^ RNG.mix(self.stream)), seed: seed, stream: stream)
    }

    private init(rawKey: UInt64, seed: UInt64, stream: UInt64) {
        self.seed = seed
        self.key = rawKey
        self.stream = stream
        self.block = 0
    }

    /// 64-bit FNV-1a hash of a string's UTF-8 bytes.
    @inlinable public static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }

    /// SplitMix64's finaliser: a bijective 64-bit mixer.
    @inlinable public static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// Philox4x32 with 10 rounds on a 128-bit counter and 64-bit key.
    public static func philox(counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32))
        -> (UInt32, UInt32, UInt32, UInt32) {
        var (c0, c1, c2, c3) = counter
        var (k0, k1) = key
        for round in 0..<10 {
            if round > 0 { k0 &+= 0x9E37_79B9; k1 &+= 0xBB67_AE85 }
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let (hi0, lo0) = (UInt32(truncatingIfNeeded: p0 >> 32), UInt32(truncatingIfNeeded: p0))
            let (hi1, lo1) = (UInt32(truncatingIfNeeded: p1 >> 32), UInt32(truncatingIfNeeded: p1))
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
        }
        return (c0, c1, c2, c3)
    }

    /// The next 32 random bits.
    public mutating func nextUInt32() -> UInt32 {
        if used == 4 {
            buffer = RNG.philox(
                counter: (UInt32(truncatingIfNeeded: block), UInt32(truncatingIfNeeded: block >> 32),
                          UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32)),
                key: (UInt32(truncatingIfNeeded: key), UInt32(truncatingIfNeeded: key >> 32)))
            block &+= 1
            used = 0
        }
        defer { used += 1 }
        switch used {
        case 0: return buffer.0
        case 1: return buffer.1
        case 2: return buffer.2
        default: return buffer.3
        }
    }

    /// Skips `draws` 32-bit draws: afterwards the generator is where it would be after `draws`
    /// calls of `nextUInt32()` (so `uniform()`), in O(1) (Philox is counter-based). A process
    /// that handles rows `[r₀, r₁)` of a batch skips `r₀ · perRow` draws to reproduce exactly
    /// the values a single process drawing for the whole batch gives those rows.
    public mutating func skip(_ draws: Int) {
        precondition(draws >= 0, "skip needs draws ≥ 0")
        spareNormal = nil
        let position = block &* 4 &- UInt64(4 - used) &+ UInt64(draws)
        block = position / 4
        used = 4
        let lane = Int(position % 4)
        if lane > 0 { for _ in 0..<lane { _ = nextUInt32() } }
    }

    /// Skips `count` values of `normal()` from a fresh pair boundary (Box–Muller draws values in
    /// pairs from two uniforms): afterwards `normal()` returns the value a generator that drew
    /// `count` normals first would return next.
    public mutating func skipNormals(_ count: Int) {
        skip(2 * (count / 2))
        if count % 2 == 1 { _ = normal() }
    }

    /// The next 64 random bits.
    public mutating func nextUInt64() -> UInt64 {
        UInt64(nextUInt32()) << 32 | UInt64(nextUInt32())
    }

    /// Uniform on [0, 1) with 24 random bits (every value exactly representable in Float).
    public mutating func uniform() -> Float { Float(nextUInt32() >> 8) * 0x1p-24 }

    /// Uniform on [low, high) (rounding can land on `high`; such draws are mapped back to `low`).
    public mutating func uniform(_ low: Float, _ high: Float) -> Float {
        let v = low + (high - low) * uniform()
        return v < high ? v : low
    }

    /// Standard normal N(0, 1) by the Box–Muller transform (pairs; the second value is kept).
    public mutating func normal() -> Float {
        if let z = spareNormal { spareNormal = nil; return z }
        let u1 = (Double(nextUInt32() >> 8) + 1) * 0x1p-24  // (0, 1]: log is finite
        let u2 = Double(nextUInt32() >> 8) * 0x1p-24
        let r = (-2 * _log(u1)).squareRoot()
        let theta = 2 * Double.pi * u2
        spareNormal = Float(r * _sin(theta))
        return Float(r * _cos(theta))
    }

    /// `true` with probability `p`.
    public mutating func bernoulli(_ p: Float) -> Bool { uniform() < p }

    /// Uniform integer in `0..<n` (Lemire's multiply-shift with rejection: no modulo bias).
    public mutating func int(below n: Int) -> Int {
        precondition(n > 0 && n <= Int(UInt32.max), "int(below:) needs 0 < n ≤ 2³²−1, got \(n)")
        let bound = UInt32(n)
        let threshold = (0 &- bound) % bound
        while true {
            let m = UInt64(nextUInt32()) &* UInt64(bound)
            if UInt32(truncatingIfNeeded: m) >= threshold { return Int(m >> 32) }
        }
    }

    /// A uniformly random permutation of `0..<n` (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        shuffle(&p)
        return p
    }

    /// Shuffles `array` in place (Fisher–Yates).
    public mutating func shuffle<T>(_ array: inout [T]) {
        guard array.count > 1 else { return }
        for i in stride(from: array.count - 1, to: 0, by: -1) {
            array.swapAt(i, int(below: i + 1))
        }
    }

    /// Fills `t` with N(mean, std²) samples.
    public mutating func fillNormal(_ t: Tensor, mean: Float = 0, std: Float = 1) {
        for i in 0..<t.count { t.data[i] = mean + std * normal() }
    }

    /// Fills `t` with U[low, high) samples.
    public mutating func fillUniform(_ t: Tensor, low: Float, high: Float) {
        for i in 0..<t.count { t.data[i] = uniform(low, high) }
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) @usableFromInline func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) @usableFromInline func _sin(_ x: Double) -> Double { Glibc.sin(x) }
@inline(__always) @usableFromInline func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Darwin
@inline(__always) @usableFromInline func _log(_ x: Double) -> Double { Darwin.log(x) }
@inline(__always) @usableFromInline func _sin(_ x: Double) -> Double { Darwin.sin(x) }
@inline(__always) @usableFromInline func _cos(_ x: Double) -> Double { Darwin.cos(x) }
#endif
