import Foundation
import MoECore
import MoENN

/// Causal self-attention forward+backward at lm-dense's shape (issue 13, item 8), against the
/// PyTorch eager layer built on `F.scaled_dot_product_attention(is_causal=True)`
/// (Tests/python/bench_torch_attention.py), same threads, same run.
extension Bench {
    struct AttentionShape {
        var batch = 12, tokens = 64, hidden = 128, heads = 4
        var description: String { "batch \(batch), context \(tokens), hidden \(hidden), heads \(heads)" }
        /// Matrix FLOPs of forward+backward: the projections (2·N·3H² + 2·N·H² forward) and the two
        /// T×T products per head (2·B·T²·H each, counted in full as PyTorch's MFU counts do), ×3 with backward.
        var flops: Double {
            let n = Double(batch * tokens), h = Double(hidden), t = Double(tokens)
            return 3 * (2 * n * 4 * h * h + 4 * Double(batch) * t * t * h)
        }
    }

    struct AttentionResult {
        var milliseconds: Double
        var gflops: Double
    }

    /// Forward + backward of one `CausalSelfAttention` (qkv and out projections included).
    static func attention(_ s: AttentionShape = AttentionShape()) -> AttentionResult {
        let n = s.batch * s.tokens
        let layer = CausalSelfAttention("blocks/0/attn", hidden: s.hidden, heads: s.heads, seed: 0, outStd: 0.01)
        var rng = RNG(seed: 0, purpose: "bench/attention")
        let x = Tensor(shape: [n, s.hidden]), y = Tensor(shape: [n, s.hidden])
        let dy = Tensor(shape: [n, s.hidden]), dx = Tensor(shape: [n, s.hidden])
        rng.fillNormal(x)
        rng.fillNormal(dy)
        let rate = bestRate(trials: 5, minTime: 0.3) {
            layer.forward(x.data, batch: s.batch, tokens: s.tokens, into: y.data)
            layer.backward(dy.data, dx: dx.data)
        }
        return AttentionResult(milliseconds: 1000 / rate, gflops: rate * s.flops / 1e9)
    }

    /// The PyTorch reference: JSON {"torch", "threads", "ms" (whole layer), "sdpa_ms" (SDPA alone)}.
    static func torchAttention(python: String, script: String, _ s: AttentionShape = AttentionShape()) -> [String: Any]? {
        childJSON(python, [script, String(BLASInfo.threads)] + [s.batch, s.tokens, s.hidden, s.heads].map(String.init))
    }

    /// moe-run and PyTorch alternate over `rounds` (each keeps its best, as for sgemm); the result
    /// as markdown lines for docs/benchmarks.md.
    /// At the configured thread count and, when that is more than one, also at 1 thread (the
    /// per-(sequence, head) products are single-threaded here, while SDPA spreads them over
    /// threads; both figures show where the time goes).
    static func attentionComparison(torch python: String?, rounds: Int, sgemm1024: Double?) -> [String] {
        let threads = BLASInfo.threads
        defer { BLASInfo.setThreads(threads) }
        return (threads > 1 ? [threads, 1] : [threads]).flatMap { n -> [String] in
            BLASInfo.setThreads(n)
            return attentionComparisonAtCurrentThreads(torch: python, rounds: rounds, sgemm1024: n == threads ? sgemm1024 : nil)
        }
    }

    static func attentionComparisonAtCurrentThreads(torch python: String?, rounds: Int, sgemm1024: Double?) -> [String] {
        let shape = AttentionShape()
        var ours = attention(shape)
        var reference: [String: Any]?
        for round in 0..<max(1, rounds) {
            if round > 0 {
                let again = attention(shape)
                if again.milliseconds < ours.milliseconds { ours = again }
            }
            if let python, let t = torchAttention(python: python, script: "Tests/python/bench_torch_attention.py", shape),
               let ms = t["ms"] as? Double, ms < (reference?["ms"] as? Double ?? .infinity) {
                reference = t
            }
        }
        var lines = [String(format: "%d BLAS thread(s). Causal self-attention forward+backward (%@; qkv and out projections included): **%.3f ms**, %.1f GFLOP/s of matrix work",
                            BLASInfo.threads, shape.description as NSString, ours.milliseconds, ours.gflops)
                     + (sgemm1024.map { String(format: " = %.2f × our sgemm at n = 1024", ours.gflops / $0) } ?? "") + "."]
        if let t = reference, let ms = t["ms"] as? Double {
            lines.append(String(format: "PyTorch %@ eager, the same layer with `F.scaled_dot_product_attention(is_causal=True)`, %d threads, same run: %.3f ms → moe-run is **%.2f×** its speed (SDPA alone, q, k, v → y and back: %.3f ms).",
                                (t["torch"] as? String ?? "?") as NSString, t["threads"] as? Int ?? 0, ms, ms / ours.milliseconds,
                                t["sdpa_ms"] as? Double ?? .nan))
        } else {
            lines.append("PyTorch reference: not measured (no torch venv; `make torch-venv` creates it).")
        }
        return lines
    }

    /// The attention section of docs/benchmarks.md (title, provenance, the comparison).
    static func attentionSection(_ lines: [String], rounds: Int) -> String {
        let threads = ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] ?? "unset"
        return """
        ## Causal self-attention

        Measured on \(ISO8601DateFormatter().string(from: Date())) with 1-minute load average \(loadAverage()) (`make bench`, or `make bench-attention` \
        for this section alone), OPENBLAS_NUM_THREADS=\(threads) and 1, PyTorch given the same thread count each \
        time; moe-run and PyTorch alternate over \(rounds) rounds, each keeping its best (best of 5 trials of ≥ 0.3 s). \
        moe-run's per-(sequence, head) products (64×64×32) run single-threaded (OpenBLAS does not thread \
        products this small, and MoENN has no thread pool), so only the qkv/out projections use a second \
        thread; SDPA spreads (batch, head) pairs over its OpenMP threads. On a loaded machine (load average \
        above the core count) PyTorch's OpenMP threads lose far more than OpenBLAS's: read the 1-thread line then.

        \(lines.joined(separator: "\n\n"))

        """
    }

    /// The section of the markdown file at `path` that starts with the heading line `heading`
    /// (up to the next `## ` heading), or nil.
    static func section(_ heading: String, in path: String) -> (heading: String, text: String)? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let lines = text.components(separatedBy: "\n")
        guard let start = lines.firstIndex(of: heading) else { return nil }
        let end = lines[(start + 1)...].firstIndex { $0.hasPrefix("## ") } ?? lines.endIndex
        var body = Array(lines[start..<end])
        while body.last == "" { body.removeLast() }
        return (heading, body.joined(separator: "\n"))
    }

    /// Replaces the section of the markdown file at `path` that starts with the heading line
    /// `heading` (up to the next `## ` heading) by `section`, or appends it when the file has none.
    static func replaceSection(_ heading: String, in path: String, with section: String) throws {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "# Benchmarks\n"
        var lines = text.components(separatedBy: "\n")
        if let start = lines.firstIndex(of: heading) {
            let end = lines[(start + 1)...].firstIndex { $0.hasPrefix("## ") } ?? lines.endIndex
            var replacement = section.components(separatedBy: "\n")
            while replacement.last == "" { replacement.removeLast() }
            if end < lines.endIndex { replacement.append("") }  // a blank line before the next heading
            lines.replaceSubrange(start..<end, with: replacement)
        } else {
            if lines.last == "" { lines.removeLast() }
            lines += [""] + section.components(separatedBy: "\n")
        }
        while lines.last == "" { lines.removeLast() }
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }
}
