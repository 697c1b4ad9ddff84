import MoESpec

extension Planner {
    /// The tasks after `data` for `split.strategy: branch` (Branch-Train-Merge's branching; fusion
    /// is not planned yet): an optional `pretrain` task for the shared seed model
    /// (`split.pretrain_epochs > 0`; otherwise the seed model is the initialisation from the spec
    /// seed), then `expert-0` … `expert-<E−1>`, independent of each other, each after `data` (and
    /// `pretrain`), then one `evaluate` task after all experts. The run delivers the experts:
    /// there is no `final` model.
    static func branchTasks(_ spec: ExperimentSpec) -> [PlanTask] {
        let m = spec.model
        var tasks: [PlanTask] = []
        var deps = ["data"]
        var inputs = ["tasks/data.h5:/data/train", "tasks/data.h5:/data/val"]
        let pretrained = spec.split.pretrainEpochs > 0
        if pretrained {
            let e = spec.split.pretrainEpochs
            tasks.append(PlanTask(
                id: "pretrain", kind: .pretrain, dependsOn: ["data"], workers: 1, inputs: inputs, output: "tasks/pretrain.h5",
                summary: "pre-train the seed model, a dense residual MLP (hidden \(m.hidden), ffn \(m.ffn)), for \(e) epoch\(e == 1 ? "" : "s")"))
            deps.append("pretrain")
            inputs.append("tasks/pretrain.h5:/model")
        }
        let seed = pretrained ? "the pre-trained seed model" : "the seed model (initialised from seed \(spec.seed))"
        for i in 0..<spec.experts {
            let t = expertSpec(spec, i)
            tasks.append(PlanTask(
                id: expertID(i), kind: .train, dependsOn: deps, workers: 1, inputs: inputs, output: "tasks/\(expertID(i)).h5",
                summary: "train a copy of \(seed) on shard \(i)/\(spec.experts) of train (by \(spec.split.shardBy.rawValue)) for "
                    + "\(t.epochs) epoch\(t.epochs == 1 ? "" : "s"), \(spec.train.optimizer.rawValue) lr \(t.lr), batch \(t.batchSize)"
                    + (t.seed == spec.seed ? "" : ", seed \(t.seed)") + (t.weightDecay == spec.train.weightDecay ? "" : ", weight decay \(t.weightDecay)")))
        }
        let experts = (0..<spec.experts).map(expertID)
        tasks.append(PlanTask(
            id: "evaluate", kind: .evaluate, dependsOn: experts, workers: 1,
            inputs: (pretrained ? ["tasks/pretrain.h5:/model"] : []) + experts.map { "tasks/\($0).h5:/model" } + spec.eval.splits.map { "tasks/data.h5:/data/\($0.rawValue)" },
            output: "tasks/evaluate.h5",
            summary: "evaluate every expert\(pretrained ? " and the seed model" : "") on " + spec.eval.splits.map(\.rawValue).joined(separator: ", ")
                + " (no fusion: the run delivers the \(spec.experts) experts)"))
        return tasks
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
