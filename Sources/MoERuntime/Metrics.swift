import MoEHDF5

/// Metric series of a training task, stored as `/metrics/step` (int64) and
/// `/metrics/<series>` (float64), one row per log step; validation metrics, computed at their
/// own interval, as `/metrics/eval/step` and `/metrics/eval/<series>`. A model with MoE layers
/// adds `aux_loss`: the weighted auxiliary losses that training adds to the cross-entropy,
/// `aux_loss · mean_layers(E Σ f_i P_i) + z_loss · mean_layers(mean lse²)`, averaged over the
/// window's samples like `train_loss`.
///
/// What a training step is made of (`Items`) decides the throughput series: a feature model's
/// step trains on rows, logged as `epoch` and `samples_per_second`; a language model's on
/// `batch_size` windows of `context` predicted tokens, logged as `tokens_per_second`
/// (= batch_size · context · steps / s; it has no `epoch` series, its windows being sampled),
/// with `train_loss` and `train_accuracy` per predicted token.
struct MetricsLog {
    /// What the items a step scores are, and how throughput is named after them.
    enum Items {
        /// Rows of feature data (the residual MLP).
        case samples
        /// Predicted tokens of text windows (the transformer LM).
        case tokens

        /// The `/metrics` throughput series: items per second of wall time.
        var rateSeries: String { self == .samples ? "samples_per_second" : "tokens_per_second" }
        /// The progress line's unit of that rate.
        var rateUnit: String { self == .samples ? "samples/s" : "tokens/s" }
    }

    static let denseSeries = ["train_loss", "train_accuracy", "lr", "grad_norm", "epoch", "samples_per_second"]
    static let tokenSeries = ["train_loss", "train_accuracy", "lr", "grad_norm", "tokens_per_second"]
    static let evalSeries = ["val_loss", "val_accuracy"]

    /// The series of this task, in writing order.
    let trainSeries: [String]
    var steps: [Int64] = []
    var series: [String: [Double]]
    var evalSteps: [Int64] = []
    var evalValues: [String: [Double]] = Dictionary(uniqueKeysWithValues: evalSeries.map { ($0, []) })

    /// Per-step costs of a task run by a group (data or expert parallel): means over the steps
    /// since the previous row of the seconds this rank spent computing, moving data and waiting
    /// for peers, the bytes it sent and received, and its gradient compression's relative error.
    static let communicationSeries = ["compute_seconds", "communication_seconds", "wait_seconds",
                                      "bytes_sent", "bytes_received", "compression_error"]

    init(moe: Bool = false, communication: Bool = false, items: Items = .samples) {
        trainSeries = (items == .samples ? Self.denseSeries : Self.tokenSeries) + (moe ? ["aux_loss"] : []) + (communication ? Self.communicationSeries : [])
        series = Dictionary(uniqueKeysWithValues: trainSeries.map { ($0, []) })
    }

    mutating func log(step: Int, _ values: [String: Double]) {
        steps.append(Int64(step))
        for name in trainSeries { series[name]!.append(values[name] ?? .nan) }
    }

    mutating func logEval(step: Int, loss: Double, accuracy: Double) {
        evalSteps.append(Int64(step))
        evalValues["val_loss"]!.append(loss)
        evalValues["val_accuracy"]!.append(accuracy)
    }

    func write(to location: H5Location) throws {
        let group = try location.createGroup("metrics")
        try group.createDataset("step", steps)
        for name in trainSeries { try group.createDataset(name, series[name]!) }
        try group.createDataset("eval/step", evalSteps)
        for name in Self.evalSeries { try group.createDataset("eval/" + name, evalValues[name]!) }
    }

    /// The series written by `write` (`moe`: the task's model has MoE layers).
    static func read(from location: H5Location, moe: Bool, communication: Bool = false, items: Items = .samples) throws -> MetricsLog {
        var m = MetricsLog(moe: moe, communication: communication, items: items)
        let group = try location.openGroup("metrics")
        m.steps = try group.read("step", as: Int64.self).values
        for name in m.trainSeries { m.series[name] = try group.read(name, as: Double.self).values }
        m.evalSteps = try group.read("eval/step", as: Int64.self).values
        for name in evalSeries { m.evalValues[name] = try group.read("eval/" + name, as: Double.self).values }
        return m
    }
}
