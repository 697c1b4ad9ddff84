import Foundation
import MoERuntime
import MoESpec
import XCTest

/// The spec fuzzer (issue 11, item 8): seeded random mutations of every shipped experiment
/// (`SpecMutator`) go through `SpecValidation.validate`, the one function `moe-run validate`
/// and `moe-run plan` call. The only outcomes allowed: the spec is valid (and its listing and
/// plan can be printed), or a `SpecError` located in the file, `FILE:LINE:COL: ...` on one line;
/// the same for every warning and every invalid sweep trial. No crash, no hang, under 1 s a case.
///
/// A failing case prints its seed and the mutated spec; rerun it alone with
/// `MOE_RUN_FUZZ_SEED=<seed> MOE_RUN_FUZZ_SPEC=<experiment>.yaml`. A crash or a hang (a case
/// running over `hangSeconds`) prints the same before the process dies. `MOE_RUN_FUZZ_CASES`
/// changes the number of cases per experiment.
final class SpecFuzzTests: XCTestCase {
    static let baseSeed: UInt64 = 20_261_204
    /// At least this many cases in all, the same number for every shipped experiment.
    static let minimumCases = 5000
    /// Cases per shipped experiment (`MOE_RUN_FUZZ_CASES` overrides).
    static func casesPerExperiment(_ experiments: Int) -> Int {
        Int(ProcessInfo.processInfo.environment["MOE_RUN_FUZZ_CASES"] ?? "") ?? (minimumCases + experiments - 1) / experiments
    }
    /// Cases of the in-process fuzzer that are also run through the built binary.
    static let binaryCases = 30
    static let hangSeconds = 30.0

    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// The shipped experiments (mlp and transformer, lm-moe a transformer MoE on the shipped text
    /// corpus with `train.steps`), by file name, with their text.
    static func experiments() throws -> [(name: String, text: String)] {
        let dir = repository.appendingPathComponent("experiments")
        return try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }.sorted().map {
            ($0, try String(contentsOf: dir.appendingPathComponent($0), encoding: .utf8))
        }
    }

    /// A scratch directory whose `data` links to `experiments/data`, so relative data paths of
    /// the experiments resolve as in the repository.
    static func workspace() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-run-fuzz-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir + "/data",
                                                   withDestinationPath: repository.appendingPathComponent("experiments/data").path)
        return dir
    }

    /// The seed of case `index` of experiment `experiment` (its position in the sorted list).
    static func seed(experiment: Int, index: Int) -> UInt64 { baseSeed &+ UInt64(experiment) &* 1_000_003 &+ UInt64(index) }

    func testMutatedExperimentsAreValidOrLocatedErrors() throws {
        let experiments = try Self.experiments()
        XCTAssertGreaterThanOrEqual(experiments.count, 20)
        let dir = try Self.workspace()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let environment = ProcessInfo.processInfo.environment
        var cases: [(experiment: Int, seed: UInt64)] = []
        if let only = environment["MOE_RUN_FUZZ_SEED"].flatMap(UInt64.init) {
            let e = try XCTUnwrap(experiments.firstIndex { $0.name == environment["MOE_RUN_FUZZ_SPEC"] }, "set MOE_RUN_FUZZ_SPEC too")
            cases = [(e, only)]
        } else {
            for e in experiments.indices {
                cases += (0..<Self.casesPerExperiment(experiments.count)).map { (e, Self.seed(experiment: e, index: $0)) }
            }
        }
        let watch = FuzzWatch(hangSeconds: Self.hangSeconds)
        defer { watch.stop() }
        var slowest = (seconds: 0.0, seed: UInt64(0), name: "")
        var outcomes: [String: Int] = [:]
        var failures = 0
        for (e, seed) in cases {
            let (name, text) = experiments[e]
            var rng = FuzzRNG(seed: seed)
            // A quarter of the cases: the experiment intact or mutated, with edge-value overrides.
            let overrides = rng.chance(0.25) ? SpecMutator.overrides(rng: &rng) : []
            let mutated = overrides.isEmpty || rng.chance(0.5) ? SpecMutator.mutate(text, rng: &rng) : Data(text.utf8)
            let path = dir + "/" + name
            try mutated.write(to: URL(fileURLWithPath: path))
            let context = Self.describe(seed: seed, name: name, spec: mutated, overrides: overrides)
            watch.begin(context)
            let start = Date()
            let result = Self.check(path: path, overrides: overrides, strict: rng.chance(0.25))
            let seconds = Date().timeIntervalSince(start)
            watch.end()
            if seconds > slowest.seconds { slowest = (seconds, seed, name) }
            switch result {
            case .success(let outcome): outcomes[outcome, default: 0] += 1
            case .failure(let problem):
                failures += 1
                if failures <= 5 { XCTFail(problem.text + "\n" + context) }
            }
        }
        XCTAssertEqual(failures, 0, "\(failures) of \(cases.count) cases failed")
        if environment["MOE_RUN_FUZZ_SEED"] == nil && environment["MOE_RUN_FUZZ_CASES"] == nil {
            XCTAssertGreaterThanOrEqual(cases.count, Self.minimumCases)
        }
        XCTAssertLessThan(slowest.seconds, 1, "the slowest case: MOE_RUN_FUZZ_SEED=\(slowest.seed) MOE_RUN_FUZZ_SPEC=\(slowest.name)")
        print("spec fuzzer: \(cases.count) cases over \(experiments.count) experiments: \(outcomes.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")); slowest \(String(format: "%.3f", slowest.seconds)) s")
        if cases.count > 1 {
            // The mutations reach past the YAML layer: valid specs and located errors both occur.
            XCTAssertGreaterThan(outcomes["valid", default: 0], 0)
            XCTAssertGreaterThan(outcomes["error", default: 0], cases.count / 2)
        }
    }

    /// The first cases again through the built `moe-run validate`: exit 0 with `FILE: valid`, or
    /// exit 2 with the in-process error as the one `moe-run: error:` line; nothing else.
    func testMutatedExperimentsThroughTheBinary() throws {
        let binary = Bundle.main.bundleURL.appendingPathComponent("moe-run").path
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw XCTSkip("no moe-run next to the tests at \(binary)") }
        let experiments = try Self.experiments()
        let dir = try Self.workspace()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var codes: [Int32: Int] = [:]
        for i in 0..<Self.binaryCases {
            let e = i % experiments.count
            let seed = Self.seed(experiment: e, index: i / experiments.count)
            let (name, text) = experiments[e]
            var rng = FuzzRNG(seed: seed)
            let mutated = SpecMutator.mutate(text, rng: &rng)
            try mutated.write(to: URL(fileURLWithPath: dir + "/" + name))
            let context = Self.describe(seed: seed, name: name, spec: mutated)
            let r = try Self.runBinary(binary, ["validate", name], in: dir)
            codes[r.status, default: 0] += 1
            let expected = Self.check(path: name, overrides: [], strict: false, in: dir)
            switch (r.status, expected) {
            case (0, .success("valid")), (0, .success("sweep")):
                XCTAssertTrue(r.stdout.hasPrefix("\(name): valid ("), r.stdout + context)
            case (2, .success("error")):
                let first = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
                XCTAssertTrue(first.range(of: "^moe-run: error: \(NSRegularExpression.escapedPattern(for: name)):[0-9]+:[0-9]+: ",
                                          options: .regularExpression) != nil, r.stderr + context)
                XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Stack dump"), r.stderr + context)
            default:
                XCTFail("exit \(r.status) (stdout \(r.stdout), stderr \(r.stderr)); in-process \(expected)\n" + context)
            }
        }
        XCTAssertGreaterThan(codes[0, default: 0], 0, "some mutated specs stay valid: \(codes)")
        XCTAssertGreaterThan(codes[2, default: 0], 0, "\(codes)")
    }

    struct Problem: Error { let text: String }

    /// "valid", "sweep" (valid, with trials) or "error" (a located SpecError), or the problem.
    static func check(path: String, overrides: [String], strict: Bool, in directory: String? = nil) -> Result<String, Problem> {
        let previous = FileManager.default.currentDirectoryPath
        if let directory { FileManager.default.changeCurrentDirectoryPath(directory) }
        defer { if directory != nil { FileManager.default.changeCurrentDirectoryPath(previous) } }
        do {
            let v = try SpecValidation.validate(specPath: path, overrides: overrides, strict: strict)
            _ = v.text()
            for line in v.warningLines { if let p = located(line, path) { return .failure(Problem(text: "warning: " + p)) } }
            if let e = v.trialError {
                if let p = located(e.description, path) { return .failure(Problem(text: "invalid trial: " + p)) }
                return .success("error")
            }
            _ = v.planText(json: false)
            _ = v.planText(json: true)
            return .success(v.sweep == nil ? "valid" : "sweep")
        } catch let error as SpecError {
            if let p = located(error.description, path) { return .failure(Problem(text: "error: " + p)) }
            return .success("error")
        } catch {
            return .failure(Problem(text: "threw \(type(of: error)), not a SpecError: \(error)"))
        }
    }

    /// nil when `line` is `PATH:LINE:COL: ...` (or in an override, `--set:1:COL: ...`) on one
    /// line, else what is wrong with it.
    static func located(_ line: String, _ path: String) -> String? {
        if line.contains("\n") || line.contains("\r") { return "more than one line: \(line.debugDescription)" }
        let pattern = "^(" + NSRegularExpression.escapedPattern(for: path) + "|--set|--unset):[1-9][0-9]*:[1-9][0-9]*: "
        return line.range(of: pattern, options: .regularExpression) == nil ? "not located at FILE:LINE:COL: \(line)" : nil
    }

    /// How to reproduce a case, with the mutated spec (non-printable bytes escaped).
    static func describe(seed: UInt64, name: String, spec: Data, overrides: [String] = []) -> String {
        var text = ""
        for scalar in String(decoding: spec, as: UTF8.self).unicodeScalars {
            switch scalar {
            case "\n": text += "\n"
            case "\\": text += "\\\\"
            case _ where scalar.value >= 0x20 && scalar.value < 0x7F: text.unicodeScalars.append(scalar)
            default: text += "\\u{\(String(scalar.value, radix: 16))}"
            }
        }
        let sets = overrides.isEmpty ? "" : "overrides: " + overrides.map { $0.hasPrefix("~") ? "--unset \($0.dropFirst())" : "--set '\($0)'" }.joined(separator: " ") + "\n"
        return "spec fuzzer case: MOE_RUN_FUZZ_SEED=\(seed) MOE_RUN_FUZZ_SPEC=\(name)\n\(sets)--- mutated spec (\(spec.count) bytes, \\u{...} escaped) ---\n\(text)\n--- end ---\n"
    }

    static func runBinary(_ binary: String, _ args: [String], in directory: String) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: directory)
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let timer = DispatchWorkItem { if p.isRunning { p.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + hangSeconds, execute: timer)
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        timer.cancel()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}

/// Reports the running case if it crashes the process (a signal handler writes it to stderr) or
/// runs longer than `hangSeconds` (a watchdog thread writes it and aborts).
final class FuzzWatch: @unchecked Sendable {
    private let lock = NSLock()
    private var started: Date?
    private var running = true
    private var previous: [(Int32, (@convention(c) (Int32) -> Void)?)] = []
    static let signals = [SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGABRT, SIGFPE]

    init(hangSeconds: Double) {
        for s in Self.signals {
            previous.append((s, signal(s) { s in
                _ = write(2, fuzzCaseText, strlen(fuzzCaseText))
                signal(s, SIG_DFL)
                raise(s)
            }))
        }
        let thread = Thread { [self] in
            while true {
                sleep(1)
                lock.lock()
                let (start, alive) = (started, running)
                lock.unlock()
                if !alive { return }
                if let start, Date().timeIntervalSince(start) > hangSeconds {
                    _ = write(2, fuzzCaseText, strlen(fuzzCaseText))
                    fatalError("spec fuzzer: a case ran over \(hangSeconds) s (above)")
                }
            }
        }
        thread.start()
    }

    func begin(_ description: String) {
        let bytes = Array(("\n*** " + description).utf8.prefix(fuzzCaseCapacity - 1))
        bytes.withUnsafeBufferPointer { fuzzCaseText.update(from: UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), count: bytes.count) }
        fuzzCaseText[bytes.count] = 0
        lock.lock(); started = Date(); lock.unlock()
    }

    func end() { lock.lock(); started = nil; lock.unlock() }

    func stop() {
        lock.lock(); running = false; lock.unlock()
        for (s, handler) in previous { signal(s, handler) }
        fuzzCaseText[0] = 0
    }
}

private let fuzzCaseCapacity = 1 << 20
/// The running case's description, NUL-terminated, for the signal handler (which may not allocate).
nonisolated(unsafe) private let fuzzCaseText: UnsafeMutablePointer<CChar> = {
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: fuzzCaseCapacity)
    p[0] = 0
    return p
}()
