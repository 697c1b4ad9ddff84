import Foundation

/// The predicted curves of docs/scaling.md: data parallelism (MLP, lm-dense, lm-moe), expert
/// parallelism (lm-moe), branch runs, and data parallelism with compressed gradients.
extension Bench {
    static func dataParallelCurve(_ title: String, compute: Double, gradientBytes n: Double) -> Curve {
        Curve(title: title, reference: compute,
              time: { p, net in compute + allReduceTime(ranks: p, bytes: n, alpha: net.alpha, beta: net.beta) },
              efficiency: { p, net in compute / (compute + allReduceTime(ranks: p, bytes: n, alpha: net.alpha, beta: net.beta)) })
    }

    /// Data parallelism with compressed gradients: encode once, all-gather m = ratio·n bytes,
    /// decodeAdd p messages (the measured per-million-float times, scaled to n/4 floats).
    static func compressedCurve(_ title: String, compute: Double, gradientBytes n: Double, _ c: CompressionRow) -> Curve {
        let floats = n / 4 / 1e6
        func time(_ p: Int, _ net: Network) -> Double {
            compute + floats * (c.encode + Double(p) * c.decode) + allGatherTime(ranks: p, bytesPerRank: c.ratio * n, alpha: net.alpha, beta: net.beta)
        }
        return Curve(title: title, reference: compute, time: time, efficiency: { p, net in compute / time(p, net) })
    }

    /// Expert parallelism of lm-moe as moe-run implements it (ExpertParallelDispatcher): E =
    /// max(8, p) experts, one or more per rank, so beyond 8 ranks the model grows with the ranks
    /// (GShard-style); per MoE layer an all-gather of E counts and four all-to-alls (dispatch and
    /// combine, forward and backward) of tokens·k·hidden floats; then the all-reduce of the
    /// gradient. moe-run keeps every expert on every rank and all-reduces the full gradient
    /// (`fullGradient`); the alternative all-reduces only the shared (non-expert) parameters.
    static func expertParallelCurve(_ m: ScalingMeasurements, fullGradient: Bool) -> Curve {
        let model = LMBenchModel.moe
        let step = m.lmStep["lm-moe"]!, adamW = m.lmAdamW ?? 0
        func parameters(_ e: Int) -> Double { var x = model; x.experts = e; return Double(x.totalParameters) }
        let tokenBytes = Double(model.tokensPerStep * model.k * model.hidden * 4)
        func time(_ p: Int, _ net: Network) -> Double {
            let e = max(model.experts, p)
            // Every rank holds and updates every expert: AdamW grows with the parameters.
            let compute = step + adamW * (parameters(e) / parameters(model.experts) - 1)
            let gradient = fullGradient ? parameters(e) : parameters(e) - Double(model.blocks * e * model.expert)
            let layers = Double(model.blocks)
            return compute + layers * (allGatherTime(ranks: p, bytesPerRank: Double(4 * e), alpha: net.alpha, beta: net.beta)
                                       + 4 * allToAllTime(ranks: p, bytes: tokenBytes, alpha: net.alpha, beta: net.beta))
                + allReduceTime(ranks: p, bytes: 4 * gradient, alpha: net.alpha, beta: net.beta)
        }
        return Curve(title: fullGradient ? "lm-moe, expert parallel (as implemented: full gradient all-reduced)" : "lm-moe, expert parallel, only shared parameters all-reduced (not implemented)",
                     reference: step, time: time, efficiency: { p, net in step / time(p, net) })
    }

    /// A branch run with one expert per rank (E = p): the data task and the rest measured here,
    /// one expert task's time, control messages (rank 0 sends each rank its order and hears back:
    /// 2(p−1) messages), rank 0 reading the p experts' weights over the network (through the
    /// shared filesystem, so at its one link: p·4·P·β), and TIES fusion linear in models ×
    /// parameters. Reference: the same p experts trained one after another on one rank.
    static func branchCurve(_ m: ScalingMeasurements) -> Curve? {
        guard let b = m.branch, let ties = m.fusionTies else { return nil }
        let expert = b.one - b.two, rest = b.two - expert
        // The bench's branch model: residual MLP, features 16, hidden 128, ffn 512, 2 blocks, 4 classes.
        let (f, h, ffn, blocks, c) = (16.0, 128.0, 512.0, 2.0, 4.0)
        let parameters = f * h + h + blocks * (2 * h + 2 * h * ffn + ffn + h) + 2 * h + h * c + c
        func fusion(_ p: Int) -> Double { ties * Double(p) * parameters / (4 * 2e6) }
        func time(_ p: Int, _ net: Network) -> Double {
            rest + expert + 2 * Double(p - 1) * net.alpha + Double(p) * 4 * parameters * net.beta + fusion(p)
        }
        func oneRank(_ p: Int) -> Double { rest + Double(p) * expert + fusion(p) }
        return Curve(title: String(format: "branch run, one expert per rank (expert task %.2f s, rest %.2f s, %.0fk parameters per expert)", expert, rest, parameters / 1e3),
                     reference: oneRank(1), time: time, efficiency: { p, net in oneRank(p) / (Double(p) * time(p, net)) })
    }

    static func scalingModes(_ m: ScalingMeasurements, mlpBytes: Double, mlpCompute: Double) -> [String] {
        let dense = LMBenchModel.dense, moe = LMBenchModel.moe
        let dp = [dataParallelCurve("MLP data-parallel step model", compute: mlpCompute, gradientBytes: mlpBytes),
                  dataParallelCurve("lm-dense, data parallel", compute: m.lmStep["lm-dense"]!, gradientBytes: Double(4 * dense.totalParameters)),
                  dataParallelCurve("lm-moe, data parallel (every rank all experts)", compute: m.lmStep["lm-moe"]!, gradientBytes: Double(4 * moe.totalParameters))]
        let ep = [expertParallelCurve(m, fullGradient: true), expertParallelCurve(m, fullGradient: false)]
        let branch = branchCurve(m)
        var lines = ["## Data-parallel training (weak scaling)", "",
                     "Step time = measured compute + all-reduce of the gradient (4 bytes per parameter). Efficiency = compute / step.", ""]
        for c in dp { lines += ["### \(c.title)", ""] + curveTable(c) + [""] }
        lines += ["## Expert-parallel lm-moe (weak scaling)", "",
                  String(format: "Per MoE layer and step: an all-gather of the E expert counts and four all-to-alls of %d tokens × top-%d × %d floats (%.0f KB per rank); then the all-reduce of the gradient. lm-moe has %d experts: up to 8 ranks they are shared out; beyond, the model is assumed to grow to one expert per rank (as GShard), and since moe-run keeps every expert's weights on every rank, the all-reduced gradient and AdamW grow with the ranks. The second table is what sharding the expert weights (owner-only updates, all-reduce of the shared parameters only) would give.", moe.tokensPerStep, moe.k, moe.hidden, Double(moe.tokensPerStep * moe.k * moe.hidden * 4) / 1024, moe.experts), ""]
        for c in ep { lines += ["### \(c.title)", ""] + curveTable(c) + [""] }
        if let branch {
            lines += ["## Branch run (independent experts)", "",
                      "Wall time of a whole branch run with as many experts as ranks; efficiency = (the same experts one after another on one rank) / (p × wall time). Communication is only scheduling and the final gather for fusion.", "",
                      "### \(branch.title)", ""] + curveTable(branch) + [""]
        }
        let all = dp + ep + (branch.map { [$0] } ?? [])
        lines += ["## Where each mode stops paying off", "",
                  "Largest rank count at which efficiency is still ≥ 50% (each added rank still brings at least half its worth):", "",
                  "| mode | " + networks.map(\.name).joined(separator: " | ") + " |", "|---|" + String(repeating: "---|", count: networks.count)]
        for c in all { lines.append("| \(c.title) | " + networks.map { payoff(c, $0) }.joined(separator: " | ") + " |") }
        lines += [""] + compressionLines(m, dense: dense)
        return lines
    }

    static func compressionLines(_ m: ScalingMeasurements, dense: LMBenchModel) -> [String] {
        let lossy = m.compression.filter { $0.scheme != "none" }
        guard !lossy.isEmpty else { return ["## Gradient compression", "", "Not measured (no gradient-compression line in the benchmarks file)."] }
        let n = Double(4 * dense.totalParameters), compute = m.lmStep["lm-dense"]!
        let plain = dataParallelCurve("none (all-reduce)", compute: compute, gradientBytes: n)
        let curves = [plain] + lossy.map { compressedCurve("\($0.scheme) (\(String(format: "%.3f", $0.ratio)) of the bytes)", compute: compute, gradientBytes: n, $0) }
        let breakEven: [String] = lossy.map { String(format: "%@ below %.0f ranks", $0.scheme as NSString, 2 / $0.ratio) }
        var header: [String] = []
        for net in networks { for c in curves { header.append(net.name + " " + c.title) } }
        var lines: [String] = ["## Gradient compression (lm-dense, data parallel)", ""]
        lines.append("moe-run sends compressed gradients (Sources/MoEComm/GradientCompression.swift) by all-gather: every rank receives every other rank's message and decodes all p of them, so the bytes a rank receives grow as (p−1)·ratio·n instead of the all-reduce's 2(p−1)/p·n. Compression therefore moves fewer bytes only while (p−1)·ratio < 2(p−1)/p, i.e. p < 2/ratio: "
                     + breakEven.joined(separator: ", ") + ". Encode and decode times are the measured ones (per million floats, scaled to the gradient). Step time and efficiency:")
        lines += ["", "| ranks | " + header.joined(separator: " | ") + " |", "|---:|" + String(repeating: "---:|", count: header.count)]
        for p in scalingRanks {
            var cells: [String] = []
            for net in networks {
                for c in curves {
                    let t: Double = c.time(p, net), e: Double = c.efficiency(p, net)
                    cells.append(String(format: "%@ (%.0f%%)", ms(t) as NSString, 100 * e))
                }
            }
            lines.append("| \(p) | " + cells.joined(separator: " | ") + " |")
        }
        lines += ["", "Largest rank count with efficiency ≥ 50%:", "", "| scheme | " + networks.map(\.name).joined(separator: " | ") + " |", "|---|" + String(repeating: "---|", count: networks.count)]
        for c in curves { lines.append("| \(c.title) | " + networks.map { payoff(c, $0) }.joined(separator: " | ") + " |") }
        return lines
    }
}
