import Foundation

/// The per-element loops of `GradientCompressor`: branch-free so the compiler vectorises them,
/// reading and writing the payload through raw pointers (received messages need not be aligned).
enum GradientKernels {
    // MARK: binary16

    /// Float32 → IEEE binary16 bits, round to nearest, ties to even, saturating: a finite |x|
    /// above 65504 (the largest half) gives ±65504 (0x7BFF / 0xFBFF) instead of ±inf — error
    /// feedback carries the excess to later steps, where an infinity would destroy the sum.
    /// ±inf stays ±inf and NaN becomes a quiet NaN with the same sign (0x7E00 | sign), so a
    /// diverged gradient stays visible. Values below 2⁻²⁴ / 2 round to ±0; between that and 2⁻¹⁴
    /// they become subnormals (rounded to nearest even as well).
    ///
    /// Method (F. Giesen's `float_to_half_fast3_rtne`): normal results re-bias the exponent and
    /// round with the integer addition of 0xFFF plus the lowest kept mantissa bit; subnormal
    /// results are aligned by a float addition of 0.5 (2⁻¹), whose own round-to-nearest-even does
    /// the rounding.
    @inline(__always)
    static func halfBits(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        let sign = (u >> 16) & 0x8000
        let a = u & 0x7FFF_FFFF
        let nonFinite: UInt32 = a > 0x7F80_0000 ? 0x7E00 : 0x7C00
        let c = a < 0x477F_E000 ? a : 0x477F_E000              // clamp |x| to 65504
        // Normal: exponent −15 + 127 re-bias, then round to nearest even at bit 13.
        let normal = (c &+ 0xC800_0FFF &+ ((c >> 13) & 1)) >> 13  // 0xC8000FFF = (15 − 127) << 23 + 0xFFF
        // Subnormal or zero: |x| < 2⁻¹⁴ (0x38800000).
        let magic = Float(bitPattern: 0x3F00_0000)               // 0.5 = 2^((127 − 15) + (23 − 10) + 1 − 127)
        let subnormal = (Float(bitPattern: c) + magic).bitPattern &- 0x3F00_0000
        let finite = c < 0x3880_0000 ? subnormal : normal
        return UInt16(truncatingIfNeeded: (a >= 0x7F80_0000 ? nonFinite : finite) | sign)
    }

    /// IEEE binary16 bits → Float32 (exact).
    @inline(__always)
    static func floatFromHalf(_ h: UInt16) -> Float {
        let h32 = UInt32(h)
        let magnitude = (h32 & 0x7FFF) << 13
        let exponent = magnitude & 0x0F80_0000
        let rebased = magnitude &+ 0x3800_0000                     // (127 − 15) << 23
        let special = rebased &+ 0x3800_0000                       // inf / NaN: exponent 255
        // Zero / subnormal: 2^-14 · m/1024 = (1.m · 2^-14) − 2^-14.
        let tiny = (Float(bitPattern: rebased &+ 0x0080_0000) - Float(bitPattern: 0x3880_0000)).bitPattern
        let bits = exponent == 0x0F80_0000 ? special : (exponent == 0 ? tiny : rebased)
        return Float(bitPattern: bits | ((h32 & 0x8000) << 16))
    }

    /// e holds v on entry: writes the halves of v, and e ← v − D (0 where that is not finite).
    static func encodeFP16(_ e: UnsafeMutablePointer<Float>, _ n: Int, into payload: UnsafeMutableRawPointer) {
        for i in 0..<n {
            let v = e[i]
            let h = halfBits(v)
            payload.storeBytes(of: h.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            let r = v - floatFromHalf(h)
            e[i] = r.magnitude < .infinity ? r : 0
        }
    }

    static func addFP16(_ payload: UnsafeRawPointer, _ n: Int, into sum: UnsafeMutablePointer<Float>) {
        for i in 0..<n {
            sum[i] += floatFromHalf(UInt16(littleEndian: payload.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        }
    }

    // MARK: int8

    /// e holds v on entry. Per block of B entries: s = max|v|/127 (Float32), q = round(v/s)
    /// rounded to nearest, ties to even, clamped to [−127, 127]; the decoded value is q·s. A
    /// block of zeros (or whose max underflows s to 0) has s = 0 and codes 0; a block holding a
    /// non-finite value has s = inf or NaN and codes 0, so it decodes to NaN. Writes the ⌈n/B⌉
    /// scales (at `scales`), then the n codes (at `codes`); e ← v − q·s (0 where not finite).
    static func encodeInt8(_ e: UnsafeMutablePointer<Float>, _ n: Int, blockSize: Int,
                           scales: UnsafeMutableRawPointer, codes: UnsafeMutableRawPointer) {
        let blocks = (n + blockSize - 1) / blockSize
        let bits = UnsafeRawPointer(e)
        for b in 0..<blocks {
            let start = b * blockSize, end = min(n, start + blockSize)
            var maxBits: UInt32 = 0     // |v| as bits orders like |v|; NaN above inf
            for i in start..<end {
                let a = bits.load(fromByteOffset: 4 * i, as: UInt32.self) & 0x7FFF_FFFF
                maxBits = a > maxBits ? a : maxBits
            }
            let s = Float(bitPattern: maxBits) / 127
            scales.storeBytes(of: s.bitPattern.littleEndian, toByteOffset: 4 * b, as: UInt32.self)
            if s > 0 && s < .infinity {
                for i in start..<end {
                    let v = e[i]
                    var x = v / s
                    x = x < -127 ? -127 : x
                    x = x > 127 ? 127 : x
                    // 1.5·2²³ + x lands where the float spacing is 1: the addition rounds x to
                    // the nearest integer, ties to even, and the low bits hold it.
                    let q = Int32(bitPattern: (x + 12_582_912).bitPattern &- 0x4B40_0000)
                    codes.storeBytes(of: Int8(truncatingIfNeeded: q), toByteOffset: i, as: Int8.self)
                    e[i] = v - Float(q) * s
                }
            } else {
                for i in start..<end {
                    codes.storeBytes(of: 0, toByteOffset: i, as: Int8.self)
                    let r = e[i] - 0 * s
                    e[i] = r.magnitude < .infinity ? r : 0
                }
            }
        }
    }

    static func addInt8(_ payload: UnsafeRawPointer, _ n: Int, blockSize: Int, into sum: UnsafeMutablePointer<Float>) {
        let blocks = (n + blockSize - 1) / blockSize
        let codes = payload + 4 * blocks
        for b in 0..<blocks {
            let s = Float(bitPattern: UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: 4 * b, as: UInt32.self)))
            let start = b * blockSize, end = min(n, start + blockSize)
            for i in start..<end {
                sum[i] += Float(codes.load(fromByteOffset: i, as: Int8.self)) * s
            }
        }
    }

    // MARK: raw floats

    static func addFloats(_ payload: UnsafeRawPointer, _ n: Int, into sum: UnsafeMutablePointer<Float>) {
        for i in 0..<n {
            sum[i] += Float(bitPattern: UInt32(littleEndian: payload.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
        }
    }

    // MARK: norms

    /// Σ x², accumulated in 16 Float lanes over chunks of 1024 entries, then in Double (a
    /// diagnostic: fast, and accurate to about 1e-6 relative).
    static func sumOfSquares(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
        var total = 0.0
        var i = 0
        let raw = UnsafeRawPointer(x)
        while n - i >= 16 {
            var acc = SIMD16<Float>()
            let end = i + min(1024, (n - i) & ~15)
            while i < end {
                let v = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
                acc += v * v
                i += 16
            }
            total += Double(acc.sum())
        }
        while i < n { total += Double(x[i] * x[i]); i += 1 }
        return total
    }
}
