import MoEHDF5
import MoENN
import MoESpec
import MoEStore

/// MoEfication at the start of the `train` task (`split.strategy: neurons`): the dense model of
/// this run's `pretrain` task is split into the MoE model before the first step, as upcycling is
/// for `replicate`, so the plan needs no task of its own. See `Moefication` for the maths.
extension TrainTask {
    /// This run's pre-trained dense model, when the spec moefies it (`neurons`).
    var moeficationSource: String? {
        guard role == .train, spec.split.strategy == .neurons, spec.split.pretrains else { return nil }
        return layout.taskFile("pretrain")
    }

    /// Splits the dense model in `path` into `model`'s experts (`split.method`, seeded by the
    /// spec seed) and fits the routers; errors name the tensor.
    func moefy(_ model: ResidualMLP, from path: String) throws {
        let file = try H5File.open(path)
        guard let group = spec.handoffGroup(path, layout: layout) ?? Evaluation.modelGroup(in: file) else {
            throw RuntimeError.io(path: path, message: "holds no model to moefy (expected a checkpoint group, /model or /models/final)")
        }
        let (dense, _) = try Checkpoint.loadModel(from: file, at: group, for: "moefication")
        let method = Moefication.Method(rawValue: spec.split.method.rawValue)!
        let report: Moefication.Report
        do {
            report = try Moefication.moefy(from: Upcycling.parameters(of: dense), into: model, method: method, seed: spec.seed64)
        } catch let error as Upcycling.Mismatch {
            throw RuntimeError.io(path: path, message: "cannot moefy: \(error)")
        }
        moeficationGroups = report.groups
        let moe = model.config.moe!
        let objective = report.objective.keys.sorted().map { String(format: "%.2f", report.objective[$0]!) }.joined(separator: ", ")
        log.info("\(id): moefied the dense model in \(path): the FFN units of block\(moe.blocks.count == 1 ? "" : "s") "
                 + moe.blocks.map(String.init).joined(separator: ", ")
                 + " split into \(moe.experts) experts of \(moe.expertFFN ?? model.config.ffn) (\(method.rawValue), k-means objective \(objective)),"
                 + " routers fitted to the groups' mean w1 rows")
    }

    /// The partition, `/moefication/<block>/units` (int64 `[E, F/E]`: row e lists the dense FFN
    /// units of expert e), so a run file says which dense units went to which expert. Written into
    /// every checkpoint file too, since a resumed task does not moefy again.
    func writeMoeficationGroups(to file: H5File) throws { try MoeficationGroups.write(moeficationGroups, to: file) }

    /// Reads the partition back from a checkpoint file (resume).
    func readMoeficationGroups(from file: H5File) throws { try MoeficationGroups.read(from: file, into: &moeficationGroups) }
}

/// `/moefication/<block>/units` of a task or checkpoint file (the MLP's and the LM's `train`).
enum MoeficationGroups {
    static func write(_ groups: [Int: [[Int]]], to file: H5File) throws {
        for (block, groups) in groups.sorted(by: { $0.key < $1.key }) {
            let width = groups.first?.count ?? 0
            try file.createDataset("moefication/\(block)/units", groups.flatMap { $0.map(Int64.init) }, shape: [groups.count, width])
        }
    }

    static func read(from file: H5File, into groups: inout [Int: [[Int]]]) throws {
        guard file.exists("moefication") else { return }
        for name in try file.openGroup("moefication").children() {
            guard let block = Int(name) else { continue }
            let (values, shape) = try file.read("moefication/\(name)/units", as: Int64.self)
            let width = shape.count == 2 ? shape[1] : 0
            groups[block] = stride(from: 0, to: values.count, by: max(width, 1)).map { values[$0..<min($0 + width, values.count)].map(Int.init) }
        }
    }
}
