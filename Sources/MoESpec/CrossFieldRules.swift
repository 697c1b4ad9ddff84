/// Where rules look up positions: a key's value if it was written, else its enclosing mapping.
struct RuleContext {
    let decode: DecodeContext
    let root: SourceLocation

    func at(_ keyPath: String) -> SourceLocation { decode.location(of: keyPath, fallback: root) }
    func given(_ keyPath: String) -> Bool { decode.given.contains(keyPath) }

    func error(_ keyPath: String, _ message: String, hint: String? = nil) -> SpecError {
        SpecError(at(keyPath), keyPath, message, hint: hint)
    }
}

/// A rule between keys, checked after every key has its own type and range.
struct CrossFieldRule: Sendable {
    /// One line for docs/spec.md.
    let summary: String
    let check: @Sendable (ExperimentSpec, RuleContext) -> SpecError?
}

/// The rules between keys, checked in this order; the first broken one is reported.
enum CrossFieldRules {
    static func check(_ spec: ExperimentSpec, _ context: RuleContext) throws {
        for rule in all {
            if let error = rule.check(spec, context) { throw error }
        }
    }

    static let all: [CrossFieldRule] = ModelKindRules.all + [
        CrossFieldRule(summary: "`data.split` fractions sum to 1.") { s, c in
            let f = s.data.split
            let sum = f.train + f.val + f.test
            guard abs(sum - 1) > 1e-9 else { return nil }
            return c.error("data.split", "fractions must sum to 1, got \(formatNumber((sum * 1e9).rounded() / 1e9)) (train \(formatNumber(f.train)) + val \(formatNumber(f.val)) + test \(formatNumber(f.test)))")
        },
        CrossFieldRule(summary: "`experts > 1` needs a `split.strategy` other than `none`, and a strategy needs `experts > 1`.") { s, c in
            if s.experts > 1, s.split.strategy == .none {
                return c.error("experts", "values above 1 need a split.strategy (replicate, neurons, layerwise or branch); it is none")
            }
            if s.experts == 1, s.split.strategy != .none {
                return c.error("split.strategy", "\(s.split.strategy.rawValue) needs experts above 1, got experts: 1")
            }
            return nil
        },
        CrossFieldRule(summary: "`split.strategy: layerwise` needs `experts <= model.blocks` (one stage per expert).") { s, c in
            guard s.split.strategy == .layerwise, s.experts > s.model.blocks else { return nil }
            return c.error("experts", "must be at most model.blocks (\(s.model.blocks)) with split.strategy: layerwise, got \(s.experts)")
        },
        CrossFieldRule(summary: "`split.strategy: layerwise` with `model.kind: transformer` needs `model.tie_embeddings: false` (the stages own disjoint parameters: a tied head would put the embedding in the first and the last stage).") { s, c in
            guard s.split.strategy == .layerwise, s.model.transformer?.tieEmbeddings == true else { return nil }
            return c.error("model.tie_embeddings", "must be false with split.strategy: layerwise: each stage owns its own parameters, and a tied head would share the first stage's embedding with the last stage",
                           hint: "set model.tie_embeddings: false")
        },
        CrossFieldRule(summary: "`split.pretrain_epochs` and `split.pretrain_steps` exclude each other: the pre-training length is given in epochs or in steps, not both.") { s, c in
            guard s.split.pretrainEpochs > 0, s.split.pretrainSteps > 0 else { return nil }
            return c.error("split.pretrain_steps", "and split.pretrain_epochs exclude each other: give the pre-training length in steps or in epochs, got \(s.split.pretrainSteps) steps and \(s.split.pretrainEpochs) epochs",
                           hint: "remove one of them")
        },
        CrossFieldRule(summary: "`split.strategy: neurons` needs `split.pretrain_epochs >= 1` (or `split.pretrain_steps >= 1`) and `experts` dividing `model.ffn` (each expert takes `model.ffn / experts` hidden units).") { s, c in
            guard s.split.strategy == .neurons else { return nil }
            if !s.split.pretrains {
                return c.error("split.pretrain_epochs", "must be at least 1 with split.strategy: neurons (the dense FFN is trained first), got 0",
                               hint: "or give split.pretrain_steps")
            }
            if s.model.ffn % s.experts != 0 {
                return c.error("experts", "must divide model.ffn (\(s.model.ffn)) with split.strategy: neurons (each expert takes model.ffn / experts hidden units), got \(s.experts)")
            }
            return nil
        },
        CrossFieldRule(summary: "`split.upcycle_from` only with `replicate`, and not with `split.pretrain_epochs` or `split.pretrain_steps`; `split.overrides` only with `branch`, one entry per expert.") { s, c in
            if s.split.upcycleFrom != nil, s.split.strategy != .replicate {
                return c.error("split.upcycle_from", "applies only with split.strategy: replicate")
            }
            if s.split.upcycleFrom != nil, s.split.pretrainEpochs > 0 {
                return c.error("split.upcycle_from", "and split.pretrain_epochs exclude each other: upcycle from a given checkpoint, or pre-train one here")
            }
            if s.split.upcycleFrom != nil, s.split.pretrainSteps > 0 {
                return c.error("split.upcycle_from", "and split.pretrain_steps exclude each other: upcycle from a given checkpoint, or pre-train one here")
            }
            if let overrides = s.split.overrides {
                if s.split.strategy != .branch { return c.error("split.overrides", "applies only with split.strategy: branch") }
                if overrides.count != s.experts {
                    return c.error("split.overrides", "needs one entry per expert (\(s.experts)), got \(overrides.count)")
                }
            }
            return nil
        },
        CrossFieldRule(summary: "`split.strategy: branch` with `split.shard_by: domain` on synthetic data needs `experts <= data.domains` (shard i takes the domains d with d mod experts = i; none may be empty).") { s, c in
            guard s.split.strategy == .branch, s.split.shardBy == .domain, case .synthetic(let d) = s.data.source,
                  s.experts > d.domains else { return nil }
            return c.error("experts", "must be at most data.domains (\(d.domains)) with split.shard_by: domain (one or more whole domains per expert), got \(s.experts)",
                           hint: "raise data.domains, or shard by index or random")
        },
        CrossFieldRule(summary: "`train.init_from` excludes `split.upcycle_from` and `split.seed_model: independent`.") { s, c in
            guard s.train.initFrom != nil else { return nil }
            if s.split.upcycleFrom != nil {
                return c.error("train.init_from", "and split.upcycle_from exclude each other: the experts are upcycled from the given dense checkpoint, so nothing starts from train.init_from",
                               hint: "to continue an MoE checkpoint, remove split.upcycle_from")
            }
            if s.split.strategy == .branch, s.split.seedModel == .independent, !s.split.pretrains {
                return c.error("train.init_from", "does not apply with split.seed_model: independent (each expert starts from its own random initialisation)",
                               hint: "use split.seed_model: shared to branch every expert from the checkpoint")
            }
            return nil
        },
        CrossFieldRule(summary: "`split.seed_model: independent` excludes `split.pretrain_epochs` and `split.pretrain_steps` (there is no shared seed model to pre-train).") { s, c in
            guard s.split.strategy == .branch, s.split.seedModel == .independent, s.split.pretrains else { return nil }
            if s.split.pretrainSteps > 0 {
                return c.error("split.pretrain_steps", "must be 0 with split.seed_model: independent (each expert starts from its own random initialisation; there is no shared seed model to pre-train), got \(s.split.pretrainSteps)",
                               hint: "remove split.pretrain_steps, or use split.seed_model: shared")
            }
            return c.error("split.pretrain_epochs", "must be 0 with split.seed_model: independent (each expert starts from its own random initialisation; there is no shared seed model to pre-train), got \(s.split.pretrainEpochs)",
                           hint: "remove split.pretrain_epochs, or use split.seed_model: shared")
        },
        CrossFieldRule(summary: "`model.shared_experts` needs `split.strategy: replicate` wherever the model has MoE layers (not `neurons`, nor `branch` with `fusion.method: mix`), and excludes expert merging (`fusion.method: average` with `replicate`).") { s, c in
            guard s.model.sharedExperts > 0, s.experts > 1 else { return nil }
            let why: String
            switch s.split.strategy {
            case .neurons: why = "MoEfication splits the dense FFN into the routed experts, and a shared expert has no part of it to start from"
            case .branch where s.fusion.method == .mix: why = "Branch-Train-MiX builds the MoE layers from the branches' FFNs, and a shared expert has no branch to come from"
            case .replicate where s.fusion.method == .average:
                return c.error("model.shared_experts", "and expert merging (fusion.method: average) exclude each other: the merge averages the routed experts into one dense FFN and would drop the shared ones",
                               hint: "set model.shared_experts: 0, or fusion.method: none")
            default: return nil
            }
            return c.error("model.shared_experts", "applies only with split.strategy: replicate (\(why)), got \(s.split.strategy.rawValue)",
                           hint: "set model.shared_experts: 0")
        },
        CrossFieldRule(summary: "`router.k` is between 1 and `experts`; `router.type: switch` and `domain` need `k: 1`.") { s, c in
            if s.router.type == .switch || s.router.type == .domain, s.router.k != 1 {
                return c.error("router.k", "must be 1 with router.type: \(s.router.type.rawValue), got \(s.router.k)")
            }
            if s.router.k > s.experts {
                return c.error("router.k", "must be between 1 and experts (\(s.experts)), got \(s.router.k)")
            }
            return nil
        },
        CrossFieldRule(summary: "`router.score: sigmoid` and `router.balance: bias` need `router.type: topk` or `switch` (`noisy_topk` perturbs softmax logits, `expert_choice` balances by construction, `hash` and `domain` have no scores).") { s, c in
            if s.router.score == .sigmoid, let why = RouterSpec.tokenChoiceOnly[s.router.type] {
                return c.error("router.score", "sigmoid needs router.type: topk or switch, got \(s.router.type.rawValue) (\(why))")
            }
            if s.router.balance == .bias, let why = RouterSpec.tokenChoiceOnly[s.router.type] {
                return c.error("router.balance", "bias needs router.type: topk or switch, got \(s.router.type.rawValue) (\(why))")
            }
            return nil
        },
        CrossFieldRule(summary: "`router.type: expert_choice` needs a `router.capacity_factor`.") { s, c in
            guard s.router.type == .expert_choice, s.router.capacityFactor == nil else { return nil }
            if c.given("router.capacity_factor") {
                return c.error("router.capacity_factor", "must be a number with router.type: expert_choice, got null (dropless)",
                               hint: "experts pick capacity_factor · tokens / experts tokens each; e.g. 1.25")
            }
            return c.error("router.type", "expert_choice needs router.capacity_factor (it has no dropless form)",
                           hint: "set router.capacity_factor, e.g. 1.25")
        },
        CrossFieldRule(summary: "`parallelism.mode: pipeline` needs `layerwise`, `branch` needs `branch`, `expert` needs `replicate` or `neurons`, `data` needs `none`, `replicate` or `neurons`.") { s, c in
            let needed: [ParallelismSpec.Mode: [SplitSpec.Strategy]] = [
                .pipeline: [.layerwise], .branch: [.branch], .expert: [.replicate, .neurons], .data: [.none, .replicate, .neurons],
            ]
            guard let strategies = needed[s.parallelism.mode], !strategies.contains(s.split.strategy) else { return nil }
            let names = strategies.map(\.rawValue).joined(separator: " or ")
            return c.error("parallelism.mode", "\(s.parallelism.mode.rawValue) needs split.strategy: \(names), got \(s.split.strategy.rawValue)")
        },
        CrossFieldRule(summary: "`parallelism.mode: expert` gives every worker at least one expert: `workers <= experts`.") { s, c in
            guard s.parallelism.mode == .expert, s.parallelism.workers > s.experts else { return nil }
            return c.error("parallelism.workers", "expert parallelism gives each worker at least one expert: needs at most experts (\(s.experts)) workers, got \(s.parallelism.workers)")
        },
        CrossFieldRule(summary: "`parallelism.mode: pipeline` runs one stage per worker: `workers == experts`; `parallelism.microbatches <= train.batch_size`.") { s, c in
            guard s.parallelism.mode == .pipeline else { return nil }
            if s.parallelism.workers != s.experts {
                return c.error("parallelism.workers", "pipeline parallelism runs one stage per worker: needs workers equal to experts (\(s.experts) stages), got \(s.parallelism.workers)")
            }
            if s.parallelism.microbatches > s.train.batchSize {
                return c.error("parallelism.microbatches", "must be at most train.batch_size (\(s.train.batchSize)): every micro-batch needs a row, got \(s.parallelism.microbatches)")
            }
            return nil
        },
        CrossFieldRule(summary: "`train.steps` and `train.epochs` exclude each other (give one; neither: `epochs` takes its default); with `train.steps`, `split.overrides` entries take no `epochs`, with `train.epochs` no `steps`; `fusion.finetune.steps` and `fusion.finetune.epochs` exclude each other.") { s, c in
            if s.fusion.finetune?.steps != nil, c.given("fusion.finetune.epochs") {
                return c.error("fusion.finetune.steps", "and fusion.finetune.epochs exclude each other: fine-tune for a number of steps or of epochs, not both",
                               hint: "remove one of them")
            }
            guard let steps = s.train.steps else {
                if let i = s.split.overrides?.firstIndex(where: { $0.steps != nil }) {
                    return c.error("split.overrides[\(i)].steps", "applies only with train.steps; the experts train for train.epochs (\(s.train.epochs))",
                                   hint: "remove the override's steps, or train for train.steps instead of train.epochs")
                }
                return nil
            }
            if c.given("train.epochs") {
                return c.error("train.steps", "and train.epochs exclude each other: train for a number of steps or of epochs, not both",
                               hint: "remove one of them (e.g. --unset train.epochs)")
            }
            if let i = s.split.overrides?.firstIndex(where: { $0.epochs != nil }) {
                return c.error("split.overrides[\(i)].epochs", "applies only with train.epochs; the experts train for train.steps (\(steps))",
                               hint: "remove the override's epochs, or train for train.epochs instead of train.steps")
            }
            return nil
        },
        CrossFieldRule(summary: "`train.local: true` needs `layerwise` and excludes `parallelism.mode: pipeline`.") { s, c in
            guard s.train.local else { return nil }
            if s.split.strategy != .layerwise {
                return c.error("train.local", "applies only with split.strategy: layerwise, got \(s.split.strategy.rawValue)")
            }
            if s.parallelism.mode == .pipeline {
                return c.error("train.local", "stage-local training and parallelism.mode: pipeline exclude each other; pick one")
            }
            return nil
        },
        CrossFieldRule(summary: "`train.min_lr <= train.lr`.") { s, c in
            guard s.train.minLR > s.train.lr else { return nil }
            return c.error("train.min_lr", "must be at most train.lr (\(formatNumber(s.train.lr))), got \(formatNumber(s.train.minLR))")
        },
        CrossFieldRule(summary: "`fusion.method: stack` needs `layerwise`; `average` needs `branch` or `replicate` (expert merging: uniform, data_size or explicit weights); every other method needs `branch`; `slerp` needs exactly 2 experts; `mix` needs `fusion.finetune` and weights other than `optimized`; `ensemble` takes no `fusion.finetune`; `fusion.finetune` needs a method.") { s, c in
            let method = s.fusion.method
            if method == .stack, s.split.strategy != .layerwise {
                return c.error("fusion.method", "stack needs split.strategy: layerwise, got \(s.split.strategy.rawValue)")
            }
            if method == .average, s.split.strategy == .replicate {
                if s.fusion.weights == .valLoss || s.fusion.weights == .optimized {
                    return c.error("fusion.weights", "merging the experts of a replicate MoE takes uniform, data_size (each expert's routing load) or an explicit list, got \(s.fusion.weights.keyword!)")
                }
                return nil
            }
            if method != .stack, method != .none, s.split.strategy != .branch {
                return c.error("fusion.method", "\(method.rawValue) needs split.strategy: branch, got \(s.split.strategy.rawValue)")
            }
            if method == .mix, s.fusion.finetune == nil {
                return c.error("fusion.method", "mix needs fusion.finetune: the MoE's routers start untrained and learn only while fine-tuning (Branch-Train-MiX)")
            }
            if method == .ensemble, s.fusion.finetune != nil {
                return c.error("fusion.finetune", "does not apply to fusion.method: ensemble (the experts stay separate models, mixed by the domain posterior)")
            }
            if method == .mix, s.fusion.weights == .optimized {
                return c.error("fusion.weights", "mix averages the non-expert weights by uniform, data_size, val_loss or an explicit list, got optimized")
            }
            if method == .slerp, s.experts != 2 {
                return c.error("fusion.method", "slerp needs exactly 2 experts, got \(s.experts)")
            }
            if s.fusion.finetune != nil, method == .none {
                return c.error("fusion.finetune", "needs a fusion.method other than none")
            }
            return nil
        },
        CrossFieldRule(summary: "An explicit `fusion.weights` list has one weight per expert, not all zero.") { s, c in
            guard case .explicit(let weights) = s.fusion.weights else { return nil }
            if weights.count != s.experts {
                return c.error("fusion.weights", "needs one weight per expert (\(s.experts)), got \(weights.count)")
            }
            if weights.allSatisfy({ $0 == 0 }) { return c.error("fusion.weights", "must not all be zero") }
            return nil
        },
        CrossFieldRule(summary: "`sweep.trials` is required with `method: random` and not allowed with `grid`; a sweep runs at most 10000 trials.") { s, c in
            guard let sweep = s.sweep else { return nil }
            if sweep.method == .random, sweep.trials == nil {
                return c.error("sweep.trials", "required with sweep.method: random")
            }
            if sweep.method == .grid, sweep.trials != nil {
                return c.error("sweep.trials", "applies only with sweep.method: random (grid runs every combination)")
            }
            if sweep.trialCount > SweepSpec.maxTrials {
                return c.error(sweep.method == .random ? "sweep.trials" : "sweep.parameters",
                               "a sweep runs at most \(SweepSpec.maxTrials) trials, got \(sweep.trialCount == Int.max ? "more than \(Int.max)" : String(sweep.trialCount))")
            }
            return nil
        },
    ]
}
