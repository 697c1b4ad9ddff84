import MoEHDF5
import MoENN
import MoESpec
import MoEStore

/// `train.init_from` (issue 17 item 6): the run's first trained model starts from a given
/// checkpoint's parameters instead of its random initialisation — continued training, or
/// fine-tuning on other data. The optimizer starts fresh (its state belongs to another run).
///
/// **Which task.** The `pretrain` task when the run pre-trains; else the `train` task (`none`,
/// `replicate` without `upcycle_from`, and `layerwise`, whose stacked dense model starts from
/// the checkpoint: every stage gets its blocks, the first the embedding, the last the head; the
/// auxiliary heads of stage-local training start fresh); with `branch` and no pre-training,
/// every expert (the shared seed model). `CrossFieldRules` refuses it where nothing would read it.
///
/// **Compatibility.** The checkpoint's model kind must be the task's, and its tensors must be
/// exactly the model's: every parameter present with the same shape, and no other tensor
/// (`input/{mean, std}` aside, the data's). The first difference is one line naming the tensor.
enum InitFrom {
    /// The checkpoint `role` starts from, or nil.
    static func source(_ spec: ExperimentSpec, role: TrainTask.Role) -> String? {
        guard let path = spec.train.resolvedInitFrom else { return nil }
        switch role {
        case .pretrain: return path
        case .train: return spec.split.pretrains || spec.split.upcycleFrom != nil ? nil : path
        case .expert: return spec.split.pretrains ? nil : path
        case .finetune: return nil
        }
    }

    /// Why the checkpoint cannot start `parameters` (a model of `kind`), as one line; nil when
    /// it can, in which case its values are in `parameters`.
    static func load(into parameters: [Parameter], kind: String, from path: String) throws -> String? {
        let file = try H5File.open(path)
        guard let group = Evaluation.modelGroup(in: file) else {
            return "holds no model to start from (expected a checkpoint group, /model or /models/final)"
        }
        let (found, _) = try Checkpoint.readKindAndConfig(from: file, at: group)
        guard found == kind else { return "holds a \(found) model at \(group); this run trains a \(kind) model" }
        do {
            try Checkpoint.loadParameters(into: parameters, from: file, at: group)
        } catch Checkpoint.Error.mismatch(_, let tensor, let reason) {
            return "\(tensor): \(reason)"
        }
        let names = Set(parameters.map(\.name))
        if let extra = try tensors(in: file.openGroup(group), prefix: "").first(where: { !names.contains($0) && !$0.hasPrefix("input/") }) {
            return "\(try file.openGroup(group).absolutePath(extra)): not a tensor of this run's model (the checkpoint's architecture differs)"
        }
        return nil
    }

    /// Every dataset below `group`, by path, sorted.
    private static func tensors(in group: H5Group, prefix: String) throws -> [String] {
        try group.children().sorted().flatMap { name -> [String] in
            let path = prefix.isEmpty ? name : prefix + "/" + name
            return group.kind(of: name) == .group ? try tensors(in: try group.openGroup(name), prefix: path) : [path]
        }
    }

    /// Loads the checkpoint into `parameters` or throws the reason, naming the file.
    static func start(_ parameters: [Parameter], kind: String, from path: String, log: RunLog, id: String) throws {
        if let problem = try load(into: parameters, kind: kind, from: path) {
            throw RuntimeError.io(path: path, message: "train.init_from: " + problem)
        }
        log.info("\(id): initialised from the model in \(path) (train.init_from)")
    }

    /// The `train` task of `split.strategy: layerwise` (local or GPipe): its dense `model`, whose
    /// stages are views of its parameters, starts from `train.init_from` when the spec names one.
    static func startStaged<Model: StagedModel>(_ model: Model, spec: ExperimentSpec, log: RunLog, id: String) throws {
        guard let path = spec.train.resolvedInitFrom else { return }
        try start(model.parameters, kind: Model.checkpointKind, from: path, log: log, id: id)
    }

    /// Pre-flight: a dry run into a freshly built model, as a spec error at the key.
    static func check(_ spec: ExperimentSpec, _ parameters: [Parameter], kind: String) throws {
        guard let written = spec.train.initFrom, let path = spec.train.resolvedInitFrom else { return }
        func fail(_ message: String) -> SpecError { spec.positions.error("train.init_from", "\(written): \(message)") }
        if let problem = H5Signature.problem(at: path) { throw fail(problem.description) }
        do {
            if let problem = try load(into: parameters, kind: kind, from: path) { throw fail(problem) }
        } catch let error as SpecError {
            throw error
        } catch {
            throw fail("\(error)")
        }
    }
}
