import Foundation
import MoEData
import MoEFusion
import MoEHDF5
import MoENN
import MoEPlan
import MoESpec
import MoEStore

/// `fusion.method: average` after a `split.strategy: replicate` MoE run: expert merging, the MoE
/// model collapsed back into a dense one (a `fuse` task after `train`).
///
/// For every MoE block b, the dense `blocks/b/ffn/{w1, b1, w2, b2}` is `Fusion.mergeExperts` of the
/// stacked `blocks/b/moe/experts/{w1, b1, w2, b2}`: Σ_e c_be · θ_be with
/// - `fusion.weights: data_size` (FedAvg's n_e = the tokens the expert served): c_be = L_be / Σ_e L_be,
///   L_be = Σ over the logged windows of `tasks/train.h5:/router/<b>/load[:, e]` (each row the mean
///   assignments per step of one log window) — the expert's routing load over training;
/// - `uniform`: c_be = 1/E; an explicit list: the list (divided by its sum), the same for every block.
/// The routers are dropped; every other tensor (embedding, norms, head, dense blocks) is copied.
/// The MoE output Σ_e g_e(x)·FFN_e(x) is replaced by FFN(x) with averaged weights: exact only
/// when the experts are equal, so the stored metrics show what merging loses.
///
/// Writes `tasks/fuse.h5`: `/model` (the dense checkpoint), `/fusion` (attributes `method =
/// "average"`, `merge = "experts"`, `weights`, `moe_blocks`, `collapsed = 0`),
/// `/fusion/coefficients [M, E]` (one row per MoE block, in block order),
/// `/fusion/metrics/{moe, fused}/{val,test}_{loss,accuracy}`.
extension FuseTask {
    func runExpertMerge() throws {
        let (val, _) = try DataTask.load("val", layout: layout)
        let (test, _) = try DataTask.load("test", layout: layout)
        let trainPath = layout.taskFile("train")
        let trainFile = try H5File.open(trainPath)
        let (moe, norm) = try Checkpoint.loadModel(from: trainFile, at: "model", for: "expert merging")
        guard let moeConfig = moe.config.moe else {
            throw RuntimeError.io(path: trainPath + ":/model", message: "holds a dense model; expert merging needs an MoE model")
        }
        var denseConfig = moe.config
        denseConfig.moe = nil
        if let ffn = moeConfig.expertFFN { denseConfig.ffn = ffn }
        let e = moeConfig.experts
        var coefficients: [[Double]] = []
        for b in moeConfig.blocks {
            let load: [Double]
            switch spec.fusion.weights {
            case .dataSize:
                let path = "router/\(b)/load"
                guard trainFile.exists(path) else {
                    throw RuntimeError.io(path: trainPath, message: "\(path) is missing: data_size weights need the routing load of block \(b)")
                }
                let (values, shape) = try trainFile.read(path, as: Double.self)
                guard shape.count == 2, shape[1] == e else {
                    throw RuntimeError.io(path: trainPath, message: "\(path) has shape \(shape), expected [rows, \(e)]")
                }
                load = (0..<e).map { j in stride(from: j, to: values.count, by: e).reduce(0) { $0 + values[$1] } }
            case .explicit(let list): load = list
            default: load = Array(repeating: 1, count: e)
            }
            do {
                coefficients.append(try FusionWeights.explicit(load, modelCount: e, normalize: true))
            } catch {
                throw RuntimeError.io(path: trainPath, message: "cannot weight the experts of block \(b): \(error)")
            }
        }
        let dense = try Self.mergeExperts(moe, into: denseConfig, coefficients: Dictionary(uniqueKeysWithValues: zip(moeConfig.blocks, coefficients)))
        func metrics(_ model: ResidualMLP) -> Metrics {
            Self.metrics(val: val, test: test) { model.evaluate(x: $0.x, labels: $0.y, domains: $0.domain, batchSize: spec.eval.batchSize) }
        }
        try TrainTask.checkDomains(moe.config, val, test)
        let moeMetrics = metrics(moe), fusedMetrics = metrics(dense)
        try H5File.createAtomically(layout.taskFile("fuse")) { file in
            try file.setTaskAttributes("fuse")
            try Checkpoint.writeModel(dense, normalization: norm, to: file, at: "model")
            let g = try file.createGroup("fusion")
            try g.setAttribute("method", "average")
            try g.setAttribute("merge", "experts")
            try g.setAttribute("weights", spec.fusion.weights.keyword ?? "explicit")
            try g.setAttribute("moe_blocks", moeConfig.blocks.map(String.init).joined(separator: ","))
            try g.setAttribute("seed", Int64(spec.seed))
            try g.setAttribute("collapsed", Int64(0))
            try g.setAttribute("collapse_reason", "")
            try g.createDataset("coefficients", coefficients.flatMap { $0 }, shape: [coefficients.count, e])
            try Self.writeMetrics([("moe", moeMetrics), ("fused", fusedMetrics)], to: g)
        }
        log.info("fuse: merged the \(e) experts of block\(moeConfig.blocks.count == 1 ? "" : "s") "
                 + moeConfig.blocks.map(String.init).joined(separator: ", ") + " (\(spec.fusion.weights.keyword ?? "explicit") weights): dense val acc "
                 + "\(formatMetric(fusedMetrics.valAccuracy)) vs MoE \(formatMetric(moeMetrics.valAccuracy))")
    }

    /// The dense model of `config` with `moe`'s tensors, each MoE block's experts merged by
    /// `coefficients[block]` (see above).
    static func mergeExperts(_ moe: ResidualMLP, into config: ModelConfig, coefficients: [Int: [Double]]) throws -> ResidualMLP {
        let source = Dictionary(uniqueKeysWithValues: moe.parameters.map { ($0.name, $0) })
        let dense = ResidualMLP(config: config, seed: 0)
        for p in dense.parameters {
            if case .ffn(let b, let tensor) = ParameterPath(p.name), let c = coefficients[b] {
                let name = ParameterPath.experts(block: b, tensor: tensor).name
                guard let q = source[name] else { throw RuntimeError.usage("cannot merge experts: tensor \(name) is missing from the MoE model") }
                let merged = try Fusion.mergeExperts(Array(q.value.buffer), shape: q.shape, load: c)
                guard merged.shape == p.shape else {
                    throw RuntimeError.usage("cannot merge experts: tensor \(name) merges to shape \(merged.shape), expected \(p.shape) for \(p.name)")
                }
                merged.values.withUnsafeBufferPointer { p.value.data.update(from: $0.baseAddress!, count: p.value.count) }
            } else {
                guard let q = source[p.name], q.shape == p.shape else {
                    throw RuntimeError.usage("cannot merge experts: tensor \(p.name) is missing from the MoE model")
                }
                p.value.copy(from: q.value)
            }
        }
        return dense
    }
}
