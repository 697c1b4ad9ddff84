import Foundation
import MoEHDF5
import MoENN

/// Sums over the steps since the last metrics row of a training task, whatever its step
/// strategy. Kept in every checkpoint as `/metrics/window`, so a resumed task's next row equals
/// an uninterrupted run's.
///
/// Saved layout (float64 `[12 + 2·S]`, attribute `fields` naming them, attribute `stages` = S):
///
///     loss aux correct scored steps compute_seconds communication_seconds wait_seconds
///     bytes_sent bytes_received compression_error seconds stage_loss[S] stage_correct[S]
///
/// `loss` is Σ mean batch loss · batch items, `aux` the same for the MoE auxiliary losses,
/// `scored` the items; the costs are sums of the steps' `GroupCosts`; S = 0 but for layer-local
/// training. A checkpoint of moe-run before this layout (no `fields`) holds one of three
/// positional layouts, read by `Legacy`.
struct TrainingWindow: Equatable {
    var loss = 0.0, aux = 0.0, correct = 0.0, scored = 0.0, steps = 0.0
    var costs = GroupCosts()
    var stageLoss: [Double], stageCorrect: [Double]
    var since = Date()

    static let fields = "loss aux correct scored steps compute_seconds communication_seconds wait_seconds "
        + "bytes_sent bytes_received compression_error seconds stage_loss[S] stage_correct[S]"

    init(stages: Int = 0) {
        stageLoss = [Double](repeating: 0, count: stages)
        stageCorrect = stageLoss
    }

    var stages: Int { stageLoss.count }

    static func == (a: TrainingWindow, b: TrainingWindow) -> Bool { a.values == b.values }

    /// Adds one step's figures.
    mutating func add(_ r: StepReport) {
        loss += r.sums.lossSum
        aux += r.auxLoss * Double(r.sums.scored)
        correct += Double(r.sums.correct)
        scored += Double(r.sums.scored)
        steps += 1
        costs.seconds += r.costs.seconds
        costs.computeSeconds += r.costs.computeSeconds
        costs.communicationSeconds += r.costs.communicationSeconds
        costs.waitSeconds += r.costs.waitSeconds
        costs.bytesSent += r.costs.bytesSent
        costs.bytesReceived += r.costs.bytesReceived
        costs.compressionError += r.costs.compressionError
        for (s, sums) in r.stages.enumerated() {
            stageLoss[s] += sums.lossSum
            stageCorrect[s] += Double(sums.correct)
        }
    }

    var values: [Double] {
        [loss, aux, correct, scored, steps, costs.computeSeconds, costs.communicationSeconds, costs.waitSeconds,
         costs.bytesSent, costs.bytesReceived, costs.compressionError, costs.seconds] + stageLoss + stageCorrect
    }

    init(values v: [Double], stages: Int) {
        self.init(stages: stages)
        (loss, aux, correct, scored, steps) = (v[0], v[1], v[2], v[3], v[4])
        costs = GroupCosts(seconds: v[11], computeSeconds: v[5], communicationSeconds: v[6], waitSeconds: v[7],
                           bytesSent: v[8], bytesReceived: v[9], compressionError: v[10])
        stageLoss = Array(v[12..<(12 + stages)])
        stageCorrect = Array(v[(12 + stages)...])
    }

    func write(to file: H5File) throws {
        try file.createDataset("metrics/window", values)
        let dataset = try file.openDataset("metrics/window")
        try dataset.setAttribute("fields", Self.fields)
        try dataset.setAttribute("stages", Int64(stages))
    }

    /// The positional `/metrics/window` layouts of moe-run before `fields`, one per training task.
    enum Legacy {
        /// `[loss, aux, correct, rows, steps]` + optionally `[compute, communication, wait, sent, received, compression_error]`.
        case train
        /// `[rows, stage_loss[S], stage_correct[S]]`.
        case layerwise(stages: Int)
        /// `[loss, correct, rows, steps, compute, communication, wait, sent, received, seconds]`.
        case pipeline

        func window(_ v: [Double]) -> TrainingWindow? {
            switch self {
            case .train:
                guard v.count == 5 || v.count == 11 else { return nil }
                let costs = v.count == 11 ? Array(v[5...]) + [0] : [Double](repeating: 0, count: 7)
                return TrainingWindow(values: Array(v[0..<5]) + costs, stages: 0)
            case .layerwise(let e):
                guard v.count == 1 + 2 * e else { return nil }
                var w = TrainingWindow(stages: e)
                (w.scored, w.loss, w.correct) = (v[0], v[e], v[2 * e])
                w.stageLoss = Array(v[1...e])
                w.stageCorrect = Array(v[(e + 1)...])
                return w
            case .pipeline:
                guard v.count == 10 else { return nil }
                return TrainingWindow(values: [v[0], 0, v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], 0, v[9]], stages: 0)
            }
        }
    }

    /// The window saved in `file` by `write`, or by moe-run before it (`legacy`).
    static func read(from file: H5File, stages: Int, legacy: Legacy) throws -> TrainingWindow {
        let v = try file.read("metrics/window", as: Double.self).values
        let dataset = try file.openDataset("metrics/window")
        let saved: TrainingWindow?
        if dataset.hasAttribute("fields") {
            let s = try dataset.attribute("stages", as: Int64.self)
            saved = s == stages && v.count == 12 + 2 * stages ? TrainingWindow(values: v, stages: stages) : nil
        } else {
            saved = legacy.window(v)
        }
        guard let saved else { throw RuntimeError.io(path: file.filePath, message: "metrics/window: \(v.count) values") }
        return saved
    }
}
