import MoEHDF5
import MoENN

/// Router metric series of a training task, one group per MoE layer named by its block index
/// (`/router/<i>/` for `blocks/<i>/moe`), one row per log step (the rows of `/metrics/step`):
///
///     /router/<i>/step              int64   [rows]       the log step (= /metrics/step)
///     /router/<i>/load              float64 [rows, E]    mean assignments per expert per step
///     /router/<i>/dropped_fraction  float64 [rows]       Σ dropped / Σ routed
///     /router/<i>/unused_experts    float64 [rows]       experts that served nothing in the window
///     /router/<i>/gate_entropy      float64 [rows]       (1/Σ T) Σ_t −Σ_e p_te log p_te
///     /router/<i>/load_cv           float64 [rows]       std(load) / mean(load) over experts
///     /router/<i>/max_mean_load     float64 [rows]       max(load) / mean(load)
///     /router/<i>/max_violation     float64 [rows]       max_e c_e / mean(c) − 1, c = selections before capacity
///                                                        (the maximal violation of Wang et al. 2024 / Megatron-Core)
///     /router/<i>/gate_mass         float64 [rows, E]    mean Σ of the served assignments' gates per expert per step
///     /router/<i>/expert_bias       float64 [rows, E]    the selection-only bias after the row's last step
///                                                        (`router.balance: bias` only)
///     /router/<i>/aux_loss          float64 [rows]       raw E · Σ f_i P_i, token-weighted mean
///     /router/<i>/z_loss            float64 [rows]       raw mean lse², token-weighted mean
///
/// Each row summarises the window of steps since the previous row (as `train_loss` does):
/// counts are summed over the window's S steps, then `load_e = Σ load_e / S`. "Routed" and
/// "dropped" are defined by `RouterStepStatistics` (selections for token choice, tokens for
/// expert choice). `std` is the population standard deviation over the E experts.
struct RouterMetricsLog {
    static let series = ["dropped_fraction", "unused_experts", "gate_entropy", "load_cv", "max_mean_load", "max_violation", "aux_loss", "z_loss"]

    /// One MoE layer's series.
    struct Layer {
        let block: Int
        let experts: Int
        var steps: [Int64] = []
        /// Row-major `[rows, experts]`.
        var load: [Double] = []
        var gateMass: [Double] = []
        /// Row-major `[rows, experts]`, with an expert bias only; `bias` is its latest value.
        var expertBias: [Double]?
        var bias: [Float]?
        var values: [String: [Double]] = Dictionary(uniqueKeysWithValues: RouterMetricsLog.series.map { ($0, []) })
        /// The open window: sums since the last row.
        var window: RouterStepStatistics
        var windowSteps = 0

        init(block: Int, experts: Int) {
            self.block = block
            self.experts = experts
            window = RouterStepStatistics(experts: experts)
        }
    }

    var layers: [Layer]
    /// The counts a group sums at every step (kept, not allocated per step).
    private var reduceScratch: [Double] = []

    /// Empty series for the MoE layers of `model` (none for a dense model).
    init(model: ResidualMLP) {
        layers = model.blocks.compactMap { block in
            (block.feedForward as? MoELayer).map { Layer(block: block.index, experts: $0.config.experts) }
        }
    }

    /// Empty series for `moeLayers`, the MoE layer of block `blocks[i]` being `moeLayers[i]`
    /// (any model kind: a transformer LM's routers route each of its batch·context tokens).
    init(moeLayers: [MoELayer], blocks: [Int]) {
        precondition(moeLayers.count == blocks.count, "one block index per MoE layer")
        layers = zip(moeLayers, blocks).map { Layer(block: $1, experts: $0.config.experts) }
    }

    var isEmpty: Bool { layers.isEmpty }

    /// Adds the last training step's routing of every MoE layer to the open window. In a data-
    /// or expert-parallel group, `reduce` sums the counts over the ranks (every rank calls it at
    /// every step), so the series describe the whole batch, as one process would record them
    /// (the balancing and z losses are already the global batch's, see `MoERouter.statisticsReducer`).
    mutating func accumulate(_ model: ResidualMLP, reduce: ((inout [Double]) throws -> Void)? = nil) throws {
        try accumulate(model.moeLayers, reduce: reduce)
    }

    /// `accumulate` over the MoE layers of any model, in block order.
    mutating func accumulate(_ moeLayers: [MoELayer], reduce: ((inout [Double]) throws -> Void)? = nil) throws {
        for (i, moe) in moeLayers.enumerated() {
            var s = moe.router.lastStepStatistics()
            if let reduce {
                let e = s.load.count
                if reduceScratch.count != 4 + 3 * e { reduceScratch = [Double](repeating: 0, count: 4 + 3 * e) }
                (reduceScratch[0], reduceScratch[1], reduceScratch[2], reduceScratch[3]) = (Double(s.tokens), Double(s.routed), Double(s.dropped), s.entropySum)
                for j in 0..<e {
                    reduceScratch[4 + j] = Double(s.load[j])
                    reduceScratch[4 + e + j] = Double(s.selected[j])
                    reduceScratch[4 + 2 * e + j] = s.gateMass[j]
                }
                try reduce(&reduceScratch)
                let v = reduceScratch
                (s.tokens, s.routed, s.dropped, s.entropySum) = (Int(v[0]), Int(v[1]), Int(v[2]), v[3])
                for j in 0..<e { s.load[j] = Int(v[4 + j]); s.selected[j] = Int(v[4 + e + j]); s.gateMass[j] = v[4 + 2 * e + j] }
            }
            if let b = moe.router.expertBias { layers[i].bias = b.value.array }
            var w = layers[i].window
            w.tokens += s.tokens
            for e in 0..<w.load.count { w.load[e] += s.load[e]; w.selected[e] += s.selected[e]; w.gateMass[e] += s.gateMass[e] }
            w.routed += s.routed
            w.dropped += s.dropped
            w.entropySum += s.entropySum
            w.auxLoss += s.auxLoss * Double(s.tokens)
            w.zLoss += s.zLoss * Double(s.tokens)
            layers[i].window = w
            layers[i].windowSteps += 1
        }
    }

    /// Closes the window into one row at `step`.
    mutating func log(step: Int) {
        for i in layers.indices {
            let w = layers[i].window, steps = Double(max(layers[i].windowSteps, 1)), e = layers[i].experts
            let load = w.load.map { Double($0) / steps }
            let mean = load.reduce(0, +) / Double(e)
            let variance = load.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(e)
            let tokens = Double(max(w.tokens, 1))
            let selectedMean = Double(w.selected.reduce(0, +)) / Double(e)
            let row: [String: Double] = [
                "dropped_fraction": w.routed > 0 ? Double(w.dropped) / Double(w.routed) : 0,
                "unused_experts": Double(w.load.filter { $0 == 0 }.count),
                "gate_entropy": w.entropySum / tokens,
                "load_cv": mean > 0 ? variance.squareRoot() / mean : .nan,
                "max_mean_load": mean > 0 ? (load.max() ?? 0) / mean : .nan,
                "max_violation": selectedMean > 0 ? Double(w.selected.max() ?? 0) / selectedMean - 1 : .nan,
                "aux_loss": w.auxLoss / tokens,
                "z_loss": w.zLoss / tokens,
            ]
            layers[i].steps.append(Int64(step))
            layers[i].load += load
            layers[i].gateMass += w.gateMass.map { $0 / steps }
            if let b = layers[i].bias { layers[i].expertBias = (layers[i].expertBias ?? []) + b.map(Double.init) }
            for name in Self.series { layers[i].values[name]!.append(row[name]!) }
            layers[i].window = RouterStepStatistics(experts: e)
            layers[i].windowSteps = 0
        }
    }

    func write(to location: H5Location) throws {
        for layer in layers {
            let group = try location.createGroup("router/\(layer.block)")
            try group.setAttribute("experts", Int64(layer.experts))
            try group.createDataset("step", layer.steps)
            try group.createDataset("load", layer.load, shape: [layer.steps.count, layer.experts])
            try group.createDataset("gate_mass", layer.gateMass, shape: [layer.steps.count, layer.experts])
            if let bias = layer.expertBias ?? (layer.bias != nil ? [] : nil) {
                try group.createDataset("expert_bias", bias, shape: [layer.steps.count, layer.experts])
            }
            for name in Self.series { try group.createDataset(name, layer.values[name]!) }
        }
    }

    /// The open windows (sums since the last row), kept in each checkpoint file as
    /// `/router/<block>/window` = [windowSteps, tokens, routed, dropped, entropySum, auxLoss,
    /// zLoss, load…] so a resumed task's next row is the one an uninterrupted run writes.
    func writeWindows(to location: H5Location) throws {
        for layer in layers {
            let w = layer.window
            let values = [Double(layer.windowSteps), Double(w.tokens), Double(w.routed), Double(w.dropped),
                          w.entropySum, w.auxLoss, w.zLoss] + w.load.map(Double.init)
            try location.createDataset("router/\(layer.block)/window", values)
            try location.createDataset("router/\(layer.block)/window_selected_gate_mass", w.selected.map(Double.init) + w.gateMass)
        }
    }

    mutating func readWindows(from location: H5Location) throws {
        for i in layers.indices where location.exists("router/\(layers[i].block)/window") {
            let v = try location.read("router/\(layers[i].block)/window", as: Double.self).values
            guard v.count == 7 + layers[i].experts else { continue }
            var w = RouterStepStatistics(experts: layers[i].experts)
            w.tokens = Int(v[1]); w.routed = Int(v[2]); w.dropped = Int(v[3])
            w.entropySum = v[4]; w.auxLoss = v[5]; w.zLoss = v[6]
            w.load = v[7...].map { Int($0) }
            let extra = "router/\(layers[i].block)/window_selected_gate_mass"
            if location.exists(extra) {
                let m = try location.read(extra, as: Double.self).values
                if m.count == 2 * layers[i].experts {
                    w.selected = m[0..<layers[i].experts].map { Int($0) }
                    w.gateMass = Array(m[layers[i].experts...])
                }
            }
            layers[i].window = w
            layers[i].windowSteps = Int(v[0])
        }
    }

    /// Restores the rows written by `write` (a resumed task continues them).
    mutating func read(from location: H5Location) throws {
        for i in layers.indices {
            let group = try location.openGroup("router/\(layers[i].block)")
            layers[i].steps = try group.read("step", as: Int64.self).values
            layers[i].load = try group.read("load", as: Double.self).values
            let rows = layers[i].steps.count, e = layers[i].experts
            // Files written before a series existed resume with NaN rows for it.
            func series(_ name: String, width: Int) throws -> [Double] {
                group.exists(name) ? try group.read(name, as: Double.self).values : [Double](repeating: .nan, count: rows * width)
            }
            layers[i].gateMass = try series("gate_mass", width: e)
            if group.exists("expert_bias") { layers[i].expertBias = try series("expert_bias", width: e) }
            for name in Self.series { layers[i].values[name] = try series(name, width: 1) }
        }
    }
}
