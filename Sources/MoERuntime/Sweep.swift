import Foundation
import MoECore
import MoESpec

/// One trial of a sweep: the base spec with `overrides` (one value per swept key), as the run
/// `moe-run SPEC --set sweep= --set KEY=VALUE…` would run it.
public struct SweepTrial: Sendable {
    /// 1-based, in the order the sweep lists the trials.
    public let number: Int
    /// (key path, value) per swept key, in the order of the sweep's parameters.
    public let overrides: [(key: String, value: SpecValue)]
    /// The trial's spec, validated in full; nil when `error` says why it is invalid.
    public let spec: ExperimentSpec?
    public let error: SpecError?
    /// The keys of the trial's spec that have no effect as configured (dropped from `spec`).
    public var warnings: [SpecError] = []
    /// The trial's run directory (`<out>/<name>/<run-id>`), when the spec is valid.
    public let layout: RunLayout?

    /// `router.k=2 experts=8`: how the trial is named in messages and plot legends.
    public var label: String { overrides.map { "\($0.key)=\($0.value.yamlText)" }.joined(separator: " ") }
    /// Whether the trial's run directory holds a complete run (a sweep skips it).
    public var isComplete: Bool { layout.flatMap { RunFile.readHeader($0) }?.status == "complete" }
    /// Why the trial is invalid, in one line: `router.k: must be between 1 and experts (4), got 8`.
    /// The trial's values reach its spec as `--set` arguments; an error about one of them points
    /// at the value in the spec's (or the user's `--set`) sweep section (`SweepPlan.relocate`), or,
    /// for a `--grid` value, has no location (the trial's label says which values it has).
    public var errorText: String? { error.map(Self.text) }

    /// A trial's error or warning in one line, without a location inside a generated `--set`
    /// (`SweepPlan.generated`).
    public static func text(_ e: SpecError) -> String {
        e.file == SweepPlan.generated ? "\(e.keyPath): \(e.message)" : e.description
    }

    /// The `--set` arguments of the trial (after the user's own and `sweep=`).
    public var setArguments: [String] { overrides.map { "\($0.key)=\($0.value.yamlText)" } }
}

/// A sweep expanded into its trials, each validated, and where its results go
/// (`<out>/<name>/sweep-<hash>/`).
public struct SweepPlan: Sendable {
    public let specPath: String
    /// The user's `--set` overrides, applied before each trial's own.
    public let userOverrides: [String]
    public let sweep: SweepSpec
    public let name: String
    public let outputRoot: String
    public let trials: [SweepTrial]
    /// 12 hex digits of the SHA-256 of the base spec's identity (`identityYAML`: without the
    /// sweep section, result-neutral keys and keys at their default) and the sweep definition:
    /// a rerun of the same sweep finds the same folder, also after moe-run gains new keys.
    public let hash: String
    public var directory: String { (outputRoot as NSString).appendingPathComponent(name) + "/sweep-" + hash }

    /// Loads the spec and builds the sweep: the spec's `sweep` section, whose parameters
    /// `grid` (`KEY=V1,V2` each) replace or extend; `random` = number of random trials (with
    /// `seed`) instead of the grid. Every trial is validated (`trials[i].error` when invalid).
    /// Throws a `SpecError` when the spec itself or a `--grid` is malformed, `RuntimeError.usage`
    /// when there is nothing to sweep.
    public static func make(specPath: String, overrides: [String], grid: [String], random: Int?, seed: Int?,
                            outputRoot: String?, strict: Bool = false) throws -> SweepPlan {
        let loaded = try SpecLoader.loadForSweep(path: specPath, overrides: overrides)
        var sweep = loaded.sweep ?? .emptyGrid
        for argument in grid {
            let parameter = try SweepSpec.Parameter(gridArgument: argument)
            if let i = sweep.parameters.firstIndex(where: { $0.keyPath == parameter.keyPath }) {
                sweep.parameters[i] = parameter
            } else {
                sweep.parameters.append(parameter)
            }
        }
        if let random {
            guard random >= 1 else { throw RuntimeError.usage("--random: expected a number of trials >= 1, got \(random)") }
            sweep.method = .random
            sweep.trials = random
        }
        if let seed {
            guard seed >= 0 else { throw RuntimeError.usage("--seed: expected an integer >= 0, got \(seed)") }
            sweep.seed = seed
        }
        guard sweep.trialCount <= SweepSpec.maxTrials else {
            throw RuntimeError.usage("the sweep has \(sweep.trialCount) trials; one sweep runs at most \(SweepSpec.maxTrials) (use --random N)")
        }
        guard !sweep.parameters.isEmpty else {
            throw RuntimeError.usage("\(specPath): nothing to sweep: the spec has no sweep section and no --grid was given (e.g. --grid router.k=1,2)")
        }
        let base = overrides + ["sweep="]
        let combinations = expand(sweep)
        let written = SpecLoader.sweepValueLocations(path: specPath, overrides: overrides)
        let fromFile = Set((loaded.sweep?.parameters ?? []).map(\.keyPath)).subtracting(grid.compactMap { $0.split(separator: "=").first.map(String.init) })
        let userKeys = overrides.map { String(($0.hasPrefix("~") ? $0.dropFirst() : Substring($0)).prefix { $0 != "=" }) }
        var trials: [SweepTrial] = []
        let preflight = Preflight.Cache()
        for (i, combination) in combinations.enumerated() {
            let pairs = zip(sweep.parameters, combination).map { (key: $0.keyPath, value: $1) }
            let sets = pairs.map { "\($0.key)=\($0.value.yamlText)" }
            do {
                let loadedTrial = try SpecLoader.loadWithWarnings(path: specPath, overrides: base + sets, strict: strict)
                try Preflight.check(loadedTrial.spec, cache: preflight)
                let layout = RunLayout.locate(spec: loadedTrial.spec, outputRoot: outputRoot ?? loadedTrial.spec.output.dir).layout
                let warnings = loadedTrial.warnings.map { relocate($0, sweep: sweep, values: combination, written: written, fromFile: fromFile, userKeys: userKeys) }
                trials.append(SweepTrial(number: i + 1, overrides: pairs, spec: loadedTrial.spec, error: nil, warnings: warnings, layout: layout))
            } catch let error as SpecError {
                let error = relocate(error, sweep: sweep, values: combination, written: written, fromFile: fromFile, userKeys: userKeys)
                trials.append(SweepTrial(number: i + 1, overrides: pairs, spec: nil, error: error, layout: nil))
            }
        }
        // The base spec as resolved (without the sweep); if only the trials' values make it valid,
        // the spec text and overrides stand in for it.
        var baseText: String
        if let spec = try? SpecLoader.load(path: specPath, overrides: base) {
            baseText = spec.identityYAML()
        } else {
            baseText = (try? String(contentsOfFile: specPath, encoding: .utf8)) ?? specPath
            baseText += "\n# --set " + overrides.joined(separator: " --set ")
        }
        let hash = String(SHA256.hex(baseText + "\n# sweep: " + sweep.yamlText).prefix(12))
        let root = outputRoot ?? trials.first(where: { $0.spec != nil })?.spec?.output.dir ?? loaded.output.dir
        return SweepPlan(specPath: specPath, userOverrides: overrides, sweep: sweep, name: loaded.name, outputRoot: root,
                         trials: trials, hash: hash)
    }

    /// The file of a trial's error or warning located in a value the user did not write as such
    /// (a `--grid` value, passed on as a generated `--set`): messages leave its location out.
    public static let generated = "--grid"

    /// A trial's error (or warning) located in one of its generated `--set` arguments, moved to
    /// where the spec's sweep section writes the value: the value of the swept key the error's
    /// key path is in, else of a swept key in the same section (whose `--set` created the
    /// section). Errors in the user's own overrides (`userKeys`) keep their `--set` location;
    /// the others (values from `--grid`, not in `fromFile`) are marked `generated`.
    static func relocate(_ error: SpecError, sweep: SweepSpec, values: [SpecValue], written: [String: [SourceLocation]],
                         fromFile: Set<String>, userKeys: [String]) -> SpecError {
        guard error.file == "--set" else { return error }
        let key = error.keyPath
        // An error in the user's own override stays there (the sweep section is not such a key).
        if userKeys.contains(where: { $0 != "sweep" && (key == $0 || key.hasPrefix($0 + ".") || key.hasPrefix($0 + "[")) }) { return error }
        func location(_ p: Int) -> SourceLocation? {
            let parameter = sweep.parameters[p]
            guard fromFile.contains(parameter.keyPath), let index = parameter.values.firstIndex(of: values[p]),
                  let locations = written[parameter.keyPath], index < locations.count else { return nil }
            return locations[index]
        }
        let keys = sweep.parameters.map(\.keyPath)
        let section = key.split(separator: ".").first.map(String.init) ?? key
        let candidates = keys.indices.filter { key == keys[$0] || key.hasPrefix(keys[$0] + ".") || key.hasPrefix(keys[$0] + "[") }
            + keys.indices.filter { keys[$0].split(separator: ".").first.map(String.init) == section }
        guard let found = candidates.lazy.compactMap(location).first else {
            var generated = error
            generated.file = Self.generated
            return generated
        }
        var moved = error
        moved.file = found.file
        moved.line = found.line
        moved.column = found.column
        return moved
    }

    /// The value combinations of `sweep`, one array (a value per parameter) per trial.
    /// grid: the Cartesian product, the last parameter varying fastest (the order the parameters
    /// are listed). random: `trials` distinct combinations drawn uniformly without replacement
    /// from the grid by `MoECore.RNG(seed: sweep.seed, purpose: "sweep")` (all of them, in drawn
    /// order, when `trials` exceeds the grid).
    public static func expand(_ sweep: SweepSpec) -> [[SpecValue]] {
        let sizes = sweep.parameters.map(\.values.count)
        let total = sizes.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        func combination(_ index: Int) -> [SpecValue] {
            var rest = index
            var values = [SpecValue](repeating: .null, count: sizes.count)
            for p in stride(from: sizes.count - 1, through: 0, by: -1) {
                values[p] = sweep.parameters[p].values[rest % sizes[p]]
                rest /= sizes[p]
            }
            return values
        }
        switch sweep.method {
        case .grid:
            return (0..<total).map(combination)
        case .random:
            var rng = RNG(seed: UInt64(sweep.seed), purpose: "sweep")
            let wanted = min(sweep.trials ?? 1, total)
            if total <= 1_000_000 {
                return rng.permutation(total).prefix(wanted).map(combination)
            }
            var seen = Set<[Int]>(), out: [[SpecValue]] = []
            while out.count < wanted {
                let picks = sizes.map { rng.int(below: $0) }
                if seen.insert(picks).inserted { out.append(zip(sweep.parameters, picks).map { $0.values[$1] }) }
            }
            return out
        }
    }
}
