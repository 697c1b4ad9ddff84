import MoESpec

/// Compiles a validated spec into its execution plan. A pure function: no I/O, no clock, no
/// randomness; the same spec always gives the same plan.
public enum Planner {
    public static func plan(_ spec: ExperimentSpec) -> Plan {
        var tasks: [PlanTask] = []
        let dataSummary: String
        let dataInputs: [String]
        switch spec.data.source {
        case .synthetic(let s):
            dataSummary = "generate \(s.samples) synthetic samples (\(s.domains) domains, \(s.features) features, \(s.classes) classes), split \(fractions(spec.data.split))"
            dataInputs = []
        case .file(let f):
            dataSummary = "load \(f.path), split \(fractions(spec.data.split))"
            dataInputs = [f.resolvedPath]
        case .text(let t):
            dataSummary = "read the text corpus \(t.path) as byte tokens, split each domain's stream \(fractions(spec.data.split)) in contiguous blocks"
            dataInputs = [t.resolvedPath]
        }
        tasks.append(PlanTask(id: "data", kind: .data, dependsOn: [], workers: 1, inputs: dataInputs,
                              output: "tasks/data.h5", summary: dataSummary))
        if spec.split.strategy == .branch { return Plan(name: spec.name, tasks: tasks + branchTasks(spec)) }
        // Sparse upcycling: the MoE model starts from a dense one, trained here first
        // (`split.pretrain_epochs` or `split.pretrain_steps`) or given as a checkpoint (`split.upcycle_from`).
        var trainDeps = ["data"]
        var trainInputs = ["tasks/data.h5:/data/train", "tasks/data.h5:/data/val"]
        // MoEfication (`neurons`): the same dense pre-training; the split into experts happens at
        // the start of `train` (see `Moefication`), so it needs no task of its own.
        let neurons = spec.split.strategy == .neurons
        if (spec.split.strategy == .replicate || neurons) && spec.split.pretrains {
            tasks.append(PlanTask(
                id: "pretrain", kind: .pretrain, dependsOn: ["data"], workers: 1,
                inputs: ["tasks/data.h5:/data/train", "tasks/data.h5:/data/val"], output: "tasks/pretrain.h5",
                summary: "pre-train the dense \(spec.modelWords()) for \(spec.pretrainLength), to \(neurons ? "moefy" : "upcycle")"))
            trainDeps = ["pretrain"]
            trainInputs.append("tasks/pretrain.h5:/model")
        } else if spec.split.strategy == .replicate, let source = spec.split.resolvedUpcycleFrom {
            trainInputs.append(source)
        }
        let upcycled = trainInputs.count <= 2 ? ""
            : neurons ? ", moefied from the dense model (\(spec.split.method.rawValue) split of its FFN units)"
            : ", upcycled from the dense model"
        tasks.append(PlanTask(
            id: "train", kind: .train, dependsOn: trainDeps, workers: groupSize(spec),
            inputs: trainInputs,
            output: "tasks/train.h5",
            summary: spec.split.strategy == .layerwise ? layerwiseSummary(spec) : "train \(modelKind(spec)) \(spec.modelWords(blocks: true)) for \(spec.trainingLength(epochs: spec.train.epochs)), \(spec.train.optimizer.rawValue) lr \(spec.train.lr)\(upcycled)\(parallelSummary(spec))"))
        // Expert merging (`replicate` with `fusion.method: average`): the MoE collapsed into a dense model.
        if spec.split.strategy == .replicate, spec.fusion.method == .average {
            tasks.append(PlanTask(
                id: "fuse", kind: .fuse, dependsOn: ["train"], workers: 1,
                inputs: ["tasks/train.h5:/model", "tasks/train.h5:/router", "tasks/data.h5:/data/val", "tasks/data.h5:/data/test"],
                output: "tasks/fuse.h5",
                summary: "merge each MoE layer's \(spec.experts) experts into one dense FFN (\(spec.fusion.weights == .dataSize ? "weighted by routing load" : spec.fusion.weights.keyword.map { "\($0) weights" } ?? "explicit weights")); measure the MoE and the merged model on val and test"))
            var last = "fuse"
            if let f = spec.fusion.finetune {
                tasks.append(finetuneTask(spec, f, after: "fuse", what: "the merged dense model"))
                last = "finetune"
            }
            tasks.append(PlanTask(
                id: "evaluate", kind: .evaluate, dependsOn: [last], workers: 1,
                inputs: ["tasks/train.h5:/model", "tasks/fuse.h5:/model"] + (last == "fuse" ? [] : ["tasks/finetune.h5:/model"])
                    + spec.eval.splits.map { "tasks/data.h5:/data/\($0.rawValue)" },
                output: "tasks/evaluate.h5",
                summary: "evaluate the MoE model, the merged dense model" + (last == "fuse" ? " (final)" : " and the fine-tuned one (final)") + " on "
                    + spec.eval.splits.map(\.rawValue).joined(separator: ", ")))
            return Plan(name: spec.name, tasks: tasks)
        }
        let finalTask = spec.fusion.finetune == nil ? "train" : "finetune"
        if let f = spec.fusion.finetune {
            tasks.append(finetuneTask(spec, f, after: "train", what: "the stacked model"))
        }
        tasks.append(PlanTask(
            id: "evaluate", kind: .evaluate, dependsOn: [finalTask], workers: 1,
            inputs: (finalTask == "train" ? [] : ["tasks/train.h5:/model"]) + ["tasks/\(finalTask).h5:/model"] + spec.eval.splits.map { "tasks/data.h5:/data/\($0.rawValue)" },
            output: "tasks/evaluate.h5",
            summary: "evaluate the final model on " + spec.eval.splits.map(\.rawValue).joined(separator: ", ")))
        return Plan(name: spec.name, tasks: tasks)
    }

    /// Processes of the training task: a group of `parallelism.workers` in `data`, `expert` and
    /// `pipeline` mode (they train one model together), else one.
    static func groupSize(_ spec: ExperimentSpec) -> Int {
        switch spec.parallelism.mode {
        case .data, .expert, .pipeline: return spec.parallelism.workers
        case .none, .branch: return 1
        }
    }

    private static func parallelSummary(_ spec: ExperimentSpec) -> String {
        let n = spec.parallelism.workers
        switch spec.parallelism.mode {
        case .data:
            let c = spec.parallelism.compression
            return ", data-parallel over \(n) worker\(n == 1 ? "" : "s")" + (c == .none ? "" : " (\(c.rawValue)-compressed gradients)")
        case .expert: return ", expert-parallel over \(n) worker\(n == 1 ? "" : "s")"
        default: return ""
        }
    }

    /// "dense", or the MoE layers of a `replicate` split: "MoE (8 experts, topk k=2, blocks 0, 1)".
    private static func modelKind(_ spec: ExperimentSpec) -> String {
        guard spec.experts > 1, spec.split.strategy == .replicate || spec.split.strategy == .neurons else { return "dense" }
        let width = spec.split.strategy == .neurons ? " of width \(spec.model.ffn / spec.experts)" : ""
        return "MoE (\(spec.experts) experts\(width), \(spec.router.type.rawValue) k=\(spec.router.k), \(spec.model.moeBlocks.summary(blocks: spec.model.blocks)))"
    }

    private static func fractions(_ f: DataSpec.Fractions) -> String {
        "\(f.train)/\(f.val)/\(f.test)"
    }
}
