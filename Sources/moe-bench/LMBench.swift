import Foundation
import MoECore

/// The transformer LMs of issue 13 item 7 as the bench trains them (lm-dense and lm-moe): byte
/// vocabulary 256, context T = 64, hidden 128, 4 heads, 4 pre-norm blocks, FFN 512 (4·hidden),
/// batch 12, tied head, no dropout, AdamW (lr 1e-3, β₂ 0.99, weight decay 0.1 on matrices),
/// gradient clipping at 1.0. lm-moe replaces every block's FFN by 8 GELU experts with a top-2
/// softmax router, dropless, Switch aux loss 0.01 and z-loss 0.001, at *equal active FFN width*:
/// each expert is 512 / 2 = 256 wide, so a token's two experts together are as wide as the dense
/// FFN (about the dense model's FLOPs per token, 4× its FFN parameters).
struct LMBenchModel: Sendable {
    var name: String
    var vocab = 256, context = 64, hidden = 128, heads = 4, blocks = 4, ffn = 512, batch = 12
    var experts = 0, k = 0, expertFFN = 0

    static let dense = LMBenchModel(name: "dense")
    static let moe = LMBenchModel(name: "moe", experts: 8, k: 2, expertFFN: 256)
    static let all = [dense, moe]
    static func named(_ name: String) -> LMBenchModel? { all.first { $0.name == name } }

    var title: String { "lm-" + name }
    var isMoE: Bool { experts > 0 }
    /// Tokens trained per step: batch · T (each window reads T tokens and predicts the next of each).
    var tokensPerStep: Int { batch * context }

    /// Parameters of one block besides the FFN: two LayerNorms, qkv and out projections with biases.
    private var attentionBlock: Int { 4 * hidden + 3 * hidden * hidden + 3 * hidden + hidden * hidden + hidden }
    private var denseFFN: Int { 2 * hidden * ffn + ffn + hidden }
    /// Parameters of one expert (Linear–GELU–Linear, hidden → expertFFN → hidden, with biases).
    var expert: Int { 2 * hidden * expertFFN + expertFFN + hidden }
    private func perBlock(expertsUsed: Int) -> Int {
        attentionBlock + (isMoE ? hidden * experts + expertsUsed * expert : denseFFN)
    }
    private var embeddings: Int { vocab * hidden + context * hidden }

    /// Every parameter (the tied head counted once).
    var totalParameters: Int { embeddings + blocks * perBlock(expertsUsed: experts) + 2 * hidden }
    /// The parameters one token uses: the router and k of the E experts.
    var activeParameters: Int { embeddings + blocks * perBlock(expertsUsed: k) + 2 * hidden }

    /// Training FLOPs per token, nanoGPT's `estimate_mfu` (PaLM, Chowdhery et al. 2022, appendix B):
    /// 6·N + 12·L·H·Q·T, with N the active parameters without the position embedding (the tied
    /// token embedding stands for the head's matmul), L blocks, H heads of Q = hidden/H dims
    /// (H·Q = hidden) and T the context. The attention term counts the full T×T scores, not the
    /// causal half, as the formula does.
    var flopsPerToken: Double {
        6 * Double(activeParameters - context * hidden) + 12 * Double(blocks * hidden * context)
    }
}

/// One side's measurement of one model: best step time over the rounds and peak RSS.
struct LMMeasurement {
    var milliseconds: Double
    var maxRSSKB: Double
    /// CPU time of the process per step (best trial).
    var cpuMilliseconds: Double?
    var info: [String: Any]

    init?(_ json: [String: Any]?) {
        guard let json, let ms = json["ms"] as? Double, let rss = json["max_rss_kb"] as? Double else { return nil }
        milliseconds = ms
        maxRSSKB = rss
        cpuMilliseconds = json["cpu_ms"] as? Double
        info = json
    }

    /// The better step time of the two, the smaller CPU time and the larger peak RSS (a fresh process each time).
    func merged(_ other: LMMeasurement?) -> LMMeasurement {
        guard let other else { return self }
        var best = other.milliseconds < milliseconds ? other : self
        best.maxRSSKB = max(maxRSSKB, other.maxRSSKB)
        best.cpuMilliseconds = [cpuMilliseconds, other.cpuMilliseconds].compactMap { $0 }.min()
        return best
    }
}

extension Bench {
    /// Runs `executable arguments…` with `environment` changes and parses its standard output as
    /// one JSON object (nil if it cannot start, fails or prints something else).
    static func childJSON(_ executable: String, _ arguments: [String], environment: [String: String?] = [:]) -> [String: Any]? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        do { try p.run() } catch { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    }

    /// This machine's 1-minute load average (the bench shares its cores: reported with the figures).
    static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").first.map(String.init) ?? "?"
    }

    /// Training-step comparison of lm-dense and lm-moe: moe-run (a fresh `moe-bench --lm-child
    /// NAME` process) and PyTorch eager (Tests/python/bench_torch_lm.py) alternate per model and
    /// thread count over `rounds` rounds, each side keeping its best step time. The thread counts
    /// are OpenBLAS's here and, when that is more than 1, also 1 (PyTorch's OpenMP threads spin
    /// while they wait, so on a loaded machine its multi-threaded figure suffers more than ours:
    /// the 1-thread rows are the comparison that load distorts least).
    static func lmComparison(torch: String?, rounds: Int, secondsPerTrial: Double = 1) -> LMComparison {
        let threads = BLASInfo.threads > 1 ? [BLASInfo.threads, 1] : [1]
        var result = LMComparison(threads: threads, loadBefore: loadAverage())
        for _ in 0..<max(1, rounds) {
            for n in threads {
                for model in LMBenchModel.all {
                    let key = LMComparison.key(model, threads: n)
                    if let ours = LMMeasurement(lmChild(model, secondsPerTrial: secondsPerTrial, threads: n)) {
                        result.ours[key] = ours.merged(result.ours[key])
                    }
                    if let torch, let theirs = LMMeasurement(childJSON(torch, ["Tests/python/bench_torch_lm.py", String(n), model.name, String(secondsPerTrial)])) {
                        result.torch[key] = theirs.merged(result.torch[key])
                    }
                }
            }
        }
        result.loadAfter = loadAverage()
        return result
    }
}

/// Both sides' figures for the two LMs, and the lines `make bench` prints and writes.
struct LMComparison {
    /// Keyed by `key(model, threads:)`.
    var ours: [String: LMMeasurement] = [:]
    var torch: [String: LMMeasurement] = [:]
    /// The thread counts measured; the first is the main comparison, the last the breakdown's.
    var threads: [Int]
    var loadBefore: String
    var loadAfter = "?"

    init(threads: [Int], loadBefore: String) {
        self.threads = threads
        self.loadBefore = loadBefore
    }

    static func key(_ model: LMBenchModel, threads: Int) -> String { "\(model.name)@\(threads)" }

    /// The markdown section (also printed): a table per model and, for moe-run, where its step's time goes.
    func lines(sgemmPeak: Double, sgemmSize: Int) -> [String] {
        func fmt(_ x: Double?, _ digits: Int = 0) -> String { x.map { String(format: "%.\(digits)f", $0) } ?? "–" }
        var out: [String] = []
        let version = torch.values.first?.info["torch"] as? String
        out.append("Training step (forward + backward + clip + AdamW) of the transformer LMs of issue 13 item 7: "
            + "byte vocabulary 256, context 64, hidden 128, 4 heads, 4 pre-norm blocks, FFN 512, batch 12 windows "
            + "(768 tokens per step), tied head, no dropout, AdamW lr 1e-3 β₂ 0.99, clipping at 1.0. "
            + "lm-moe: each block's FFN is 8 GELU experts, top-2 softmax router, dropless, aux loss 0.01 and z-loss 0.001, "
            + "at **equal active FFN width**: each expert is 512 / 2 = 256 wide, so a token's two experts together are as wide as the dense FFN. "
            + "Reference: PyTorch \(version ?? "not measured") eager, `Tests/python/bench_torch_lm.py` (nanoGPT's model.py with "
            + "`F.scaled_dot_product_attention`; its MoE sorts the assignments by expert, index_select, one Linear–GELU–Linear per expert, index_add_; fused AdamW), "
            + "same threads, same fixed random batch shape, measured in the same run: the two alternate per model and thread count, each keeps its best of 3 trials "
            + "of ≥ 1 s per round. The 1-thread rows are the comparison load distorts least: PyTorch's OpenMP threads spin while they wait, "
            + "so on a busy machine its multi-threaded figure drops more than ours; at 1 thread the CPU time per step of each process (best trial) is compared too, which load inflates least. Each measurement is a fresh process, whose peak resident set (VmHWM of /proc/self/status, not ru_maxrss, which counts the parent's resident set at the fork) is the peak RSS below "
            + "(PyTorch's includes about \(fmt((torch.values.first?.info["import_rss_kb"] as? Double).map { $0 / 1024 })) MB for `import torch` alone). "
            + "MFU: model FLOPs per token 6·N + 12·L·hidden·T (nanoGPT's `estimate_mfu`, PaLM appendix B; N = active parameters without the position embedding) "
            + "× tokens/s, as a fraction of our sgemm rate at n = \(sgemmSize) in this run (\(fmt(sgemmPeak, 1)) GFLOP/s). "
            + "Load average (1 min) on this shared machine: \(loadBefore) before, \(loadAfter) after.")
        out.append("")
        out.append("| model | threads | parameters total / active | moe-run tokens/s | PyTorch tokens/s | moe-run / PyTorch | by CPU time (1 thread) | goal | MFU moe-run | MFU PyTorch | peak RSS moe-run | peak RSS PyTorch |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in threads {
            for model in LMBenchModel.all {
                let key = LMComparison.key(model, threads: n)
                let tokens = Double(model.tokensPerStep)
                let oursRate = ours[key].map { tokens * 1000 / $0.milliseconds }
                let theirRate = torch[key].map { tokens * 1000 / $0.milliseconds }
                let ratio = oursRate.flatMap { o in theirRate.map { o / $0 } }
                // Load inflates CPU time far less than wall time, but with more threads it counts spinning.
                let cpuRatio = n == 1 ? ours[key]?.cpuMilliseconds.flatMap { o in torch[key]?.cpuMilliseconds.map { $0 / o } } : nil
                // MFU against the sgemm rate of the main thread count only (the rate measured here).
                func mfu(_ rate: Double?) -> String {
                    n == threads[0] ? rate.map { String(format: "%.2f", $0 * model.flopsPerToken / 1e9 / sgemmPeak) } ?? "–" : "–"
                }
                func mb(_ m: LMMeasurement?) -> String { m.map { String(format: "%.0f MB", $0.maxRSSKB / 1024) } ?? "–" }
                let params = String(format: "%.2fM / %.2fM", Double(model.totalParameters) / 1e6, Double(model.activeParameters) / 1e6)
                out.append("| \(model.title) | \(n) | \(params) | \(oursRate.map { fmt($0) } ?? "not measured") | \(fmt(theirRate)) | "
                    + "\(ratio.map { String(format: "**%.2f×**", $0) } ?? "–") | \(cpuRatio.map { String(format: "%.2f×", $0) } ?? "–") | ≥ \(model.isMoE ? "2" : "1.5")× | \(mfu(oursRate)) | \(mfu(theirRate)) | \(mb(ours[key])) | \(mb(torch[key])) |")
            }
        }
        out += breakdown()
        return out
    }

    /// Where moe-run's step goes, per model, at the last thread count (1 when measured, then in
    /// CPU time): the step's parts (each its
    /// fastest of 10 profiled steps), the attention and FFN/MoE layers timed alone on the step's
    /// shape (× blocks), and the MoE layers' own phases inside the real steps; each in ms and as a
    /// share of the parts' sum.
    func breakdown() -> [String] {
        let main = threads.last!  // 1 thread when measured: profiled in CPU time
        let models = LMBenchModel.all.filter { ours[LMComparison.key($0, threads: main)] != nil }
        guard !models.isEmpty else { return [] }
        func dict(_ m: LMBenchModel, _ key: String) -> [String: Double] {
            ours[LMComparison.key(m, threads: main)]?.info[key] as? [String: Double] ?? [:]
        }
        let totals = Dictionary(uniqueKeysWithValues: models.map { ($0.name, dict($0, "parts").values.reduce(0, +)) })
        var rows: [(String, [String: Double])] = []
        func row(_ title: String, _ value: (LMBenchModel) -> Double?) {
            var seconds: [String: Double] = [:]
            for m in models { if let v = value(m), (totals[m.name] ?? 0) > 0 { seconds[m.name] = v } }
            if !seconds.isEmpty { rows.append((title, seconds)) }
        }
        for part in ["forward", "backward", "clip", "AdamW", "zero gradients"] { row(part) { dict($0, "parts")[part] } }
        let components = ["attention forward", "attention backward", "ffn forward", "ffn backward"]
        for c in components {
            row("· " + c.replacingOccurrences(of: "ffn", with: "FFN / MoE layer") + " (× blocks)") { dict($0, "components")[c] }
        }
        row("· rest of forward + backward (embeddings, LayerNorms, residual adds, tied head + cross-entropy)") { m in
            let p = dict(m, "parts"), c = dict(m, "components")
            return (p["forward"] ?? 0) + (p["backward"] ?? 0) - components.reduce(0) { $0 + (c[$1] ?? 0) }
        }
        let clock = main > 1 ? "wall time" : "CPU time"
        var out = ["", "Where moe-run's training step goes at \(main) thread\(main > 1 ? "s" : ""), in \(clock): each part's fastest of 10 profiled steps, and its share of their sum; lines marked · are parts of forward + backward, the attention and FFN / MoE lines measured alone on the step's shape.", "",
                   "| part | " + models.map(\.title).joined(separator: " | ") + " |",
                   "|---|" + models.map { _ in "---:|" }.joined()]
        for (title, seconds) in rows {
            out.append("| \(title) | " + models.map { m in seconds[m.name].map { String(format: "%.2f ms (%.1f%%)", 1000 * $0, 100 * $0 / totals[m.name]!) } ?? "–" }.joined(separator: " | ") + " |")
        }
        // The MoE layers' own phases (MoEProfile, wall time inside the profiled steps): shares of their sum.
        for m in models where m.isMoE {
            let phases = dict(m, "moe_phases"), total = phases.values.reduce(0, +)
            guard total > 0 else { continue }
            out += ["", "\(m.title)'s MoE layers inside the step (MoEProfile, wall time, each phase's fastest of the 10 steps, as a share of their sum):", "",
                    "| MoE phase | share |", "|---|---:|"]
            for (phase, s) in phases.sorted(by: { $0.value > $1.value }) { out.append("| \(phase) | " + String(format: "%.1f%%", 100 * s / total) + " |") }
        }
        return out
    }
}
