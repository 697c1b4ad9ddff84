import MoECore
import MoEHDF5
import MoENN
import MoESpec

/// The best model of a training task and early stopping (issue 17 item 5).
///
/// **Best.** After every validation the loop compares `eval.metric` (`val_loss`, lower is better;
/// `val_accuracy`, higher is better) with the best value so far; a strictly better value makes
/// the current parameters the best model (ties keep the earlier step). The finished task file
/// stores it as `/best` (a model checkpoint, ARCHITECTURE §5.3) with the attributes `step`,
/// `metric` and `value`, next to the final `/model`.
///
/// **Early stopping** (`train.early_stopping: {patience, min_delta}`, Prechelt 1998; the Keras
/// rule): a validation *improves* when it beats the reference — the value of the last improving
/// validation — by more than `min_delta`; training stops after `patience` validations in a row
/// without improvement.
///
/// **Determinism and resume.** Both decisions are functions of the logged validation series
/// (`/metrics/eval`), which every checkpoint holds; the best parameters go into every
/// checkpoint as `best/<parameter>` (attribute `step`), so a run resumed from any checkpoint
/// picks the same best model and stops at the same step as the run that was never interrupted.
struct BestModel {
    let metric: EvalSpec.Metric
    /// Step of the best validation, and the parameter values then (rank 0's view).
    private(set) var step: Int?
    private var values: [String: [Float]] = [:]

    init(metric: EvalSpec.Metric) { self.metric = metric }

    /// `a` is strictly better than `b` by `margin`.
    static func improves(_ a: Double, on b: Double, margin: Double = 0, metric: EvalSpec.Metric) -> Bool {
        metric.higherIsBetter ? a > b + margin : a < b - margin
    }

    /// The index of the best value of `series` (the first of equal ones), nil when empty.
    static func bestIndex(_ series: [Double], metric: EvalSpec.Metric) -> Int? {
        var best: Int?
        for (i, v) in series.enumerated() where best == nil || improves(v, on: series[best!], metric: metric) { best = i }
        return best
    }

    /// Whether early stopping ends training after the last value of `series`: the last
    /// `patience` values did not improve on the reference by more than `minDelta`.
    static func shouldStop(_ series: [Double], _ rule: TrainSpec.EarlyStopping, metric: EvalSpec.Metric) -> Bool {
        var reference: Double?
        var waited = 0
        for v in series {
            if let r = reference, !improves(v, on: r, margin: rule.minDelta, metric: metric) {
                waited += 1
            } else {
                reference = v
                waited = 0
            }
        }
        return waited >= rule.patience
    }

    /// After a validation at `step` whose values are the last of `series`: keeps `parameters`
    /// when it is the best so far.
    mutating func update(series: [Double], step: Int, parameters: [Parameter]) {
        guard let last = series.indices.last, Self.bestIndex(series, metric: metric) == last else { return }
        self.step = step
        values = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, Array($0.value.buffer)) })
    }

    /// `best/<parameter>` and the attribute `best_step`, in a checkpoint file.
    func writeState(to file: H5File) throws {
        guard let step else { return }
        let group = try file.createGroup("best")
        try group.setAttribute("step", Int64(step))
        for (name, v) in values.sorted(by: { $0.key < $1.key }) { try group.createDataset(name, v) }
    }

    /// Reads what `writeState` wrote (nothing before the first validation).
    mutating func readState(from file: H5File, parameters: [Parameter]) throws {
        guard file.exists("best") else { return }
        let group = try file.openGroup("best")
        step = Int(try group.attribute("step", as: Int64.self))
        values = [:]
        for p in parameters { values[p.name] = try group.read(p.name, as: Float.self).values }
    }

    /// Runs `body` with the best values in `parameters`, then puts the current ones back.
    func withBest(in parameters: [Parameter], _ body: () throws -> Void) throws {
        let current = parameters.map { Array($0.value.buffer) }
        for p in parameters {
            guard let v = values[p.name], v.count == p.value.buffer.count else { continue }
            _ = p.value.buffer.update(from: v)
        }
        defer { for (p, v) in zip(parameters, current) { _ = p.value.buffer.update(from: v) } }
        try body()
    }
}
