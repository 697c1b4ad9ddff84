import Foundation
import MoEPlan
import MoESpec

/// What `moe-run validate` and `moe-run plan` know about a spec, from one entry point (the spec
/// fuzzer of the test suite calls `validate` in-process, so what it proves holds for the command):
/// the spec with its overrides, the keys that have no effect as configured (warnings; with
/// `strict`, the first one is the error), the pre-flight checks of the files it names
/// (`Preflight`), and for a spec with a `sweep` section every trial, each validated in full as
/// `moe-run sweep` would run it (pre-flight included). Writes nothing.
public struct SpecValidation: Sendable {
    public let specPath: String
    /// The spec; for a sweep, its base (with the `sweep` section).
    public let spec: ExperimentSpec
    /// The spec's keys without effect; a sweep's are its trials' (`sweep.warningLines`).
    public let warnings: [SpecError]
    /// The trials, when the spec has a `sweep` section.
    public let sweep: SweepPlan?

    /// Throws the spec's `SpecError` (`RuntimeError.usage` only for what the sweep expansion
    /// refuses); an invalid trial is reported by `trialError`, after the listing.
    public static func validate(specPath: String, overrides: [String], strict: Bool = false) throws -> SpecValidation {
        let loaded = try SpecLoader.loadWithWarnings(path: specPath, overrides: overrides, strict: strict, allowSweep: true)
        guard loaded.spec.sweep != nil else {
            try Preflight.check(loaded.spec)
            return SpecValidation(specPath: specPath, spec: loaded.spec, warnings: loaded.warnings, sweep: nil)
        }
        let plan = try SweepPlan.make(specPath: specPath, overrides: overrides, grid: [], random: nil, seed: nil,
                                      outputRoot: nil, strict: strict)
        return SpecValidation(specPath: specPath, spec: loaded.spec, warnings: [], sweep: plan)
    }

    /// The first invalid trial's error, with a hint naming the trial and how many are invalid.
    public var trialError: SpecError? {
        guard let plan = sweep, let first = plan.trials.first(where: { $0.error != nil }), var error = first.error else { return nil }
        let invalid = plan.trials.filter { $0.error != nil }.map { String($0.number) }
        error.hint = "trial \(first.number)/\(plan.trials.count) (\(first.label)); \(invalid.count) of \(plan.trials.count) trials invalid (trial \(invalid.joined(separator: ", ")))"
            + (first.error?.hint.map { "; " + $0 } ?? "")
        return error
    }

    /// Every warning line once (`FILE:LINE:COL: KEY: message`); for a sweep, a warning of only
    /// some trials names them.
    public var warningLines: [String] { sweep?.warningLines ?? warnings.map(\.description) }

    /// What `validate` prints: `SPEC: valid (NAME)`, or for a sweep a header and one line per trial.
    public func text() -> String {
        guard let plan = sweep else { return "\(specPath): valid (\(spec.name))" }
        let count = plan.trials.count
        let invalid = plan.trials.filter { $0.error != nil }.count
        let method = plan.sweep.method == .grid ? "grid" : "random, seed \(plan.sweep.seed)"
        let over = "\(method) over \(plan.sweep.parameters.map(\.keyPath).joined(separator: ", "))"
        var lines = [invalid == 0 ? "\(specPath): valid (\(spec.name)): a sweep of \(count) trial\(count == 1 ? "" : "s") (\(over))"
                                  : "\(specPath): \(spec.name): a sweep of \(count) trials (\(over)), \(invalid) invalid"]
        for t in plan.trials {
            if let e = t.errorText {
                lines.append("  trial \(t.number)/\(count)  \(t.label)  INVALID: \(e)")
            } else {
                let notes = t.warnings.isEmpty ? "" : "  (\(t.warnings.count) warning\(t.warnings.count == 1 ? "" : "s"))"
                lines.append("  trial \(t.number)/\(count)  \(t.label)  valid\(notes)")
            }
        }
        return lines.joined(separator: "\n")
    }

    /// What `plan` prints: the task DAG, or for a sweep each valid trial's.
    public func planText(json: Bool) -> String {
        guard let plan = sweep else {
            let p = Planner.plan(spec)
            return json ? p.json() : p.text()
        }
        let count = plan.trials.count
        if json {
            let items = plan.trials.compactMap { t -> String? in
                guard let spec = t.spec else { return nil }
                let sets = String(decoding: try! JSONSerialization.data(withJSONObject: t.setArguments), as: UTF8.self)
                return "{\"trial\": \(t.number), \"set\": \(sets), \"plan\": \(Planner.plan(spec).json())}"
            }
            return "[" + items.joined(separator: ",\n") + "]"
        }
        return plan.trials.map { t in
            guard let spec = t.spec else { return "trial \(t.number)/\(count)  \(t.label)  INVALID: \(t.errorText ?? "")" }
            return "trial \(t.number)/\(count)  \(t.label)\n" + Planner.plan(spec).text()
        }.joined(separator: "\n\n")
    }
}

extension SweepPlan {
    /// Every distinct warning of the trials once (`FILE:LINE:COL: KEY: message`, a location in a
    /// generated `--set` left out), followed by the trials it concerns unless it is every trial:
    /// a sweep shows each warning once, not once per trial.
    public var warningLines: [String] {
        var order: [String] = []
        var trialsOf: [String: [Int]] = [:]
        let valid = trials.filter { $0.error == nil }
        for t in valid {
            for w in t.warnings {
                let line = SweepTrial.text(w)
                if trialsOf[line] == nil { order.append(line) }
                if trialsOf[line]?.last != t.number { trialsOf[line, default: []].append(t.number) }
            }
        }
        return order.map { line in
            let numbers = trialsOf[line] ?? []
            if numbers.count == valid.count && valid.count > 1 { return line + " (every trial)" }
            guard valid.count > 1 else { return line }
            return line + " (trial\(numbers.count == 1 ? "" : "s") \(numbers.map(String.init).joined(separator: ", ")))"
        }
    }
}
