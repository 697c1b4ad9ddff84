import Foundation
import MoECore

/// What checkpoints cost (issue 17, goal ≤ 5 % of wall time at default settings): shipped
/// experiments run by `moe-run` as shipped, once with the default checkpoint cadence
/// (`train.checkpoint_every: 0`) and once with none (`checkpoint_every` beyond the last step), in
/// alternation over `rounds` rounds; each figure is the median. Wall time is what the issue's
/// goal is about; the CPU time (user + system) of moe-run and its workers is also given because on
/// a shared, loaded machine it varies far less than wall time. Reads the specs and their data from
/// the working directory (the repository: `make bench` runs there).
extension Bench {
    struct CheckpointCost {
        var name: String
        /// Median seconds: wall and CPU (user + system, moe-run and its workers), with default
        /// checkpoints and with none; nil when a run failed.
        var wall: (checkpoints: Double, none: Double)?
        var cpu: (checkpoints: Double, none: Double)?
    }

    /// The experiments measured: the smallest and an MoE feature-data run as shipped, and the
    /// smallest and the largest shipped language model (lm-switch: 8 experts of 512 in every
    /// block, 4.3M parameters, the largest checkpoint file), cut to a few hundred steps with
    /// `--set` (they train 2000 as shipped). Every shipped experiment writes its files on the
    /// same clock (a file at most every `MOE_RUN_CHECKPOINT_SECONDS`, 10 s, on a thread of its
    /// own; step-budget runs a resume point), so the cost per second of training is bounded by
    /// these: the file's size is what changes between experiments.
    static let checkpointExperiments: [(name: String, sets: [String])] = [
        ("digits-dense", []), ("moe-topk", []), ("lm-dense", ["train.steps=200"]), ("lm-switch", ["train.steps=100"]),
    ]

    /// `checkpoint_every` larger than any shipped budget: no checkpoint at all.
    static let noCheckpoints = "train.checkpoint_every=1000000000"

    static func checkpointCosts(rounds: Int) -> [CheckpointCost] {
        let root = FileManager.default.currentDirectoryPath
        let binary = moeRunBinary
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("moe-bench-checkpoints-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        return checkpointExperiments.map { experiment in
            var with: [(Double, Double)] = [], without: [(Double, Double)] = []
            let spec = root + "/experiments/\(experiment.name).yaml"
            // --no-cache: the two runs differ only in a result-neutral key, so the task cache would
            // hand the second the first one's task files instead of training.
            let sets = ["--no-cache"] + experiment.sets.flatMap { ["--set", $0] }
            for _ in 0..<max(rounds, 1) {
                guard let a = timedRun(binary, [spec, "--quiet", "--force", "--out", out] + sets),
                      let b = timedRun(binary, [spec, "--quiet", "--force", "--out", out] + sets + ["--set", noCheckpoints]) else {
                    return CheckpointCost(name: experiment.name)
                }
                with.append(a)
                without.append(b)
            }
            return CheckpointCost(name: experiment.name, wall: (median(with.map(\.0)), median(without.map(\.0))),
                                  cpu: (median(with.map(\.1)), median(without.map(\.1))))
        }
    }

    /// Runs `binary arguments` to the end; its wall seconds and the CPU seconds (user + system)
    /// of it and its children, or nil if it failed.
    static func timedRun(_ binary: String, _ arguments: [String]) -> (Double, Double)? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        var env = ProcessInfo.processInfo.environment
        env["OPENBLAS_NUM_THREADS"] = nil  // the scheduler divides the cores among its workers itself
        p.environment = env
        let before = childrenCPU()
        let start = Date()
        guard (try? p.run()) != nil else { return nil }
        p.waitUntilExit()
        let wall = Date().timeIntervalSince(start)
        guard p.terminationStatus == 0 else { return nil }
        return (wall, childrenCPU() - before)
    }

    /// User + system seconds of this process's waited-for children (and theirs).
    private static func childrenCPU() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    static let checkpointHeading = "## Checkpoints"

    /// The "## Checkpoints" section: one row per experiment, overhead = (with − none) / with.
    static func checkpointSection(_ costs: [CheckpointCost], rounds: Int) -> [String] {
        var lines = [checkpointHeading, "",
                     "Wall time of shipped experiments run by moe-run with the default checkpoint cadence against none "
                     + "(`--set \(noCheckpoints)`), alternating, median of \(rounds) rounds each (`moe-bench --checkpoints-only`, "
                     + "\(ISO8601DateFormatter().string(from: Date())), load average \(loadAverage()) on \(BLASEnvironment.cores) cores). "
                     + "CPU is user + system time of moe-run and its workers. Overhead = (with − none) / with; "
                     + "goal (issue 17): ≤ 5 % of wall time. lm-dense runs 200 of its 2000 steps (`--set train.steps=200`), lm-switch 100; "
                     + "step-budget runs write a resume point every 10 s at the default cadence.", "",
                     "| experiment | wall, default checkpoints (s) | wall, none (s) | wall overhead | CPU, default (s) | CPU, none (s) | CPU overhead |",
                     "|---|---:|---:|---:|---:|---:|---:|"]
        for c in costs {
            guard let wall = c.wall, let cpu = c.cpu else { lines.append("| \(c.name) | failed | | | | | |"); continue }
            func share(_ with: Double, _ none: Double) -> String { String(format: "%+.1f %%", (with - none) / max(with, 1e-9) * 100) }
            lines.append(String(format: "| %@ | %.2f | %.2f | %@ | %.2f | %.2f | %@ |", c.name, wall.checkpoints, wall.none,
                                share(wall.checkpoints, wall.none), cpu.checkpoints, cpu.none, share(cpu.checkpoints, cpu.none)))
        }
        return lines
    }
}
