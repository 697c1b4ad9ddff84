import Foundation
import MoEComm
import MoECore

extension Bench {
    /// Encode + decodeAdd of one million gradient values per compression scheme, best of 5
    /// (moved here from GradientCompressionTests, where it was printed, not asserted). The
    /// gradients are a fixed pseudo-random normal draw (σ 0.01, RNG seed 9).
    static func gradientCompression(n: Int = 1_000_000) -> [String] {
        var rng = RNG(seed: 9, purpose: "bench/compression")
        let t = Tensor(shape: [n])
        rng.fillNormal(t)
        let g = t.array.map { $0 * 0.01 }
        var sum = [Float](repeating: 0, count: n)
        var lines: [String] = []
        for (scheme, ratio) in [(CompressionScheme.none, 1.0), (.fp16, 1.0), (.int8, 1.0), (.topk, 0.01)] {
            guard let c = try? GradientCompressor(scheme: scheme, count: n, ratio: ratio) else { continue }
            var bestEncode = Double.infinity, bestDecode = Double.infinity
            for _ in 0..<5 {
                let t0 = now()
                let bytes = g.withUnsafeBufferPointer { c.encode($0.baseAddress!) }
                let t1 = now()
                try? sum.withUnsafeMutableBufferPointer { try GradientCompressor.decodeAdd(bytes, scheme: scheme, count: n, into: $0.baseAddress!) }
                let t2 = now()
                bestEncode = min(bestEncode, t1 - t0)
                bestDecode = min(bestDecode, t2 - t1)
            }
            lines.append(String(format: "%@ %.2f ms + %.2f ms (%d bytes, relative error %.1e)", scheme.rawValue as NSString,
                                1e3 * bestEncode, 1e3 * bestDecode, c.lastBytes, c.lastRelativeError))
        }
        return lines
    }
}
