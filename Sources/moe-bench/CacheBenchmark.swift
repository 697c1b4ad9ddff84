import Foundation
import MoECore

/// What the task cache buys a sweep (issue 17 item 2, goal ≥ 5× faster than before the issue's
/// work): `moe-run sweep experiments/sweep-fusion.yaml` (21 trials: 7 fusion methods × 3 seeds
/// of one branch run each) with the task cache, with `--no-cache`, and, given `--baseline BIN`,
/// with another moe-run binary (the one before the work: no task cache, a checkpoint
/// file at every epoch). Each run goes into a fresh `--out`; the variants alternate within each
/// round and each figure is the median over the rounds. Reads the spec from the working directory.
extension Bench {
    struct SweepTiming {
        var label: String
        var jobs: Int
        /// Median wall and CPU seconds (user + system of the sweep and all its children); nil when a run failed.
        var wall: Double?
        var cpu: Double?
    }

    static let cacheHeading = "## Task cache (sweep-fusion)"
    static let cacheSpec = "experiments/sweep-fusion.yaml"

    /// The sweep timed under each variant, at `--jobs` 1 (the command as written) and 2.
    static func cacheTimings(rounds: Int, baseline: String?) -> [SweepTiming] {
        let root = FileManager.default.currentDirectoryPath
        let binary = moeRunBinary
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("moe-bench-cache-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        var variants: [(label: String, binary: String, flags: [String])] = []
        if let baseline { variants.append(("before (baseline binary)", baseline, [])) }
        variants += [("--no-cache", binary, ["--no-cache"]), ("task cache", binary, [])]
        var results: [SweepTiming] = []
        for jobs in [1, 2] {
            var samples = [[(Double, Double)]](repeating: [], count: variants.count)
            var failed = Set<Int>()
            for round in 0..<max(rounds, 1) {
                for (v, variant) in variants.enumerated() where !failed.contains(v) {
                    let dir = out + "/j\(jobs)-r\(round)-v\(v)"
                    let args = ["sweep", root + "/" + cacheSpec, "--out", dir, "--quiet", "--jobs", String(jobs)] + variant.flags
                    if let t = timedRun(variant.binary, args) { samples[v].append(t) } else { failed.insert(v) }
                    try? FileManager.default.removeItem(atPath: dir)
                }
            }
            for (v, variant) in variants.enumerated() {
                let ok = !failed.contains(v) && !samples[v].isEmpty
                results.append(SweepTiming(label: variant.label, jobs: jobs, wall: ok ? median(samples[v].map(\.0)) : nil,
                                           cpu: ok ? median(samples[v].map(\.1)) : nil))
            }
        }
        return results
    }

    /// The "## Task cache (sweep-fusion)" section: one row per variant and `--jobs`, with the
    /// speed-up of the task cache over each other variant at the same `--jobs`.
    /// `path` relative to the current directory when it lies below it (the repository's paths
    /// in docs/benchmarks.md), else as it is.
    static func displayPath(_ path: String) -> String {
        let here = FileManager.default.currentDirectoryPath + "/"
        return path.hasPrefix(here) ? String(path.dropFirst(here.count)) : path
    }

    static func cacheSection(_ timings: [SweepTiming], rounds: Int, baseline: String?) -> [String] {
        var lines = [cacheHeading, "",
                     "`moe-run sweep \(cacheSpec)` (21 trials: 7 fusion methods × 3 seeds; each trial a shared pre-trained seed model, "
                     + "4 domain experts, fuse and evaluate), each run into a fresh `--out`, the variants alternating, median of \(rounds) rounds "
                     + "(`moe-bench --cache-only`, \(ISO8601DateFormatter().string(from: Date())), load average \(loadAverage()) on "
                     + "\(BLASEnvironment.cores) cores). CPU is user + system time of the sweep and every process it started. "
                     + "With the task cache one trial per seed trains the data, seed model and experts; the others link them, wait "
                     + "for a trial computing them (`--jobs 2`), and take the experts' metrics and curves from an earlier fuse task. "
                     + "\"task cache\" and \"--no-cache\" run `\(displayPath(moeRunBinary))` (`make app`'s moe-run: the Swift runtime "
                     + "and Foundation linked in, `--static-swift-stdlib`). "
                     + (baseline.map { "\"before\" is the binary `\($0)` (`make bench-cache BASELINE=… BASELINE_LABEL=…`): "
                        + "moe-run before issue 17's work, no task cache and a checkpoint file at every epoch. " }
                        ?? "No baseline binary was given (`make bench-cache BASELINE=path/to/moe-run BASELINE_LABEL=…`). ")
                     + "Goal (issue 17): ≥ 5× faster than before.", "",
                     "| variant | --jobs | wall (s) | CPU (s) | task cache faster by (wall) |",
                     "|---|---:|---:|---:|---:|"]
        for t in timings {
            guard let wall = t.wall, let cpu = t.cpu else { lines.append("| \(t.label) | \(t.jobs) | failed | | |"); continue }
            let cached = timings.first { $0.jobs == t.jobs && $0.label == "task cache" }?.wall
            let ratio = t.label == "task cache" ? "" : cached.map { String(format: "**%.1f×**", wall / $0) } ?? ""
            lines.append(String(format: "| %@ | %d | %.2f | %.2f | %@ |", t.label, t.jobs, wall, cpu, ratio))
        }
        return lines
    }
}
