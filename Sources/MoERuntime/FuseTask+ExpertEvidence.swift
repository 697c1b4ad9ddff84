import Foundation
import MoECore
import MoEData
import MoEHDF5

/// Evidence about the experts alone, shared by every fuse task of the same experts.
///
/// A fuse task measures each expert (val and test metrics; for an LM the §5.4 sums) and the
/// interpolation curve between every two experts, before it looks at its own fused model. None
/// of that depends on the fusion method: `experiments/sweep-fusion.yaml` measured the same four
/// experts seven times per seed, and `sweep-lm-fusion.yaml` makes eight full validation and test
/// passes of each LM expert. So the fuse task stamps its `/fusion` group with the **expert
/// evidence key** (attribute `expert_evidence`): the SHA-256 of the fuse code version and, per
/// expert in order, its task identity (`TaskIdentity`: its data, spec slice with `eval`,
/// upstream and code) and the checkpoint group fused (`model` or `best`). A later fuse task of
/// the same key, in a run of the same experiment folder, copies the experts' metrics and the
/// expert–expert curves from that file instead of measuring them again (attribute
/// `expert_evidence_from` = the donor run's id; the log says so). The numbers are the same bits
/// a measurement gives: the same checkpoints on the same data in the same batches.
///
/// Like the task cache, this is on only when the run uses the task cache (not with `--no-cache`,
/// not under MPI): the scheduler sets `MOE_RUN_EVIDENCE_CACHE=1` for its workers. An expert
/// file without an identity (written by older code, or a run without identities) has no key.
extension FuseTask {
    /// What another fuse task of the same experts measured.
    struct ExpertEvidence {
        /// Per expert, in order.
        var metrics: [Metrics]
        /// By `<a>--<b>` (`expert-i--expert-j`).
        var curves: [String: Curve]
        /// The id of the run whose fuse.h5 it came from.
        var donor: String
    }

    /// Set to 1 in a worker's environment when the run uses the task cache.
    static let evidenceVariable = "MOE_RUN_EVIDENCE_CACHE"
    static let evidenceAttribute = "expert_evidence"
    static let evidenceSourceAttribute = "expert_evidence_from"

    /// The expert evidence key of this run's experts fused from `sources` (`expert-<i>/<group>`),
    /// or nil when an expert's task file holds no task identity.
    func evidenceKey(sources: [String]) -> String? {
        var lines = ["moe-run expert evidence 1", "fuse code \(TaskIdentity.codeVersions[.fuse] ?? 0)"]
        for (i, source) in sources.enumerated() {
            guard let file = try? H5File.open(layout.taskFile("expert-\(i)")),
                  let identity = try? file.stringAttribute(TaskIdentity.attribute), !identity.isEmpty else { return nil }
            lines.append("\(source) \(identity)")
        }
        return SHA256.hex(lines.joined(separator: "\n"))
    }

    /// The evidence of the first other run of the experiment folder (in name order) whose
    /// finished fuse.h5 has `key`, read for `experts` experts; nil when there is none or the
    /// cache is off.
    func donorEvidence(key: String, experts: Int, probe: any FusionProbe) -> ExpertEvidence? {
        guard ProcessInfo.processInfo.environment[Self.evidenceVariable] == "1" else { return nil }
        let domains = (probe as? LMFusionProbe)?.corpus.domains
        for (run, path) in layout.sameTaskInOtherRuns("fuse") {
            guard let file = try? H5File.open(path),
                  (try? file.stringAttribute("kind")) == "task", file.exists("fusion"), let g = try? file.openGroup("fusion"),
                  (try? g.stringAttribute(Self.evidenceAttribute)) == key,
                  let evidence = try? Self.readEvidence(g, experts: experts, domains: domains) else { continue }
            return ExpertEvidence(metrics: evidence.metrics, curves: evidence.curves, donor: run)
        }
        return nil
    }

    /// The experts' metrics and the expert–expert curves of a `/fusion` group (throws when any is missing).
    private static func readEvidence(_ g: H5Group, experts: Int, domains: [String]?) throws -> (metrics: [Metrics], curves: [String: Curve]) {
        var metrics: [Metrics] = []
        for i in 0..<experts {
            let m = try g.openGroup("metrics/expert-\(i)")
            var metric = Metrics(valLoss: try m.readScalar("val_loss", as: Double.self), valAccuracy: try m.readScalar("val_accuracy", as: Double.self),
                                 testLoss: try m.readScalar("test_loss", as: Double.self), testAccuracy: try m.readScalar("test_accuracy", as: Double.self))
            metric.model = try m.stringAttribute("model")
            if let domains {
                let sums = try m.openGroup("sums")
                for split in [TextSplit.val, .test] {
                    guard let scores = try LMEvaluateTask.readSums(sums, split: split, domains: domains) else {
                        throw RuntimeError.usage("no \(split.rawValue) sums")
                    }
                    metric.lmScores[split] = scores
                }
            }
            metrics.append(metric)
        }
        var curves: [String: Curve] = [:]
        for a in 0..<experts {
            for b in (a + 1)..<experts {
                let name = "expert-\(a)--expert-\(b)"
                guard g.exists("barrier/" + name) else { continue }
                let c = try g.openGroup("barrier/" + name)
                curves[name] = Curve(a: "expert-\(a)", b: "expert-\(b)", data: try c.stringAttribute("data"),
                                     losses: try c.read("val_loss", as: Double.self).values,
                                     accuracies: try c.read("val_accuracy", as: Double.self).values)
            }
        }
        return (metrics, curves)
    }
}
