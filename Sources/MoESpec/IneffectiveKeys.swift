/// Keys that the document gives but that cannot affect the run as configured: a `router` section
/// on a dense model, fusion parameters without a fusion method, SGD's momentum with AdamW, …
///
/// They are warnings (ARCHITECTURE §3, "Spec"), never silently ignored and never a reason to
/// refuse the run: a sweep or an override that changes the key another key depends on (`--grid
/// router.k=1,2` over `normalize_topk: true`) must run. `SpecLoader` reports each such key at its
/// position and removes it from the document, so the run is exactly the run of the spec without
/// it. `moe-run validate --strict` makes the first one (in this table's order, after the
/// cross-field rules) an error, as before.
enum IneffectiveKeys {
    struct Rule: Sendable {
        /// A key path, or a section followed by `.` for every key under it.
        let keys: [String]
        /// One line for docs/spec.md.
        let summary: String
        /// Why the keys have no effect in `spec`, or nil when they do.
        let reason: @Sendable (ExperimentSpec) -> String?
    }

    static let rules: [Rule] = [
        // With `text`, the feature-data keys are errors (`ModelKindRules`), not warnings.
        Rule(keys: ["data.path"], summary: "`data.path` applies to `data.source: file` and `text`.") { s in
            s.data.source.kind == .synthetic ? "applies only with data.source: file or text" : nil
        },
        Rule(keys: ["data.format"], summary: "`data.format` applies to `data.source: file` only.") { s in
            s.data.source.kind == .synthetic ? "applies only with data.source: file" : nil
        },
        Rule(keys: ["data.seed"], summary: "`data.seed` needs feature data (`data.source: synthetic` or `file`): a text corpus is split without randomness.") { s in
            s.data.source.kind == .text ? "has no effect with data.source: text (each domain's stream is cut into contiguous blocks; nothing about the data is drawn)" : nil
        },
        Rule(keys: ["data.features", "data.classes", "data.domains", "data.samples", "data.separation", "data.label_noise"],
             summary: "the synthetic data keys apply to `data.source: synthetic` only.") { s in
            s.data.source.kind == .file ? "applies only with data.source: synthetic (a data file brings its own)" : nil
        },
        Rule(keys: ["split.strategy"], summary: "`split.strategy: replicate` with `experts: 1` (and no pre-training or upcycling) is the dense model.") { s in
            s.experts == 1 && s.split.strategy == .replicate && s.split.upcycleFrom == nil && !s.split.pretrains
                ? "replicate has no effect with experts: 1 (one copy of the FFN is the dense model)" : nil
        },
        Rule(keys: ["router.", "model.moe_blocks"], summary: "`router.*` and `model.moe_blocks` need `experts > 1`.") { s in
            s.experts == 1 ? "has no effect with experts: 1 (a dense model has no router or MoE blocks)" : nil
        },
        Rule(keys: ["model.shared_experts"], summary: "`model.shared_experts` needs MoE layers (`experts > 1` with `replicate`).") { s in
            sharedExpertsWithoutMoE(s)
        },
        Rule(keys: ["model.shared_ffn"], summary: "`model.shared_ffn` needs `model.shared_experts > 0` in a model with MoE layers.") { s in
            s.model.sharedExperts == 0 ? "has no effect with model.shared_experts: 0 (there are no shared experts)" : sharedExpertsWithoutMoE(s)
        },
        Rule(keys: ["router.aux_loss"], summary: "`router.aux_loss` needs a learned token-choice router (`topk`, `switch`, `noisy_topk`) and `router.balance: aux_loss`.") { s in
            switch s.router.type {
            case .hash, .domain: return "has no effect with router.type: \(s.router.type.rawValue) (the router has no learned weights)"
            case .expert_choice:
                return "has no effect with router.type: expert_choice (every expert takes the same number of tokens; there is no load-balancing loss)"
            default:
                return s.router.balance == .aux_loss ? nil
                    : "has no effect with router.balance: \(s.router.balance.rawValue) (the load-balancing loss is measured, not trained on)"
            }
        },
        Rule(keys: ["router.bias_rate"], summary: "`router.bias_rate` needs `router.balance: bias`.") { s in
            s.router.balance == .bias ? nil : "has no effect with router.balance: \(s.router.balance.rawValue) (there is no expert bias)"
        },
        Rule(keys: ["router.z_loss", "router.jitter"], summary: "`router.z_loss` and `router.jitter` need a learned router (not `hash` or `domain`).") { s in
            s.router.type == .hash || s.router.type == .domain
                ? "has no effect with router.type: \(s.router.type.rawValue) (the router has no learned weights)" : nil
        },
        Rule(keys: ["router.normalize_topk"], summary: "`router.normalize_topk` applies to `topk` and `noisy_topk` with `k > 1`.") { s in
            if s.router.type != .topk && s.router.type != .noisy_topk {
                return "applies only with router.type: topk or noisy_topk, got \(s.router.type.rawValue)"
            }
            return s.router.k == 1 ? "has no effect with router.k: 1 (the one gate keeps its probability)" : nil
        },
        Rule(keys: ["router.min_capacity"], summary: "`router.min_capacity` needs a `router.capacity_factor`.") { s in
            s.router.capacityFactor == nil ? "has no effect without router.capacity_factor (dropless routing has no capacity)" : nil
        },
        Rule(keys: ["router.drop_policy"], summary: "`router.drop_policy` needs a `router.capacity_factor` and a `topk`, `switch` or `noisy_topk` router.") { s in
            if s.router.capacityFactor == nil { return "has no effect without router.capacity_factor (dropless routing drops nothing)" }
            switch s.router.type {
            case .hash, .domain:
                return "has no effect with router.type: \(s.router.type.rawValue) (without probabilities, overflow is dropped by position)"
            case .expert_choice: return "has no effect with router.type: expert_choice (each expert picks its most probable tokens)"
            default: return nil
            }
        },
        Rule(keys: ["split.source"], summary: "`split.source` needs a pre-training task (`split.pretrain_epochs` or `split.pretrain_steps`).") { s in
            s.split.pretrains && s.split.strategy != .none ? nil : "applies only when the run pre-trains a dense model (split.pretrain_epochs or split.pretrain_steps)"
        },
        Rule(keys: ["fusion.source"], summary: "`fusion.source` applies to the experts of `branch` with a `fusion.method`, and to the stacked model of `layerwise` with `fusion.finetune`.") { s in
            let fuses = s.split.strategy == .branch && s.fusion.method != .none
            let stacks = s.split.strategy == .layerwise && s.fusion.finetune != nil
            return fuses || stacks ? nil : "applies only to branch experts that are fused, or to a layerwise stacked model that is fine-tuned"
        },
        Rule(keys: ["train.early_stopping"], summary: "`train.early_stopping` needs more than one validation: with `train.steps`, a `train.eval_every` above 0.") { s in
            s.train.earlyStopping != nil && s.train.steps != nil && s.train.evalEvery == 0
                ? "has no effect with train.steps and train.eval_every: 0 (one validation, at the end of training)" : nil
        },
        Rule(keys: ["split.method"], summary: "`split.method` applies to `neurons` only.") { s in
            s.split.strategy == .neurons ? nil : "applies only with split.strategy: neurons"
        },
        Rule(keys: ["split.shard_by", "split.seed_model"], summary: "`split.shard_by` and `split.seed_model` apply to `branch` only.") { s in
            s.split.strategy == .branch ? nil : "applies only with split.strategy: branch"
        },
        Rule(keys: ["split.pretrain_epochs", "split.pretrain_steps"], summary: "`split.pretrain_epochs` and `split.pretrain_steps` need a split strategy.") { s in
            s.split.strategy == .none ? "has no effect with split.strategy: none" : nil
        },
        Rule(keys: ["fusion.weights", "fusion.temperature", "fusion.lambda", "fusion.density", "fusion.rescale",
                    "fusion.t", "fusion.normalize", "fusion.epsilon", "fusion.fisher_samples", "fusion.prior"],
             summary: "fusion parameters need a `fusion.method`.") { s in
            s.fusion.method == .none ? "has no effect with fusion.method: none" : nil
        },
        Rule(keys: ["fusion.weights"], summary: "`fusion.weights` applies to every method but `greedy_soup`, `slerp`, `stack` and `ensemble` (which take no per-expert weights).") { s in
            FusionParameters.reason(s, users: [.average, .task_arithmetic, .ties, .dare, .dare_ties, .fisher, .mix])
        },
        Rule(keys: ["fusion.temperature"], summary: "`fusion.temperature` applies to `fusion.weights: val_loss` only.") { s in
            FusionParameters.reason(s, users: [.average, .task_arithmetic, .ties, .dare, .dare_ties, .fisher, .mix])
                ?? (s.fusion.weights == .valLoss ? nil : "applies only with fusion.weights: val_loss")
        },
        Rule(keys: ["fusion.lambda"], summary: "`fusion.lambda` applies to `task_arithmetic`, `ties`, `dare` and `dare_ties`.") { s in
            FusionParameters.reason(s, users: [.task_arithmetic, .ties, .dare, .dare_ties])
        },
        Rule(keys: ["fusion.density"], summary: "`fusion.density` applies to `ties`, `dare` and `dare_ties`.") { s in
            FusionParameters.reason(s, users: [.ties, .dare, .dare_ties])
        },
        Rule(keys: ["fusion.rescale"], summary: "`fusion.rescale` applies to `dare` and `dare_ties`.") { s in
            FusionParameters.reason(s, users: [.dare, .dare_ties])
        },
        Rule(keys: ["fusion.t"], summary: "`fusion.t` applies to `slerp`.") { s in FusionParameters.reason(s, users: [.slerp]) },
        Rule(keys: ["fusion.normalize"], summary: "`fusion.normalize` applies to `average`, `task_arithmetic`, `ties`, `dare`, `dare_ties` and `mix`.") { s in
            FusionParameters.reason(s, users: [.average, .task_arithmetic, .ties, .dare, .dare_ties, .mix])
        },
        Rule(keys: ["fusion.epsilon", "fusion.fisher_samples"], summary: "`fusion.epsilon` and `fusion.fisher_samples` apply to `fisher`.") { s in
            FusionParameters.reason(s, users: [.fisher])
        },
        Rule(keys: ["fusion.prior"], summary: "`fusion.prior` applies to `ensemble` of transformer LMs (an mlp ensemble's prior is its share of validation samples).") { s in
            FusionParameters.reason(s, users: [.ensemble])
                ?? (s.model.kind == .transformer ? nil : "applies only to an ensemble of transformer LMs (model.kind: transformer)")
        },
        Rule(keys: ["parallelism.microbatches"], summary: "`parallelism.microbatches` applies to `layerwise` trained end to end (`pipeline` mode, or `none`: the same schedule in one process).") { s in
            s.split.strategy == .layerwise && !s.train.local ? nil
                : "applies only to split.strategy: layerwise trained end to end (parallelism.mode: pipeline, or none for the same schedule in one process)"
        },
        Rule(keys: ["parallelism.compression"], summary: "`parallelism.compression` applies to `data` mode only.") { s in
            s.parallelism.mode == .data || s.parallelism.compression == .none ? nil : "applies only with parallelism.mode: data"
        },
        Rule(keys: ["parallelism.ratio"], summary: "`parallelism.ratio` applies to `compression: topk` only.") { s in
            s.parallelism.compression == .topk ? nil : "applies only with parallelism.compression: topk"
        },
        Rule(keys: ["train.momentum", "train.nesterov"], summary: "`train.momentum` and `train.nesterov` apply to `sgd` only.") { s in
            s.train.optimizer == .sgd ? nil : "applies only with train.optimizer: sgd"
        },
        Rule(keys: ["train.betas", "train.eps"], summary: "`train.betas` and `train.eps` apply to `adamw` only.") { s in
            s.train.optimizer == .adamw ? nil : "applies only with train.optimizer: adamw"
        },
    ]

    /// Why `model.shared_experts` has no effect: the model has no MoE layers.
    static func sharedExpertsWithoutMoE(_ s: ExperimentSpec) -> String? {
        if s.experts == 1 { return "has no effect with experts: 1 (a dense model has no MoE layers)" }
        if s.split.strategy == .layerwise || (s.split.strategy == .branch && s.fusion.method != .mix) {
            return "has no effect with split.strategy: \(s.split.strategy.rawValue) (the model has no MoE layers)"
        }
        return nil
    }

    /// A key with no effect: the warning (the error of `--strict`) and the key path to remove
    /// from the document (the whole section for a rule over `section.`).
    struct Finding {
        let warning: SpecError
        let removal: String
    }

    /// Every given key that has no effect in `spec`, one finding per key, in table order: rules in
    /// order, keys in the order a rule lists them (a section's keys by position, the first one
    /// reported for the whole section). A key under a section already found is not repeated.
    static func findings(_ spec: ExperimentSpec, _ context: RuleContext) -> [Finding] {
        let given = context.decode.given
        var found: [Finding] = []
        func covered(_ key: String) -> Bool {
            found.contains { key == $0.removal || key.hasPrefix($0.removal + ".") }
        }
        for rule in rules {
            guard let reason = rule.reason(spec) else { continue }
            for key in rule.keys {
                let section = key.hasSuffix(".") ? String(key.dropLast()) : nil
                let hit = section != nil ? given.filter { $0.hasPrefix(key) }.min { context.at($0) < context.at($1) }
                                         : (given.contains(key) ? key : nil)
                guard let hit, !covered(hit) else { continue }
                found.append(Finding(warning: context.error(hit, reason, hint: "remove the key, or change the setting it depends on"),
                                     removal: section ?? hit))
            }
        }
        return found
    }
}

/// Which fusion methods read a parameter (`FuseTask`; `mix` averages its non-expert weights with
/// `weights`/`temperature`/`normalize`; `ensemble` weighs by the domain posterior and reads none).
enum FusionParameters {
    static func reason(_ s: ExperimentSpec, users: Set<FusionSpec.Method>) -> String? {
        let m = s.fusion.method
        guard m != .none, !users.contains(m) else { return nil }
        return "has no effect with fusion.method: \(m.rawValue)"
    }
}

extension SourceLocation {
    static func < (a: SourceLocation, b: SourceLocation) -> Bool { (a.line, a.column) < (b.line, b.column) }
}
