import ArgumentParser
import Foundation
import MoEReport
import MoERuntime
import MoESpec

/// `moe-run sweep`: runs every trial of a sweep (the spec's `sweep` section and/or `--grid`)
/// as its own run, then writes the sweep's summary.csv and summary.h5.
struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Run a parameter sweep: one run per trial, then summary.csv/summary.h5 in <out>/<name>/sweep-<hash>/.",
        discussion: """
        Trials come from the spec's `sweep` section; --grid adds or replaces swept keys, --random N samples N \
        combinations instead of the full grid. Every trial is validated before the first starts. A trial whose run \
        is complete is skipped (resume is the default). Exit codes: 0 every trial complete, 1 a trial failed (the \
        others still run, unless --fail-fast), 2 bad spec or an invalid trial (nothing runs), 130 interrupted (rerun to resume).
        """)

    @OptionGroup var specOptions: SpecOptions
    @Option(name: .customLong("grid"), help: ArgumentHelp("Sweep a key over values, e.g. --grid router.k=1,2 (repeatable; combined as a grid).", valueName: "KEY=V1,V2,..."))
    var grid: [String] = []
    @Option(help: ArgumentHelp("Run N random combinations of the swept values instead of the full grid.", valueName: "N")) var random: Int?
    @Option(help: "Seed of --random (default: the spec's sweep.seed, else 0).") var seed: Int?
    @Option(help: "Root folder for results (default: the spec's output.dir).") var out: String?
    @Option(help: "Trials run at once; the cores are shared: OPENBLAS threads = cores / (jobs × workers).") var jobs = 1
    @Flag(help: "List the trials with their overrides and run directories; run and write nothing.") var dryRun = false
    @Flag(help: "Run the valid trials when some combinations are invalid (default: refuse, run nothing).") var skipInvalid = false
    @Flag(help: "Stop at the first failed trial (running trials are interrupted, resumable).") var failFast = false
    @Flag(help: "Skip complete trials and continue unfinished ones (always on for sweeps).") var resume = false
    @Flag(help: "Print only failures and the final line.") var quiet = false
    @Flag(help: "Every trial runs all its tasks; none is reused from another run (the task cache).") var noCache = false

    func run() throws {
        guard jobs >= 1 else { throw CLIError(message: "--jobs: expected an integer >= 1, got \(jobs)", exitCode: 2) }
        let plan = try SweepPlan.make(specPath: specOptions.spec, overrides: specOptions.allOverrides, grid: grid,
                                      random: random, seed: seed, outputRoot: out)
        // Each distinct warning once, naming its trials (the trials' own copies go to their logs).
        if MPIRun.speaksForTheJob { printWarnings(plan.warningLines) }
        let invalid = plan.trials.filter { $0.error != nil }
        let count = plan.trials.count
        if dryRun {
            let method = plan.sweep.method == .grid ? "grid" : "random, seed \(plan.sweep.seed)"
            print("sweep \(plan.name): \(count) trial\(count == 1 ? "" : "s") (\(method) over \(plan.sweep.parameters.map(\.keyPath).joined(separator: ", "))) → \(plan.directory)")
            for t in plan.trials {
                if let e = t.errorText {
                    print("trial \(t.number)/\(count)  \(t.label)  INVALID: \(e)")
                } else {
                    print("trial \(t.number)/\(count)  \(t.label)  → \(t.layout!.directory)\(t.isComplete ? "  (complete: would be skipped)" : "")")
                }
            }
        }
        if !invalid.isEmpty && !skipInvalid {
            let first = invalid[0]
            fail("trial \(first.number)/\(count) (\(first.label)) is invalid: \(first.errorText!)",
                 hint: "\(invalid.count) of \(count) trials invalid (trial \(invalid.map { String($0.number) }.joined(separator: ", "))); nothing ran. Change the swept values, or pass --skip-invalid to run the valid trials")
            throw ExitCode(2)
        }
        if dryRun { return }
        // What validates but does not run yet stops the sweep before its first trial.
        for t in plan.trials { if let spec = t.spec { try SupportGate.checkRunnable(spec) } }
        guard invalid.count < count else { throw CLIError(message: "every trial is invalid; nothing to run", exitCode: 2) }
        let options = SweepOptions(jobs: jobs, quiet: quiet, failFast: failFast, noCache: noCache)
        let outcome: SweepOutcome
        if let launch = try plan.trials.compactMap(\.spec).first.flatMap({ try MPIRun.launch(for: $0) }) {
            // Under mpirun/srun: the trials are dealt over the ranks; rank 0 reports.
            if !quiet && MPIRun.speaksForTheJob {
                print("sweep \(plan.name): \(count) trials over the ranks of \(launch.launcher)\(invalid.isEmpty ? "" : " (\(invalid.count) invalid, skipped)") → \(plan.directory)")
            }
            guard let ranZero = try MPISweep.run(plan, options: options, say: { print($0) }) else { return }
            outcome = ranZero
        } else {
            if !quiet {
                print("sweep \(plan.name): \(count) trials, \(jobs) at a time\(invalid.isEmpty ? "" : " (\(invalid.count) invalid, skipped)") → \(plan.directory)")
            }
            outcome = try SweepRunner.run(plan, options: options) { print($0) }
        }
        if let report = try? MoEReport.Report(directory: plan.directory, sort: nil) {
            if !quiet { print(report.shownTable.text()) }
            if !quiet, let groups = report.groups { print("\n" + groups.heading + "\n" + groups.table.text()) }
            _ = try? report.writeGroups()
        }
        if let message = outcome.message {
            throw CLIError(message: message, exitCode: outcome.exitCode)
        }
        print(plan.directory)
    }

    /// Prints `moe-run: error: MESSAGE` and `hint: HINT` on stderr (the contract's format).
    private func fail(_ message: String, hint: String) {
        FileHandle.standardError.write(Data("moe-run: error: \(message)\nhint: \(hint)\n".utf8))
    }
}

/// `moe-run report`: the compare table of a sweep or run, and SVG plots with an index.html.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Compare table and SVG plots (loss curves, router load, fusion barrier, metric vs swept value) of a sweep or run directory.",
        discussion: """
        Writes DIR/report/*.svg and DIR/report/index.html; prints the table (for a sweep only the columns that vary). \
        A sweep's trials that differ only in seed (or *.seed) are grouped: n, mean ± sd and the 95 % confidence \
        interval of the mean (Student t) per metric, printed after the trial table and written to DIR/summary-groups.csv; \
        the metric-vs-key plots show the means with the intervals as error bars.
        """)

    @Argument(help: "A sweep directory (holding summary.csv) or a run directory (holding run.h5).") var directory: String
    @Option(help: "Sort the rows by this column (accuracy descending, anything else ascending).") var sort: String?
    @Option(name: .customLong("group-by"), help: ArgumentHelp("Group a sweep's trials by these swept keys (repeatable or comma-separated) and pool every other swept key (default: pool seed and *.seed).", valueName: "KEY"))
    var groupBy: [String] = []
    @Flag(help: "Print the tables only; write no plots (a sweep's summary-groups.csv is still written).") var noPlots = false

    func run() throws {
        var report: MoEReport.Report
        let keys = groupBy.flatMap { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
        do {
            report = try MoEReport.Report(directory: directory, sort: sort, groupBy: keys.isEmpty ? nil : keys)
        } catch let error as ReportError {
            throw CLIError(message: error.description, exitCode: error.exitCode)
        }
        print(report.shownTable.text())
        if let groups = report.groups { print("\n" + groups.heading + "\n" + groups.table.text()) }
        let index: String
        do {
            _ = try report.writeGroups()
            if noPlots { return }
            index = try report.write()
        } catch let error as ReportError {
            throw CLIError(message: error.description, exitCode: error.exitCode)
        }
        print("\(report.plots.count) plot\(report.plots.count == 1 ? "" : "s") in \(report.reportDirectory)")
        print(index)
    }
}
