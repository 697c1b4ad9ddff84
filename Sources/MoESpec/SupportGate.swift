/// What this version of moe-run can run, in one table.
///
/// Every section of the schema parses and validates already; behaviour that later issues build
/// is refused here, after validation, with an error naming the key. An issue that builds a
/// feature deletes (or narrows) its entry. Entries are checked in order and the first refusal
/// is reported, so the features of the latest issues come first.
///
/// Runs today: training of a dense model (`experts: 1`, `split.strategy: none`)
/// or of a Mixture-of-Experts model trained from scratch (`experts > 1`, `split.strategy:
/// replicate`, with sparse upcycling; or `neurons`, MoEfication of a pre-trained dense model),
/// or the experts of `split.strategy: branch` (fused by the weight-space methods, then optionally
/// fine-tuned), or `layerwise` stages (stage-local
/// with `train.local: true`, or end to end with the GPipe schedule, `parallelism.mode: pipeline` or
/// in one process), with `parallelism.mode: none` or `branch` (tasks in worker processes, up to `parallelism.workers` at once,
/// crashed ones retried `parallelism.retries` times), `data` or `expert` (the training task as a group of
/// `parallelism.workers` processes over shared memory), `pipeline` (one layerwise stage per worker),
/// fusion by every method, on synthetic or file data; a spec with a `sweep` section runs with `moe-run sweep`.
public enum SupportGate {
    struct Entry: Sendable {
        let keyPath: String
        /// What is refused, for docs/spec.md.
        let refused: String
        /// The issue(s) that build it, for docs/spec.md.
        let issue: String
        /// The error message when `spec` asks for the feature, else nil.
        let refusal: @Sendable (ExperimentSpec) -> String?
    }

    static let entries: [Entry] = [
    ]

    /// Features whose spec is complete, so `moe-run validate` and `moe-run plan` accept them and
    /// show their plan, but that the runtime does not run yet: a run (`Runner.run`, every trial
    /// of `moe-run sweep`) refuses them through `checkRunnable`, with exit 2 before anything is
    /// written, instead of running something else silently. An issue that builds one deletes
    /// its entry.
    static let runEntries: [Entry] = [
        // Issue 15 builds every split, fusion and parallel mode on transformer LMs; each
        // piece deletes its own entry when it runs end to end.
        Entry(keyPath: "fusion.method", refused: "`model.kind: transformer` with `fusion.method: ensemble`", issue: "15") { s in
            s.model.kind == .transformer && s.fusion.method == .ensemble
                ? "this version does not ensemble transformer LMs (fusion.method: ensemble) yet (issue 15)" : nil
        },
    ]

    /// Refuses a run of a spec that asks for a feature of `runEntries`: a `SpecError` at its key.
    public static func checkRunnable(_ spec: ExperimentSpec) throws {
        for entry in runEntries {
            if let message = entry.refusal(spec) {
                throw spec.positions.error(entry.keyPath, message,
                                           hint: "`moe-run validate` and `moe-run plan` accept it; see \"Not supported yet\" in docs/spec.md")
            }
        }
    }

    /// `allowSweep`: `validate` and `plan` accept a `sweep` section (they list the trials, each
    /// loaded in full); a run refuses it.
    static func check(_ spec: ExperimentSpec, _ context: RuleContext, allowSweep: Bool = false) throws {
        // A sweep is many runs: `moe-run sweep` runs each trial as a spec without the section.
        if spec.sweep != nil, !allowSweep {
            throw context.error("sweep", "this spec defines a sweep; run it with `moe-run sweep SPEC` (`--dry-run` lists the trials)")
        }
        for entry in entries {
            if let message = entry.refusal(spec) {
                throw context.error(entry.keyPath, message,
                                    hint: "this version runs dense, replicate-MoE and neurons-MoE (MoEfication) training, also data- and expert-parallel, layerwise (stage-local or pipeline-parallel), and the experts of branch with their weight-space fusion; see \"Not supported yet\" in docs/spec.md")
            }
        }
    }
}
