import MoECore
import MoEData
import MoEFusion
import MoEHDF5
import MoENN
import MoESpec
import MoEStore

extension NamedTensors {
    /// A model's parameters as the fusion methods see them (checkpoint names and order).
    init(parameters: [Parameter]) {
        self.init(parameters.map { (name: $0.name, shape: $0.shape, values: Array($0.value.buffer)) })
    }
}

/// What the fuse task measures any parameter set with the experts' architecture through, whatever
/// the model kind: validation and test loss/accuracy of the whole splits (no dropout), the same
/// on the validation data of some domains only (the barriers of domain experts), and the
/// diagonal Fisher on validation batches. `MLPFusionProbe` (residual MLP, classification) and
/// `LMFusionProbe` (transformer LM, next-token prediction by the §5.4 protocol) implement it.
protocol FusionProbe: AnyObject {
    /// Classes of the prediction (mlp: classes; LM: the vocabulary): a uniform guess has loss
    /// ln(classes) and accuracy 1/classes (the collapse check's chance level).
    var classes: Int { get }
    /// The domain ids the validation split holds, ascending (nil when the data has none).
    var validationDomains: [Int]? { get }
    /// Validation (loss, accuracy) of `tensors` on the whole split (`domains` nil) or on the
    /// validation data of `domains` only.
    func validation(_ tensors: NamedTensors, domains: Set<Int>?) -> (loss: Double, accuracy: Double)
    /// Every metric of `/fusion/metrics/<model>`: validation and test loss and accuracy (test NaN
    /// when the test split is empty).
    func metrics(_ tensors: NamedTensors) -> FuseTask.Metrics
    /// The diagonal empirical Fisher of `tensors` (`FisherAccumulator`) from at most `batches`
    /// validation batches of `rows` items, and the number of batches used.
    func fisher(_ tensors: NamedTensors, batches: Int, rows: Int) throws -> (fisher: NamedTensors, batches: Int)
    /// (loss, accuracy) of one point of an interpolation curve on the validation data of
    /// `domains`: `validation` for the MLP; for LMs on a fixed subset (`curveSubset`).
    func curvePoint(_ tensors: NamedTensors, domains: Set<Int>?) -> (loss: Double, accuracy: Double)
    /// What `curvePoint` measures besides the domains, for the curve's `data` attribute (nil: all of it).
    var curveSubset: String? { get }
}

extension FusionProbe {
    func curvePoint(_ tensors: NamedTensors, domains: Set<Int>?) -> (loss: Double, accuracy: Double) {
        validation(tensors, domains: domains)
    }

    var curveSubset: String? { nil }
}

extension FusionProbe {
    /// Validation (loss, accuracy) of `tensors` on the whole split.
    func validation(_ tensors: NamedTensors) -> (loss: Double, accuracy: Double) { validation(tensors, domains: nil) }
}

extension Parameter {
    /// Copies `tensors[name]` into this parameter's value (names and sizes were validated).
    func load(from tensors: NamedTensors) {
        tensors.values[name]!.withUnsafeBufferPointer { value.data.update(from: $0.baseAddress!, count: value.count) }
    }
}

/// The residual-MLP probe: one model instance; loss and accuracy over the split's rows, in
/// batches of `eval.batch_size`.
final class MLPFusionProbe: FusionProbe {
    let model: ResidualMLP
    let val: Dataset
    let test: Dataset
    let batchSize: Int
    private var subsets: [[Int]: Dataset] = [:]

    init(config: ModelConfig, val: Dataset, test: Dataset, batchSize: Int) {
        model = ResidualMLP(config: config, seed: 0)
        self.val = val
        self.test = test
        self.batchSize = batchSize
    }

    var classes: Int { model.config.classes }

    var validationDomains: [Int]? { val.domain.map { Set($0).sorted() } }

    /// Copies `tensors` into the probe's parameters (names and shapes were validated).
    func load(_ tensors: NamedTensors) {
        for p in model.parameters { p.load(from: tensors) }
    }

    /// On `domains`: the validation rows of those domains, in split order.
    func validation(_ tensors: NamedTensors, domains: Set<Int>?) -> (loss: Double, accuracy: Double) {
        var data = val
        if let domains, let domain = val.domain {
            let key = domains.sorted()
            if let cached = subsets[key] {
                data = cached
            } else {
                data = val.subset(domain.indices.filter { domains.contains(domain[$0]) })
                subsets[key] = data
            }
        }
        load(tensors)
        return model.evaluate(x: data.x, labels: data.y, domains: data.domain, batchSize: batchSize)
    }

    func metrics(_ tensors: NamedTensors) -> FuseTask.Metrics {
        let v = validation(tensors)
        let t = test.count > 0 ? model.evaluate(x: test.x, labels: test.y, domains: test.domain, batchSize: batchSize) : (loss: Double.nan, accuracy: Double.nan)
        return FuseTask.Metrics(valLoss: v.loss, valAccuracy: v.accuracy, testLoss: t.loss, testAccuracy: t.accuracy)
    }

    /// The squared gradient of the mean cross-entropy on each of the first `batches` validation
    /// batches of `rows` rows (consecutive, from row 0; fewer when the split is shorter),
    /// averaged over the batches. Every expert is measured on the same batches, so their Fishers
    /// are comparable.
    ///
    /// The gradients come from a training-mode forward (backward needs it) of a copy of the model
    /// with dropout 0, so they are the gradients of the deterministic evaluation loss.
    func fisher(_ tensors: NamedTensors, batches: Int, rows: Int) throws -> (fisher: NamedTensors, batches: Int) {
        var config = model.config
        config.dropout = 0
        let model = ResidualMLP(config: config, seed: 0)
        for p in model.parameters { p.load(from: tensors) }
        var acc = FisherAccumulator(like: tensors)
        let n = val.count
        var start = 0
        try val.y.withUnsafeBufferPointer { labels in
            while acc.batches < batches && start < n {
                let r = min(rows, n - start)
                model.parameters.zeroGrad()
                let domains = val.domain.map { Array($0[start..<(start + r)]) }
                try withOptionalPointer(domains) { d in
                    model.forward(val.x.row(start), labels: labels.baseAddress! + start, rows: r,
                                  context: ForwardContext(training: true, step: 0, seed: 0, domains: d))
                    model.backward()
                    try acc.add(gradients: Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, Array($0.grad.buffer)) }))
                }
                start += r
            }
        }
        return (acc.fisher(), acc.batches)
    }

    private func withOptionalPointer<R>(_ a: [Int]?, _ body: (UnsafePointer<Int>?) throws -> R) rethrows -> R {
        guard let a else { return try body(nil) }
        return try a.withUnsafeBufferPointer { try body($0.baseAddress) }
    }
}

/// The experts' architecture, whatever their model kind: what the fuse task builds models of
/// (θ₀ without pre-training, the fused checkpoint, the probe, BTX's MoE model).
enum ExpertArchitecture {
    case mlp(ModelConfig, normalization: Standardization?)
    case transformer(TransformerConfig)

    init(_ model: any TrainableModel, normalization: Standardization?) throws {
        if let mlp = model as? ResidualMLP {
            self = .mlp(mlp.config, normalization: normalization)
        } else if let lm = model as? TransformerLM {
            self = .transformer(lm.config)
        } else {
            throw RuntimeError.usage("fusion does not know model kind \(model.checkpointKind)")
        }
    }

    /// The checkpoint `kind` (`mlp`, `transformer`).
    var kind: String {
        switch self {
        case .mlp: return ResidualMLP.checkpointKind
        case .transformer: return TransformerLM.checkpointKind
        }
    }

    /// The input standardisation an mlp's checkpoints carry (nil for an LM).
    var normalization: Standardization? {
        if case .mlp(_, let norm) = self { return norm }
        return nil
    }

    /// The same architecture with the MoE blocks of `moe` (BTX's model).
    func with(moe: MoEConfig) -> ExpertArchitecture {
        switch self {
        case .mlp(var config, let norm):
            config.moe = moe
            return .mlp(config, normalization: norm)
        case .transformer(var config):
            config.moe = moe
            return .transformer(config)
        }
    }

    /// A model of this architecture with the kind's initialisation drawn from `seed`.
    func model(seed: UInt64) -> any TrainableModel {
        switch self {
        case .mlp(let config, _): return ResidualMLP(config: config, seed: seed)
        case .transformer(let config): return TransformerLM(config: config, seed: seed)
        }
    }

    /// A model of this architecture holding `tensors` (every parameter, by name).
    func model(_ tensors: NamedTensors) -> any TrainableModel {
        let model = model(seed: 0)
        for p in model.parameters { p.load(from: tensors) }
        return model
    }
}

extension FuseTask {
    /// The experts' checkpoints as named tensors, their architecture and training-set sizes.
    struct Experts {
        var tensors: [NamedTensors]
        var architecture: ExpertArchitecture
        /// n_i of `fusion.weights: data_size`: the expert's `train_samples` (mlp) or `train_tokens` (LM).
        var samples: [Int]
        /// The checkpoint of each expert, `expert-<i>/<group>` (`model`, or `best` by `fusion.source`).
        var sources: [String]
    }

    /// The experts' checkpoints (`tasks/expert-<i>.h5:/model`), of any one model kind, as named
    /// tensors, with their architecture (and an mlp's input normalisation, from expert 0) and
    /// their training-set sizes (the task file's `train_samples`, or `train_tokens` for an LM).
    func loadExperts() throws -> Experts {
        var experts: [NamedTensors] = [], samples: [Int] = [], sources: [String] = []
        var architecture: ExpertArchitecture?
        for i in 0..<spec.experts {
            let path = layout.taskFile("expert-\(i)")
            let file = try H5File.open(path)
            let group = spec.handoffGroup(path, layout: layout) ?? "model"
            sources.append("expert-\(i)/" + group)
            let (model, norm) = try Checkpoint.loadAnyModel(from: file, at: group)
            if let first = architecture, first.kind != model.checkpointKind {
                throw RuntimeError.io(path: path + ":/model", message: "cannot fuse a \(model.checkpointKind) model with expert 0's \(first.kind) model")
            }
            if architecture == nil { architecture = try ExpertArchitecture(model, normalization: norm) }
            experts.append(NamedTensors(parameters: model.parameters))
            let sizeAttribute = file.hasAttribute("train_samples") ? "train_samples" : "train_tokens"
            samples.append(Int(try file.attribute(sizeAttribute, as: Int64.self)))
        }
        return Experts(tensors: experts, architecture: architecture!, samples: samples, sources: sources)
    }

    /// The branch base θ₀ of the task-vector methods (`/models/seed`): the `pretrain` task's model,
    /// or the initialisation from the spec seed (the seed every shared-init expert starts from; with
    /// `split.seed_model: independent` there is no common start and this is the reference only).
    func loadBase(_ architecture: ExpertArchitecture) throws -> (tensors: NamedTensors, stored: Bool) {
        if spec.split.pretrains {
            let (model, _) = try Checkpoint.loadAnyModel(from: try H5File.open(layout.taskFile("pretrain")),
                                                         at: spec.handoffGroup(layout.taskFile("pretrain"), layout: layout) ?? "model")
            return (NamedTensors(parameters: model.parameters), true)
        }
        return (NamedTensors(parameters: architecture.model(seed: spec.seed64).parameters), false)
    }

    /// The probe of the experts' kind on the validation and test data (validation data are
    /// required: coefficients, barriers and the collapse check are measured on them).
    func makeProbe(_ architecture: ExpertArchitecture) throws -> any FusionProbe {
        switch architecture {
        case .mlp(let config, _):
            let (val, test) = try fusionSplits()
            try TrainTask.checkDomains(config, val, test)
            return MLPFusionProbe(config: config, val: val, test: test, batchSize: spec.eval.batchSize)
        case .transformer(let config):
            let corpus = try TextDataTask.load(layout: layout)
            guard corpus.evaluationWindows(.val, context: config.context).contains(where: { $0.count > 0 }) else {
                throw RuntimeError.io(path: layout.taskFile("data"),
                                      message: "fusion needs validation windows of \(config.context + 1) tokens (no domain's val stream is that long)")
            }
            return LMFusionProbe(config: config, corpus: corpus, batchSize: spec.eval.batchSize)
        }
    }

    /// `Fusion.validate` of the experts (and the base) as a one-line error naming the tensor and
    /// the expert's checkpoint file.
    func checkArchitectures(_ experts: [NamedTensors], base: NamedTensors) throws {
        do {
            try Fusion.validate(experts)
            try Fusion.validate(experts, base: base)
        } catch let error as FusionError {
            throw Self.architectureError(error, layout: layout, basePath: spec.split.pretrains ? layout.taskFile("pretrain") : "the seed initialisation")
        }
    }

    /// "tasks/expert-2.h5:/model: tensor blocks/0/ffn/w1 has shape [8, 16] in model 2, expected [32, 16]; experts must share one architecture".
    static func architectureError(_ error: FusionError, layout: RunLayout, basePath: String) -> RuntimeError {
        let model: Int?
        switch error {
        case .missingTensor(_, let m), .extraTensor(_, let m), .shapeMismatch(_, _, _, let m): model = m
        case .invalidParameter: model = nil
        }
        let where_ = model.map { $0 == FusionError.baseModel ? basePath : layout.taskFile("expert-\($0)") + ":/model" } ?? layout.taskFile("fuse")
        return RuntimeError.io(path: where_, message: "cannot fuse: \(error); the experts must share one architecture")
    }
}
