import MoESpec

extension Planner {
    /// The tasks after `data` for `split.strategy: branch` (Branch-Train-Merge): an optional
    /// `pretrain` task for the shared seed model (`split.pretrain_epochs > 0`; otherwise the seed
    /// model is the initialisation from the spec seed, or with `split.seed_model: independent`
    /// each expert's own), then `expert-0` … `expert-<E−1>`, independent of each other, each after
    /// `data` (and `pretrain`); with a `fusion.method`, a `fuse` task after all experts (reading
    /// the seed and every expert), then with `fusion.finetune` a `finetune` task; then one
    /// `evaluate` task. Without fusion the run delivers the experts: there is no `final` model.
    static func branchTasks(_ spec: ExperimentSpec) -> [PlanTask] {
        var tasks: [PlanTask] = []
        var deps = ["data"]
        var inputs = ["tasks/data.h5:/data/train", "tasks/data.h5:/data/val"]
        let pretrained = spec.split.pretrains
        if pretrained {
            tasks.append(PlanTask(
                id: "pretrain", kind: .pretrain, dependsOn: ["data"], workers: 1, inputs: inputs, output: "tasks/pretrain.h5",
                summary: "pre-train the seed model, a dense \(spec.modelWords()), for \(spec.pretrainLength)"))
            deps.append("pretrain")
            inputs.append("tasks/pretrain.h5:/model")
        }
        let independent = spec.split.seedModel == .independent
        let seed = pretrained ? "the pre-trained seed model" : "the seed model (initialised from seed \(spec.seed))"
        for i in 0..<spec.experts {
            let t = expertSpec(spec, i)
            let start = independent ? "its own random initialisation (seed \(spec.seed), expert \(i))" : "a copy of \(seed)"
            let data = spec.split.shardBy == .none ? "all of train" : "shard \(i)/\(spec.experts) of train (by \(spec.split.shardBy.rawValue))"
            tasks.append(PlanTask(
                id: expertID(i), kind: .train, dependsOn: deps, workers: 1, inputs: inputs, output: "tasks/\(expertID(i)).h5",
                summary: "train \(start) on \(data) for "
                    + "\(spec.trainingLength(epochs: t.epochs)), \(spec.train.optimizer.rawValue) lr \(t.lr), batch \(t.batchSize)"
                    + (t.seed == spec.seed ? "" : ", seed \(t.seed)") + (t.weightDecay == spec.train.weightDecay ? "" : ", weight decay \(t.weightDecay)")))
        }
        let experts = (0..<spec.experts).map(expertID)
        let models = (pretrained ? ["tasks/pretrain.h5:/model"] : []) + experts.map { "tasks/\($0).h5:/model" }
        guard spec.fusion.method != .none else {
            tasks.append(PlanTask(
                id: "evaluate", kind: .evaluate, dependsOn: experts, workers: 1,
                inputs: models + spec.eval.splits.map { "tasks/data.h5:/data/\($0.rawValue)" },
                output: "tasks/evaluate.h5",
                summary: "evaluate every expert\(pretrained ? " and the seed model" : "") on " + spec.eval.splits.map(\.rawValue).joined(separator: ", ")
                    + " (no fusion: the run delivers the \(spec.experts) experts)"))
            return tasks
        }
        tasks.append(PlanTask(
            id: "fuse", kind: .fuse, dependsOn: experts, workers: 1,
            inputs: models + ["tasks/data.h5:/data/val", "tasks/data.h5:/data/test"], output: "tasks/fuse.h5",
            summary: "fuse the \(spec.experts) experts by \(fusionSummary(spec)); measure every model on val and test, "
                + "the interpolation curves and loss barriers (11 points)"))
        var last = "fuse"
        if let f = spec.fusion.finetune {
            tasks.append(finetuneTask(spec, f, after: "fuse", what: spec.fusion.method == .mix ? "the mixed MoE model (router learned with the MoE losses)" : "the fused model"))
            last = "finetune"
        }
        tasks.append(PlanTask(
            id: "evaluate", kind: .evaluate, dependsOn: [last], workers: 1,
            inputs: models + ["tasks/fuse.h5:/model"] + (last == "fuse" ? [] : ["tasks/finetune.h5:/model"])
                + spec.eval.splits.map { "tasks/data.h5:/data/\($0.rawValue)" },
            output: "tasks/evaluate.h5",
            summary: "evaluate every expert\(pretrained ? ", the seed model" : ""), the fused\(last == "fuse" ? " (final)" : " and the fine-tuned (final)") model on "
                + spec.eval.splits.map(\.rawValue).joined(separator: ", ")))
        return tasks
    }

    /// "average (val_loss weights, temperature 1)", "ties (density 0.5, lambda 1)", ….
    public static func fusionSummary(_ spec: ExperimentSpec) -> String {
        let f = spec.fusion
        let weights: String
        switch f.weights {
        case .explicit(let w): weights = "weights [" + w.map { "\($0)" }.joined(separator: ", ") + "]"
        case .valLoss: weights = "val_loss weights, temperature \(f.temperature)"
        default: weights = "\(f.weights.keyword!) weights"
        }
        switch f.method {
        case .average: return "average (\(weights))"
        case .greedy_soup: return "greedy_soup (by validation accuracy)"
        case .task_arithmetic: return "task_arithmetic (lambda \(f.lambda), \(weights))"
        case .ties: return "ties (density \(f.density), lambda \(f.lambda), \(weights))"
        case .dare: return "dare (density \(f.density), rescale \(f.rescale), \(weights))"
        case .dare_ties: return "dare_ties (density \(f.density), rescale \(f.rescale), lambda \(f.lambda), \(weights))"
        case .slerp: return "slerp (t \(f.t))"
        case .fisher: return "fisher (\(f.fisherSamples) validation batches, epsilon \(f.epsilon), \(weights))"
        case .mix:
            let blocks = spec.model.moeBlocks.summary(blocks: spec.model.blocks)
            return "mix (BTX: the experts' FFNs of \(blocks) become the experts of MoE blocks with a \(spec.router.type.rawValue) router (k \(spec.router.k)) initialised near uniform; other weights averaged, \(weights))"
        default: return f.method.rawValue
        }
    }

    /// The `finetune` task: `what` (the `after` task's `/model`) trained on the full training split.
    static func finetuneTask(_ spec: ExperimentSpec, _ f: FusionSpec.Finetune, after: String, what: String) -> PlanTask {
        PlanTask(id: "finetune", kind: .finetune, dependsOn: [after], workers: 1,
                 inputs: ["tasks/data.h5:/data/train", "tasks/data.h5:/data/val", "tasks/\(after).h5:/model"], output: "tasks/finetune.h5",
                 summary: "fine-tune \(what) on all of train for \(f.steps.map { "\($0) step\($0 == 1 ? "" : "s")" } ?? "\(f.epochs) epoch\(f.epochs == 1 ? "" : "s")"), \(spec.train.optimizer.rawValue) lr \(f.lr), batch \(spec.train.batchSize)")
    }

    /// The id of branch `i`'s training task (and of its model in run.h5 `/models`).
    public static func expertID(_ i: Int) -> String { "expert-\(i)" }

    /// Expert `i`'s effective settings: `train` and `seed` with `split.overrides[i]` applied.
    static func expertSpec(_ spec: ExperimentSpec, _ i: Int) -> (lr: Double, seed: Int, epochs: Int, batchSize: Int, weightDecay: Double) {
        let o = spec.split.overrides?[i]
        return (o?.lr ?? spec.train.lr, o?.seed ?? spec.seed, o?.epochs ?? spec.train.epochs,
                o?.batchSize ?? spec.train.batchSize, o?.weightDecay ?? spec.train.weightDecay)
    }
}
