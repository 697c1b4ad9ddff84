import Foundation
import MoECore
import MoESpec
#if canImport(Glibc)
import Glibc
#endif

/// How `moe-run sweep` was asked to run.
public struct SweepOptions: Sendable {
    /// Trials run at once (each a `moe-run` run with its own workers).
    public var jobs = 1
    public var quiet = false
    /// Stop at the first failed trial (the running ones are interrupted, resumable).
    public var failFast = false
    /// `--no-cache`: every trial runs all its tasks (passed on to each trial's run).
    public var noCache = false
    public init(jobs: Int = 1, quiet: Bool = false, failFast: Bool = false, noCache: Bool = false) {
        self.jobs = jobs
        self.noCache = noCache
        self.quiet = quiet
        self.failFast = failFast
    }
}

/// How a sweep ended: the exit code of the CLI contract (0 all trials complete, 1 some failed,
/// 130 interrupted) and, when not 0, the one-line reason.
public struct SweepOutcome: Sendable {
    public var exitCode: Int32
    public var message: String?
}

/// Runs the valid trials of a sweep, each as its own process `moe-run SPEC --set … --out ROOT
/// --resume --quiet` (a crashing trial cannot take the sweep down; a complete run is found by
/// its run id and skipped), up to `jobs` at once, then writes `summary.csv` and `summary.h5`.
public enum SweepRunner {
    public static func run(_ plan: SweepPlan, options: SweepOptions, say: (String) -> Void) throws -> SweepOutcome {
        try finish(plan, options: options, try runTrials(plan, options: options, say: say), say: say)
    }

    /// What running trials gave: each trial's result by number, and the failures' lines.
    struct TrialsRun: Codable {
        var results: [Int: SweepResult] = [:]
        var failures: [String] = []
    }

    /// Runs the valid trials (only those numbered in `only`, when given), `options.jobs` at once.
    /// `environment` edits the children's environment (`MPISweep` takes the MPI launch's
    /// variables out: a trial is a plain run on its rank's machine).
    static func runTrials(_ plan: SweepPlan, options: SweepOptions, only: Set<Int>? = nil,
                          environment edit: (inout [String: String]) -> Void = { _ in },
                          say: (String) -> Void) throws -> TrialsRun {
        let fm = FileManager.default
        let directory = plan.directory
        do {
            try fm.createDirectory(atPath: directory + "/logs", withIntermediateDirectories: true)
        } catch {
            throw RuntimeError.io(path: directory, message: "cannot create the sweep directory: \(error.localizedDescription)")
        }
        let jobs = max(1, options.jobs)
        let trials = plan.trials.filter { t in t.spec != nil && (only?.contains(t.number) ?? true) }
        var results: [Int: SweepResult] = [:]
        let count = plan.trials.count
        func name(_ t: SweepTrial) -> String { "trial \(t.number)/\(count) (\(t.label))" }

        var environment = trialEnvironment(BLASEnvironment.currentEnvironment(), cores: BLASEnvironment.cores, jobs: jobs)
        edit(&environment)

        var queue: [SweepTrial] = []
        for trial in trials {
            if let header = RunFile.readHeader(trial.layout!), header.status == "complete" {
                results[trial.number] = SweepResult(status: "complete", skipped: true)
                if !options.quiet { say("\(name(trial)): complete, skipped: \(trial.layout!.directory)") }
            } else {
                queue.append(trial)
            }
        }

        struct Running {
            let trial: SweepTrial
            let child: ChildProcess
            let log: FileHandle?
            let started: Date
            var lastError: String?
        }
        var running: [Running] = []
        var failures: [String] = []
        var stopping = false
        Interrupts.install()
        while !queue.isEmpty || !running.isEmpty {
            if Interrupts.requested && !stopping {
                stopping = true
                for r in running { r.child.signal(SIGINT) }
            }
            // Trials whose swept key has no effect resolve to one run (same directory): never two
            // at once there; the later one then finds the run complete.
            while !stopping, running.count < jobs,
                  let next = queue.firstIndex(where: { t in !running.contains { $0.trial.layout!.directory == t.layout!.directory } }) {
                let trial = queue.remove(at: next)
                var arguments = ["moe-run", plan.specPath]
                for s in plan.userOverrides + ["sweep="] + trial.setArguments {
                    arguments += s.hasPrefix("~") ? ["--unset", String(s.dropFirst())] : ["--set", s]
                }
                arguments += ["--out", plan.outputRoot, "--resume", "--quiet"] + (options.noCache ? ["--no-cache"] : [])
                let logPath = directory + "/logs/trial-\(trial.number).txt"
                _ = fm.createFile(atPath: logPath, contents: Data(("$ moe-run " + arguments.dropFirst().joined(separator: " ") + "\n").utf8))
                let log = FileHandle(forWritingAtPath: logPath)
                log?.seekToEndOfFile()
                let child = try ChildProcess(executable: "/proc/self/exe", arguments: arguments, environment: environment)
                if !options.quiet { say("\(name(trial)): started") }
                running.append(Running(trial: trial, child: child, log: log, started: Date()))
            }
            // Wait for output or an exit (a signal to this process ends the wait early).
            var fds = running.flatMap { r in r.child.waitFDs.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) } }
            _ = fds.withUnsafeMutableBufferPointer { Glibc.poll($0.baseAddress, nfds_t($0.count), 100) }
            var i = 0
            while i < running.count {
                for pipe in 0..<2 {
                    for line in running[i].child.readLines(pipe) {
                        running[i].log?.write(Data((line + "\n").utf8))
                        if line.hasPrefix("moe-run: error: ") { running[i].lastError = String(line.dropFirst("moe-run: error: ".count)) }
                    }
                }
                guard running[i].child.drained, let status = running[i].child.poll() else { i += 1; continue }
                let r = running.remove(at: i)
                try? r.log?.close()
                let seconds = Date().timeIntervalSince(r.started)
                switch status {
                case .exited(0):
                    results[r.trial.number] = SweepResult(status: "complete", skipped: false, seconds: seconds)
                    if !options.quiet { say("\(name(r.trial)): complete in \(String(format: "%.1f", seconds)) s: \(r.trial.layout!.directory)") }
                case .exited(130), .signaled(SIGINT):
                    results[r.trial.number] = SweepResult(status: "interrupted", skipped: false, seconds: seconds)
                    if !options.quiet { say("\(name(r.trial)): interrupted (resumable)") }
                default:
                    let reason = r.lastError ?? "ended with \(status)"
                    results[r.trial.number] = SweepResult(status: "failed", skipped: false, seconds: seconds, error: reason)
                    let line = "\(name(r.trial)) failed: \(reason) (log \(directory)/logs/trial-\(r.trial.number).txt)"
                    failures.append(line)
                    FileHandle.standardError.write(Data(("moe-run: " + line + "\n").utf8))
                    if options.failFast && !stopping {
                        stopping = true
                        for other in running { other.child.signal(SIGINT) }
                    }
                }
            }
            if stopping { queue.removeAll() }
        }
        return TrialsRun(results: results, failures: failures)
    }

    /// The environment of every trial process, from this process's: each gets its share of the
    /// cores, `MOE_RUN_CORES` = cores / jobs, which its scheduler divides by parallelism.workers
    /// for its workers' OPENBLAS_NUM_THREADS. The trial process itself only schedules: one BLAS
    /// thread (OpenBLAS's other threads would spin on a core for ~0.1 s after it loads, taking it
    /// from the trial's first worker), unless the user set OPENBLAS_NUM_THREADS (README: a user's
    /// value always wins). No progress bars (the trial's output goes to its log).
    static func trialEnvironment(_ current: [String: String], cores: Int, jobs: Int) -> [String: String] {
        var environment = current
        environment[BLASEnvironment.coresVariable] = String(max(1, cores / max(1, jobs)))
        if environment[BLASEnvironment.userThreadsVariable] != "1" { environment["OPENBLAS_NUM_THREADS"] = "1" }
        environment[RunLog.progressVariable] = nil
        return environment
    }

    /// Writes `summary.csv` and `summary.h5` from the trials' `run` and says how the sweep ended.
    static func finish(_ plan: SweepPlan, options: SweepOptions, _ run: TrialsRun, say: (String) -> Void) throws -> SweepOutcome {
        let (results, failures) = (run.results, run.failures)
        let directory = plan.directory
        let count = plan.trials.count

        let rows = plan.trials.map { trial -> SweepSummary.Row in
            let result = results[trial.number]
            let status: String
            if trial.error != nil { status = "invalid" } else { status = result?.status ?? "not run" }
            return SweepSummary.Row(trial: trial, status: status, seconds: result?.seconds, error: result?.error ?? trial.errorText)
        }
        let summary = SweepSummary(plan: plan, rows: rows)
        try summary.write()

        let complete = rows.filter { $0.status == "complete" }.count
        let skipped = results.values.filter(\.skipped).count
        let tally = "\(complete) of \(count) trials complete (\(skipped) skipped as already complete)"
        if Interrupts.requested {
            return SweepOutcome(exitCode: 130, message: "interrupted: \(tally); rerun the same command to resume")
        }
        if !failures.isEmpty {
            var text = "\(failures.count) trial\(failures.count == 1 ? "" : "s") failed; \(tally); summary \(directory)/summary.csv"
            if options.failFast { text += " (--fail-fast: the remaining trials were not started)" }
            for f in failures { text += "\n  " + f }
            return SweepOutcome(exitCode: 1, message: text)
        }
        if !options.quiet { say(tally + "; summary \(directory)/summary.csv") }
        return SweepOutcome(exitCode: 0, message: nil)
    }
}

/// How one trial ended in this invocation of the sweep.
struct SweepResult: Codable {
    var status: String
    var skipped: Bool
    var seconds: Double?
    var error: String?
}
