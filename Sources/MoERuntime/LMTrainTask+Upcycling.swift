import MoECore
import MoEData
import MoEHDF5
import MoENN
import MoESpec
import MoEStore

/// Sparse upcycling and MoEfication of a transformer LM (ARCHITECTURE §2), at the start of its
/// `train` task, as `TrainTask` does for the residual MLP: the MoE LM starts from a trained dense
/// LM, this run's `pretrain` task (`split.pretrain_steps` or `split.pretrain_epochs`) or
/// `split.upcycle_from` (a run.h5, a task file or a checkpoint file; `replicate` only).
///
/// - `replicate` (Komatsuzaki et al. 2022): every parameter shared by name is copied (embeddings,
///   attention, norms, head, the FFNs of blocks that stay dense); each MoE block's dense
///   `blocks/<i>/ffn` goes into every expert of `blocks/<i>/moe/experts`; routers stay fresh
///   (`Upcycling`). With normalised top-k gates (k ≥ 2) the MoE LM computes the dense LM at step 0.
/// - `neurons` (Zhang et al. 2022): each MoE block's dense FFN units are partitioned into the
///   experts (`split.method`) and the router is fitted to the groups (`Moefication`); the
///   partition goes to `/moefication/<block>/units` of the task file and of every checkpoint.
enum LMDenseStart {
    /// A problem with the dense source, as one line (the caller names the file).
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// The dense LM stored in `file`, by parameter name. `verb` is "upcycle" or "moefy".
    static func denseParameters(in file: H5File, verb: String, group handoff: String? = nil) throws -> [String: Tensor] {
        guard let group = handoff ?? Evaluation.modelGroup(in: file) else {
            throw Failure(description: "holds no model to \(verb) from (expected a checkpoint group, /model or /models/final)")
        }
        let (kind, _) = try Checkpoint.readKindAndConfig(from: file, at: group)
        guard kind == TransformerLM.checkpointKind else {
            throw Failure(description: "holds a \(kind) model at \(group); a transformer LM is \(verb == "upcycle" ? "upcycled" : "moefied") from a dense transformer LM")
        }
        let (dense, _) = try Checkpoint.loadAnyModel(from: file, at: group)
        guard dense.moeLayers.isEmpty else { throw Failure(description: "holds an MoE model; \(verb == "upcycle" ? "upcycling" : "moefication") starts from a dense one") }
        return Upcycling.parameters(of: dense)
    }

    /// Starts `model` from the dense LM in `file`: upcycling, or MoEfication with `method`
    /// (seeded by `seed`). Returns the moefication partition per block (empty for upcycling).
    static func start(_ model: TransformerLM, from file: H5File, method: Moefication.Method?, seed: UInt64,
                      group: String? = nil) throws -> [Int: [[Int]]] {
        let dense = try denseParameters(in: file, verb: method == nil ? "upcycle" : "moefy", group: group)
        do {
            guard let method else {
                try Upcycling.upcycle(from: dense, into: model)
                return [:]
            }
            return try Moefication.moefy(from: dense, into: model, method: method, seed: seed).groups
        } catch let error as Upcycling.Mismatch {
            throw Failure(description: "cannot \(method == nil ? "upcycle" : "moefy"): \(error)")
        }
    }

    /// A dry run of upcycling `split.upcycle_from` into the LM this spec builds (preflight: a
    /// mismatch is a spec error at the key, before anything is written).
    static func checkUpcycleSource(_ spec: ExperimentSpec, _ setup: LMSetup) throws {
        guard let path = spec.split.upcycleFrom, let resolved = spec.split.resolvedUpcycleFrom else { return }
        func fail(_ message: String) -> SpecError { spec.positions.error("split.upcycle_from", "\(path): \(message)") }
        if let problem = H5Signature.problem(at: resolved) { throw fail(problem.description) }
        do {
            _ = try start(TransformerLM(config: setup.model, seed: spec.seed64), from: try H5File.open(resolved), method: nil, seed: spec.seed64)
        } catch let error as Failure {
            throw fail(error.description)
        } catch let error as HDF5Error {
            throw spec.positions.error("split.upcycle_from", DataError(reading: error, source: path).description)
        } catch {
            throw fail("\(error)")
        }
    }
}

extension LMTrainTask {
    /// The dense LM the `train` task starts from, or nil (from scratch).
    var denseSource: String? {
        guard role == .train, spec.split.strategy == .replicate || spec.split.strategy == .neurons else { return nil }
        if spec.split.pretrains { return layout.taskFile("pretrain") }
        return spec.split.strategy == .replicate ? spec.split.resolvedUpcycleFrom : nil
    }

    /// Upcycles or moefies `model` from the dense LM in `path`; errors name the file and the tensor.
    func startFromDense(_ model: TransformerLM, path: String) throws {
        let method = spec.split.strategy == .neurons ? Moefication.Method(rawValue: spec.split.method.rawValue)! : nil
        do {
            moeficationGroups = try LMDenseStart.start(model, from: try H5File.open(path), method: method, seed: spec.seed64,
                                                       group: spec.handoffGroup(path, layout: layout))
        } catch let error as LMDenseStart.Failure {
            throw RuntimeError.io(path: path, message: error.description)
        }
        if let method {
            let moe = setup.model.moe!
            log.info("\(id): moefied the dense LM in \(path): the FFN units of block\(moe.blocks.count == 1 ? "" : "s") "
                     + moe.blocks.map(String.init).joined(separator: ", ")
                     + " split into \(moe.experts) experts (\(method.rawValue)), routers fitted to the groups' mean w1 rows")
        } else {
            log.info("\(id): upcycled from the dense LM in \(path): its FFNs copied into every expert, routers fresh")
        }
    }
}
