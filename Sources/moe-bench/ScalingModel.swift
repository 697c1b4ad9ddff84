import Foundation

/// The latency–bandwidth ("α–β", Hockney 1994) model behind docs/scaling.md (issue 14 item 7),
/// for the collectives as moe-run implements them (MPICommunicator and the shm backend alike):
///
///     all-reduce  = reduce-scatter by all-to-all + all-gather:  t ≈ 2(p−1)α + 2·(p−1)/p · n·β
///     all-to-all  (expert-parallel dispatch / combine):         t ≈  (p−1)α +   (p−1)/p · n·β
///     all-gather  of m bytes from every rank (compressed data
///                 parallelism, `allGatherV`):                   t ≈  (p−1)α +   (p−1)   · m·β
///
/// n is the bytes each rank contributes, α the latency of one message, β the seconds per byte
/// of one rank's link (full duplex, no contention in the switch, every rank sends its p−1
/// messages one after another: Thakur, Rabenseifner & Gropp 2005, "Optimization of Collective
/// Communication Operations in MPICH"). Steps do not overlap communication with compute (moe-run's
/// data-parallel step all-reduces after the backward pass).
extension Bench {
    struct Network {
        var name: String
        /// Seconds per message and seconds per byte.
        var alpha: Double, beta: Double
    }

    /// Assumed networks: β = 8 / B ns per byte for B Gb/s; α typical of TCP over 1 GbE, TCP over
    /// 10 GbE and InfiniBand / RoCE verbs (assumptions, not measurements).
    static let networks = [Network(name: "1 Gb/s", alpha: 50e-6, beta: 8e-9),
                           Network(name: "10 Gb/s", alpha: 10e-6, beta: 0.8e-9),
                           Network(name: "100 Gb/s", alpha: 2e-6, beta: 0.08e-9)]
    static let scalingRanks = [2, 4, 8, 16, 32, 64, 128, 256]

    static func allReduceTime(ranks p: Int, bytes n: Double, alpha: Double, beta: Double) -> Double {
        guard p > 1 else { return 0 }
        let q = Double(p - 1)
        return 2 * q * alpha + 2 * q / Double(p) * n * beta
    }

    static func allToAllTime(ranks p: Int, bytes n: Double, alpha: Double, beta: Double) -> Double {
        guard p > 1 else { return 0 }
        let q = Double(p - 1)
        return q * alpha + q / Double(p) * n * beta
    }

    static func allGatherTime(ranks p: Int, bytesPerRank m: Double, alpha: Double, beta: Double) -> Double {
        guard p > 1 else { return 0 }
        return Double(p - 1) * (alpha + m * beta)
    }

    struct ScalingError: Error, CustomStringConvertible {
        var description: String
    }

    struct StepRow {
        var path: String, ranks: Int
        var step: Double, compute: Double, communication: Double, waiting: Double, bytes: Double
    }

    struct CompressionRow {
        var scheme: String
        /// Seconds to encode and to decodeAdd one million floats, and encoded bytes / raw bytes.
        var encode: Double, decode: Double, ratio: Double
    }

    /// The measured figures docs/scaling.md uses, read from docs/benchmarks.md.
    struct ScalingMeasurements {
        /// Seconds per 2-rank all-reduce at `allReduceSizes`, per path.
        var allReduce: [String: [Double]] = [:]
        var steps: [StepRow] = []
        /// Training-step seconds at 1 BLAS thread ("lm-dense", "lm-moe") and AdamW's part of lm-moe's.
        var lmStep: [String: Double] = [:]
        var lmAdamW: Double?
        var compression: [CompressionRow] = []
        /// Branch run with 2 experts: wall seconds on 1 and on 2 workers.
        var branch: (one: Double, two: Double)?
        /// TIES fusion of 4 models × 2M parameters, seconds.
        var fusionTies: Double?
        var loadAverages: [String] = []

        static let allReducePaths = ["moe-run shm backend", "MPICommunicator, Open MPI vader", "MPICommunicator, Open MPI TCP loopback"]

        init(markdown: String) throws {
            let lines = markdown.components(separatedBy: "\n")
            func cells(_ line: String) -> [String] {
                Array(line.components(separatedBy: "|").dropFirst().dropLast()).map { $0.trimmingCharacters(in: .whitespaces) }
            }
            func number(_ cell: String) -> Double? {
                Double(cell.split(separator: " ").first.map(String.init)?.replacingOccurrences(of: "*", with: "") ?? "")
            }
            for path in Self.allReducePaths {
                if let line = lines.first(where: { $0.hasPrefix("| \(path) |") && cells($0).count == allReduceSizes.count + 1 }) {
                    let t = cells(line).dropFirst().compactMap(number).map { $0 * 1e-6 }
                    if t.count == allReduceSizes.count { allReduce[path] = t }
                }
            }
            if let header = lines.firstIndex(where: { $0.hasPrefix("| data-parallel step, path |") }) {
                for line in lines[(header + 2)...].prefix(while: { $0.hasPrefix("|") }) {
                    let c = cells(line)
                    guard c.count == 8, let p = Int(c[1]), let s = number(c[2]), let cp = number(c[3]), let cm = number(c[4]),
                          let w = number(c[5]), let kb = number(c[7]) else { continue }
                    steps.append(StepRow(path: c[0], ranks: p, step: s / 1e3, compute: cp / 1e3, communication: cm / 1e3, waiting: w / 1e3, bytes: kb * 1024))
                }
            }
            for model in ["lm-dense", "lm-moe"] {
                if let line = lines.first(where: { $0.hasPrefix("| \(model) | 1 |") }), let tps = number(cells(line)[3]),
                   let spec = LMBenchModel.named(String(model.dropFirst(3))) {
                    lmStep[model] = Double(spec.tokensPerStep) / tps
                }
            }
            if let line = lines.first(where: { $0.hasPrefix("| AdamW |") }), cells(line).count == 3 { lmAdamW = number(cells(line)[2]).map { $0 / 1e3 } }
            func matches(_ pattern: String, in text: String) -> [[String]] {
                guard let re = try? NSRegularExpression(pattern: pattern) else { return [] }
                return re.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { m in
                    (1..<m.numberOfRanges).map { Range(m.range(at: $0), in: text).map { String(text[$0]) } ?? "" }
                }
            }
            if let line = lines.first(where: { $0.hasPrefix("Gradient compression of 1,000,000 floats") }) {
                compression = matches("(\\w+) ([0-9.]+) ms \\+ ([0-9.]+) ms \\(([0-9]+) bytes", in: line).compactMap { m in
                    guard let e = Double(m[1]), let d = Double(m[2]), let b = Double(m[3]) else { return nil }
                    return CompressionRow(scheme: m[0], encode: e / 1e3, decode: d / 1e3, ratio: (b - 16) / 4e6)
                }
            }
            if let m = matches("1 worker ([0-9.]+) s, 2 workers ([0-9.]+) s", in: markdown).first, let one = Double(m[0]), let two = Double(m[1]) {
                branch = (one, two)
            }
            fusionTies = matches("ties \\(density 0.2\\) ([0-9.]+) s", in: markdown).first.flatMap { Double($0[0]) }
            loadAverages = matches("[Ll]oad average[^:]*: ([0-9]+[.][0-9]+)", in: markdown).map { $0[0] }
            guard allReduce.count == Self.allReducePaths.count, !steps.isEmpty else {
                throw ScalingError(description: "the Collectives section of the benchmarks file lacks the 2-rank all-reduce rows or the data-parallel step table; run `make bench-comm` first")
            }
            guard lmStep.count == 2 else {
                throw ScalingError(description: "the benchmarks file lacks the 1-thread rows of the Transformer language models table; run `make bench` (or moe-bench --lm-only --markdown) first")
            }
        }

        /// Gradient bytes n of the training-step model: a rank sends 2(p−1)/p · n per all-reduce.
        var stepGradientBytes: Double {
            let row = steps.first { $0.bytes > 0 }!
            return row.bytes * Double(row.ranks) / (2 * Double(row.ranks - 1))
        }

        /// Per-message α and per-byte β of a measured path, from its 2-rank all-reduce sweep
        /// (t = 2α + n·β in the model at p = 2: two messages, (p−1)/p · 2 = 1). The sweep is not
        /// one straight line: above the caches (here from 16 MiB: a 2-rank all-reduce touches
        /// about 4n bytes, send buffers and receive scratch of both ranks) the bandwidth drops to
        /// about half. So α is fitted on the sizes below 1 MiB (the latency regime) and β, with
        /// that α, on the sizes from 1 MiB up (`bandwidthFit`): the regime of gradients (the
        /// step model's 8.5 MB), whose error straddles the cliff (`cacheCliff`).
        func linkParameters(_ path: String) -> (alpha: Double, beta: Double)? {
            guard let t = allReduce[path] else { return nil }
            let small = allReduceSizes.indices.filter { allReduceSizes[$0] < 1 << 20 }
            let large = allReduceSizes.indices.filter { allReduceSizes[$0] >= 1 << 20 }
            let a = alphaBetaFit(bytes: small.map { allReduceSizes[$0] }, seconds: small.map { t[$0] }).alpha
            let b = bandwidthFit(bytes: large.map { allReduceSizes[$0] }, seconds: large.map { t[$0] }, alpha: a)
            return (max(0, a) / 2, b)
        }

        /// A path's bandwidth n / t at the large sizes: the best from 1 MiB to 4 MiB (in cache)
        /// and the worst at 16 MiB and above (from memory).
        func cacheCliff(_ path: String) -> (inCache: Double, fromMemory: Double)? {
            guard let t = allReduce[path] else { return nil }
            let bandwidth = allReduceSizes.indices.map { (allReduceSizes[$0], Double(allReduceSizes[$0]) / t[$0]) }
            let inCache = bandwidth.filter { $0.0 >= 1 << 20 && $0.0 <= 4 << 20 }.map(\.1).max()
            let fromMemory = bandwidth.filter { $0.0 >= 16 << 20 }.map(\.1).min()
            guard let inCache, let fromMemory else { return nil }
            return (inCache, fromMemory)
        }
    }
}

extension Bench {
    /// β of t = α + β·n with α given, least squares on the relative error:
    /// minimises Σ ((t − α − βn) / t)², so β = Σ n(t − α)/t² / Σ n²/t².
    static func bandwidthFit(bytes: [Int], seconds: [Double], alpha: Double) -> Double {
        var num = 0.0, den = 0.0
        for (n, t) in zip(bytes.map(Double.init), seconds) {
            num += n * (t - alpha) / (t * t)
            den += n * n / (t * t)
        }
        return num / den
    }
}
