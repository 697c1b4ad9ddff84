import ArgumentParser
import Foundation
import MoEHDF5
import MoERuntime
import MoESpec

/// `moe-run`: declarative Mixture-of-Experts experiments (ARCHITECTURE §5.1).
struct MoeRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe-run",
        abstract: "Run Mixture-of-Experts experiments declared in YAML; results go to HDF5.",
        discussion: "Exit codes: 0 success, 1 the run failed, 2 bad usage or bad spec (nothing written), 130 interrupted (resumable).",
        version: "0.1.0",
        subcommands: [Run.self, Validate.self, PlanCommand.self, Show.self, Eval.self, SampleCommand.self, SweepCommand.self, ReportCommand.self, ListCommand.self, WorkerCommand.self],
        defaultSubcommand: Run.self)

    /// Runs the command; every error ends as one `moe-run: error: …` line (plus a hint line where
    /// there is one) and the contract's exit code, never a stack trace.
    static func main() {
        // Lines reach a pipe as they are printed (progress of runs and sweeps read by scripts).
        setvbuf(stdout, nil, _IOLBF, 0)
        let arguments = Array(CommandLine.arguments.dropFirst())
        // The scheduler's own form of `moe-run worker` skips the argument parser (its type lookups
        // cost ~2 ms of each worker's start, and a sweep starts dozens of workers).
        if let worker = Worker.parse(arguments) {
            Foundation.exit(execute { try WorkerCommand.perform(runDir: worker.runDirectory, task: worker.taskID) })
        }
        if let message = unknownCommand(arguments) {
            FileHandle.standardError.write(Data(("moe-run: error: " + message + "\n").utf8))
            Foundation.exit(2)
        }
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            if exitCode(for: error) == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data(("moe-run: error: " + message(for: error) + "\n").utf8))
            Foundation.exit(2)
        }
        Foundation.exit(execute { try command.run() })
    }

    /// Runs `body` and maps what it throws to the contract's exit code and error line.
    static func execute(_ body: () throws -> Void) -> Int32 {
        let code: Int32
        do {
            try body()
            code = 0
        } catch let error as SpecError {
            code = report(error.description, hint: error.hint, exitCode: 2)
        } catch let error as RuntimeError {
            code = report(error.description, hint: nil, exitCode: error.exitCode)
        } catch let error as CLIError {
            code = report(error.message, hint: nil, exitCode: error.exitCode)
        } catch let error as ExitCode {
            code = error.rawValue
        } catch {
            // `--help` and `--version` arrive here as the parser's own errors (a help command's run
            // throws them); usage errors map to 2, anything else is a failed command.
            switch exitCode(for: error) {
            case .success:
                print(fullMessage(for: error))
                code = 0
            case .validationFailure:
                code = report(message(for: error), hint: nil, exitCode: 2)
            default:
                code = report("\(error)", hint: nil, exitCode: 1)
            }
        }
        return code
    }

    /// `run` is the default command, so a first argument that is no subcommand is a spec path; a
    /// word that is not a file, looks like no path and is close to a command name is a typo:
    /// `unknown command 'vaildate'; did you mean 'validate'?` (else nil: the parser goes on).
    static func unknownCommand(_ arguments: [String]) -> String? {
        guard let word = arguments.first, !word.hasPrefix("-"), !word.contains("/"), !word.contains("."),
              !FileManager.default.fileExists(atPath: word) else { return nil }
        let names = configuration.subcommands.filter { $0.configuration.shouldDisplay }.map { $0._commandName }
        guard !names.contains(word), let suggestion = Suggestions.closest(to: word, in: names) else { return nil }
        return "unknown command '\(word)'; did you mean '\(suggestion)'?"
    }

    private static func report(_ message: String, hint: String?, exitCode: Int32) -> Int32 {
        // Under mpirun only rank 0 speaks: the other ranks meet the same spec errors.
        guard MPIRun.speaksForTheJob else { return exitCode }
        var text = "moe-run: error: \(message)\n"
        if let hint { text += "hint: \(hint)\n" }
        FileHandle.standardError.write(Data(text.utf8))
        return exitCode
    }
}

/// A failure of a command itself (bad file given to `show` or `eval`, …).
struct CLIError: Error {
    var message: String
    var exitCode: Int32 = 1
}

/// Options shared by the commands that read a spec.
struct SpecOptions: ParsableArguments {
    @Argument(help: "The experiment spec (YAML).")
    var spec: String

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a spec value before validation, e.g. --set router.k=2 (repeatable); null on a key that cannot be null removes it.", valueName: "KEY=VALUE"))
    var overrides: [String] = []

    @Option(name: .customLong("unset"), help: ArgumentHelp("Remove a key or section before validation (its default applies), e.g. --unset router (repeatable; applied before --set).", valueName: "KEY"))
    var unset: [String] = []

    /// The overrides as the spec loader takes them: removals as `~KEY`, then the `--set`s.
    var allOverrides: [String] { unset.map { "~" + $0 } + overrides }

    /// Loads the spec (a run's: a `sweep` section is refused) and prints its warnings.
    func load(extra: [String] = []) throws -> LoadedSpec {
        let loaded = try SpecLoader.loadWithWarnings(path: spec, overrides: allOverrides + extra)
        if MPIRun.speaksForTheJob { printWarnings(loaded.warnings.map(\.description)) }
        return loaded
    }
}

/// `moe-run: warning: LINE` on stderr for each line (printed once, by the command that loaded the spec).
func printWarnings(_ lines: [String]) {
    for line in lines { FileHandle.standardError.write(Data("moe-run: warning: \(line)\n".utf8)) }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run an experiment (the default command).")

    @OptionGroup var specOptions: SpecOptions
    @Option(help: "Root folder for results (default: the spec's output.dir).") var out: String?
    @Option(help: "Worker processes (sets parallelism.workers).") var workers: Int?
    @Flag(help: "Continue an unfinished run, or reuse a complete one.") var resume = false
    @Flag(help: "Delete an existing run of this spec and start over.") var force = false
    @Flag(help: "Print only the final line.") var quiet = false
    @Flag(help: "Run every task; reuse none from other runs of the same results folder (the task cache).") var noCache = false

    func run() throws {
        if resume && force { throw CLIError(message: "--resume and --force exclude each other", exitCode: 2) }
        let loaded = try pointingAtWorkersFlag { try specOptions.load(extra: workers.map { ["parallelism.workers=\($0)"] } ?? []) }
        let specDirectory = (specOptions.spec as NSString).deletingLastPathComponent
        let options = RunOptions(outputRoot: out, resume: resume, force: force, quiet: quiet,
                                 specDirectory: specDirectory.isEmpty ? "." : specDirectory,
                                 warnings: loaded.warnings.map(\.description), noCache: noCache)
        let layout: RunLayout
        if try MPIRun.launch(for: loaded.spec) != nil {
            // Under mpirun/srun: rank 0 runs and reports; the other ranks serve it, then end quietly.
            guard let ranZero = try pointingAtWorkersFlag({ try MPIRun.run(loaded.spec, options: options) }) else { return }
            layout = ranZero
        } else {
            layout = try pointingAtWorkersFlag { try Runner.run(loaded.spec, options: options) }
        }
        if !quiet { print(try RunSummary(path: layout.directory).text()) }
        print(layout.directory)
    }
}

extension Run {
    /// `--workers N` reaches the spec as an override the user did not type: an error about it
    /// names the flag (`--workers: parallelism.workers: …`), not a position inside `--set`.
    func pointingAtWorkersFlag<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch var error as SpecError where workers != nil && error.file == "--set" && error.keyPath == "parallelism.workers" {
            (error.file, error.line, error.column) = ("--workers", 0, 0)
            throw error
        }
    }
}

/// `moe-run worker`: runs one task of a run for the scheduler (hidden). Exit 0 done; 1 the task
/// failed and may be retried; `Failure.permanentExitStatus` (3) it failed permanently (a full
/// disk, a bad data file, divergence…: the scheduler never retries it); 130 interrupted with its
/// state saved. A failure prints one `moe-run: error:` line on stderr that starts with the task
/// id (`Failure.message`), which the scheduler folds into its own message.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "worker", abstract: "Run one task of a run (used by the scheduler).",
                                                    shouldDisplay: false)
    @Option(help: "The run directory (holding run.h5).") var runDir: String
    @Option(help: "The task id.") var task: String

    func run() throws { try Self.perform(runDir: runDir, task: task) }

    static func perform(runDir: String, task: String) throws {
        do {
            try Worker.run(runDirectory: runDir, taskID: task)
        } catch let error as RuntimeError where error.exitCode == 130 {
            throw error
        } catch {
            let permanent = Failure.isPermanent(error)
            throw CLIError(message: permanent ? Failure.message(for: error, task: task) : "\(error)",
                           exitCode: permanent ? Failure.permanentExitStatus : 1)
        }
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a spec and the files it names; exit 0 if valid, 2 if not. Writes nothing.",
        discussion: "Keys without effect as configured are warnings (stderr). A spec with a sweep section lists every trial, each validated in full.")
    @OptionGroup var specOptions: SpecOptions
    @Flag(help: "Keys without effect as configured are errors, not warnings.") var strict = false

    func run() throws {
        let validation = try SpecValidation.validate(specPath: specOptions.spec, overrides: specOptions.allOverrides, strict: strict)
        printWarnings(validation.warningLines)
        print(validation.text())
        if let error = validation.trialError { throw error }
    }
}

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Print the task DAG of a spec (of every trial of a sweep). Writes nothing.")
    @OptionGroup var specOptions: SpecOptions
    @Flag(help: "Print the plan as JSON.") var json = false

    func run() throws {
        // The same checks as a run (pre-flight included): a plan is only shown for a spec that can run.
        let validation = try SpecValidation.validate(specPath: specOptions.spec, overrides: specOptions.allOverrides)
        printWarnings(validation.warningLines)
        print(validation.planText(json: json))
        if let error = validation.trialError { throw error }
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Summarise a run directory or any moe-run HDF5 file.")
    @Argument(help: "A run directory, run.h5, a task file or a data file.") var path: String

    func run() throws { print(try RunSummary(path: path).text()) }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Loss and accuracy of a checkpoint on a data file.")
    @Argument(help: "A run directory, a file holding a model (run.h5, tasks/train.h5, a checkpoint file), or FILE.h5:/checkpoints/STEP/model.") var checkpoint: String
    @Argument(help: "An HDF5 (x, y) or CSV data file; for a transformer LM, a text corpus (folder, corpus HDF5, or tasks/data.h5).") var data: String
    @Option(help: "Batch size.") var batchSize = 1024

    func run() throws {
        guard batchSize >= 1 else { throw CLIError(message: "--batch-size: expected an integer >= 1, got \(batchSize)", exitCode: 2) }
        if let text = try Evaluation.evaluateText(checkpoint: checkpoint, data: data, batchSize: batchSize) {
            for p in text.parts {
                print("\(data): \(p.name): \(p.tokens) tokens, loss " + String(format: "%.6f, accuracy %.4f, bits per byte %.4f", p.loss, p.accuracy, p.bitsPerByte))
            }
            return
        }
        let r = try Evaluation.evaluate(checkpoint: checkpoint, data: data, batchSize: batchSize)
        print("\(data): \(r.count) samples, loss " + String(format: "%.6f, accuracy %.4f", r.loss, r.accuracy))
    }
}

import MoEPlan
