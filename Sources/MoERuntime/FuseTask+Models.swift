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

/// One model instance through which the fuse task measures any parameter set with the experts'
/// architecture: validation and test loss/accuracy (whole splits, in batches of
/// `eval.batch_size`, no dropout) and the diagonal Fisher on validation batches.
final class FusionProbe {
    let model: ResidualMLP
    let val: Dataset
    let test: Dataset
    let batchSize: Int

    init(config: ModelConfig, val: Dataset, test: Dataset, batchSize: Int) {
        model = ResidualMLP(config: config, seed: 0)
        self.val = val
        self.test = test
        self.batchSize = batchSize
    }

    /// Copies `tensors` into the probe's parameters (names and shapes were validated).
    func load(_ tensors: NamedTensors) {
        for p in model.parameters {
            tensors.values[p.name]!.withUnsafeBufferPointer { p.value.data.update(from: $0.baseAddress!, count: p.value.count) }
        }
    }

    /// Validation (loss, accuracy) of `tensors`.
    func validation(_ tensors: NamedTensors) -> (loss: Double, accuracy: Double) {
        load(tensors)
        return model.evaluate(x: val.x, labels: val.y, domains: val.domain, batchSize: batchSize)
    }

    /// Validation (loss, accuracy) of `tensors` on `data` (a subset of the validation split).
    func evaluate(_ tensors: NamedTensors, on data: Dataset) -> (loss: Double, accuracy: Double) {
        load(tensors)
        return model.evaluate(x: data.x, labels: data.y, domains: data.domain, batchSize: batchSize)
    }

    /// Every metric of `/fusion/metrics/<model>`: validation and test loss and accuracy.
    func metrics(_ tensors: NamedTensors) -> FuseTask.Metrics {
        let v = validation(tensors)
        let t = test.count > 0 ? model.evaluate(x: test.x, labels: test.y, domains: test.domain, batchSize: batchSize) : (loss: Double.nan, accuracy: Double.nan)
        return FuseTask.Metrics(valLoss: v.loss, valAccuracy: v.accuracy, testLoss: t.loss, testAccuracy: t.accuracy)
    }

    /// The diagonal empirical Fisher of `tensors` (`FisherAccumulator`): the squared gradient of
    /// the mean cross-entropy on each of the first `batches` validation batches of `rows` rows
    /// (consecutive, from row 0; fewer when the split is shorter), averaged over the batches.
    /// Every expert is measured on the same batches, so their Fishers are comparable.
    ///
    /// The gradients come from a training-mode forward (backward needs it) of a copy of the model
    /// with dropout 0, so they are the gradients of the deterministic evaluation loss.
    func fisher(_ tensors: NamedTensors, batches: Int, rows: Int) throws -> (fisher: NamedTensors, batches: Int) {
        var config = model.config
        config.dropout = 0
        let model = ResidualMLP(config: config, seed: 0)
        for p in model.parameters {
            tensors.values[p.name]!.withUnsafeBufferPointer { p.value.data.update(from: $0.baseAddress!, count: p.value.count) }
        }
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

extension FuseTask {
    /// The experts' checkpoints (`tasks/expert-<i>.h5:/model`) as named tensors, with their
    /// configuration and input normalisation (from expert 0) and their `train_samples`.
    func loadExperts() throws -> (experts: [NamedTensors], config: ModelConfig, norm: Standardization?, samples: [Int]) {
        var experts: [NamedTensors] = [], samples: [Int] = []
        var config: ModelConfig?, norm: Standardization?
        for i in 0..<spec.experts {
            let path = layout.taskFile("expert-\(i)")
            let file = try H5File.open(path)
            let (model, n) = try Checkpoint.loadModel(from: file, at: "model", for: "fusing experts into one model")
            if config == nil { (config, norm) = (model.config, n) }
            experts.append(NamedTensors(parameters: model.parameters))
            samples.append(Int(try file.attribute("train_samples", as: Int64.self)))
        }
        return (experts, config!, norm, samples)
    }

    /// The branch base θ₀ of the task-vector methods (`/models/seed`): the `pretrain` task's model,
    /// or the initialisation from the spec seed (the seed every shared-init expert starts from; with
    /// `split.seed_model: independent` there is no common start and this is the reference only).
    func loadBase(config: ModelConfig) throws -> (tensors: NamedTensors, stored: Bool) {
        if spec.split.pretrains {
            let (model, _) = try Checkpoint.loadAnyModel(from: try H5File.open(layout.taskFile("pretrain")), at: "model")
            return (NamedTensors(parameters: model.parameters), true)
        }
        return (NamedTensors(parameters: ResidualMLP(config: config, seed: spec.seed64).parameters), false)
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
