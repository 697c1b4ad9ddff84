import Foundation
import MoECore
import MoEData
import MoEFusion
import MoEHDF5
import MoENN
@testable import MoERuntime
import MoESpec
import MoEStore
import XCTest

/// The fuse task on transformer LM experts (issue 15 item 2): two tiny LMs branched from the
/// spec seed's initialisation (each perturbed by its own noise, as training would move them),
/// written with `Checkpoint.writeModel` into a run layout with a two-domain corpus, then
/// `FuseTask.run` with every weight-space method and with `mix` (BTX).
final class LMFuseTaskTests: XCTestCase {
    private var dir = ""
    private var layout: RunLayout!
    /// The experts' architecture: the spec's dense transformer (context 8, hidden 16, 2 heads, 2 blocks, ffn 32).
    private var config = TransformerConfig(context: 8)
    private let seed: UInt64 = 3
    private var corpus: TextCorpus!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("lmfuse-\(UUID().uuidString)").path
        layout = RunLayout(directory: dir)
        try layout.create()
        corpus = try writeCorpus()
        config = try XCTUnwrap(try spec("{method: average}").lmSetup).model
        XCTAssertNil(config.moe)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Two domains of different text, split 0.7 / 0.15 / the rest, in tasks/data.h5.
    private func writeCorpus() throws -> TextCorpus { try TextCorpus.writeTwoDomains(to: layout, train: 0.7, val: 0.15) }

    /// Expert i: the seed initialisation plus N(0, 0.02²) noise from its own stream, in
    /// `tasks/expert-<i>.h5:/model` with `train_tokens` 1000·(i + 1).
    private func writeExperts(_ count: Int = 2) throws -> [TransformerLM] {
        try (0..<count).map { i in
            let model = TransformerLM(config: config, seed: seed)
            var rng = RNG(seed: 77, purpose: "test/expert", stream: UInt64(i))
            for p in model.parameters {
                for j in 0..<p.value.count { p.value.data[j] += 0.02 * rng.normal() }
            }
            try H5File.createAtomically(layout.taskFile("expert-\(i)")) { file in
                try file.setAttribute("train_tokens", Int64(1000 * (i + 1)))
                try Checkpoint.writeModel(model, normalization: nil, to: file, at: "model")
            }
            return model
        }
    }

    private func spec(_ fusion: String, extra: String = "") throws -> ExperimentSpec {
        try SpecLoader.load(yaml: """
            name: lmfuse
            seed: \(seed)
            data: {source: text, path: tasks/data.h5, split: {train: 0.7, val: 0.15, test: 0.15}}
            model: {kind: transformer, context: 8, hidden: 16, heads: 2, blocks: 2, ffn: 32}
            experts: 2
            split: {strategy: branch, shard_by: domain}
            train: {steps: 4, batch_size: 3, lr: 0.003}
            eval: {batch_size: 5}
            fusion: \(fusion)
            \(extra)
            """, file: "lmfuse.yaml", baseDirectory: dir)
    }

    private func runFuse(_ fusion: String, extra: String = "") throws -> H5File {
        try FuseTask(spec: try spec(fusion, extra: extra), layout: layout, log: RunLog(path: nil, quiet: true)).run()
        return try H5File.open(layout.taskFile("fuse"))
    }

    private func fusedLM(_ file: H5File, at path: String = "model") throws -> TransformerLM {
        let (model, norm) = try Checkpoint.loadAnyModel(from: file, at: path)
        XCTAssertNil(norm)
        return try XCTUnwrap(model as? TransformerLM, "\(path) is a \(model.checkpointKind) model")
    }

    private func tensors(_ model: TransformerLM) -> NamedTensors { NamedTensors(parameters: model.parameters) }

    /// `average` with uniform weights: every tensor of the fused LM is the mean of the experts'
    /// (and it is a transformer checkpoint the finetune task can load by name); `/seed` is the
    /// spec seed's initialisation; the stored metrics are the §5.4 scores (`LMScores`) of the
    /// same models; the barrier curves' endpoints are the experts' scores on the domains of
    /// their shards.
    func testAverageIsTheMeanOfTheExpertsAndItsMetricsAreTheLMScores() throws {
        let experts = try writeExperts()
        let file = try runFuse("{method: average, weights: uniform}")
        let fused = try fusedLM(file)
        XCTAssertEqual(fused.config, config)
        for (p, (a, b)) in zip(fused.parameters, zip(experts[0].parameters, experts[1].parameters)) {
            XCTAssertEqual(p.name, a.name)
            for j in 0..<p.value.count {
                let mean = (Double(a.value.data[j]) + Double(b.value.data[j])) / 2
                XCTAssertEqual(Double(p.value.data[j]), mean, accuracy: 1e-7 * max(1, abs(mean)), "\(p.name)[\(j)]")
            }
        }
        let seedModel = try fusedLM(file, at: "seed")
        XCTAssertEqual(tensors(seedModel).values, tensors(TransformerLM(config: config, seed: seed)).values)

        func score(_ m: TransformerLM, _ split: TextSplit) -> LMScores { LMScores.score(m, corpus, split: split, batchSize: 5) }
        for (name, model) in [("expert-0", experts[0]), ("expert-1", experts[1]), ("fused", fused)] {
            let v = score(model, .val).overall, t = score(model, .test).overall
            XCTAssertGreaterThan(v.scored, 0)
            XCTAssertEqual(try file.read("fusion/metrics/\(name)/val_loss", as: Double.self).values, [v.meanLoss], name)
            XCTAssertEqual(try file.read("fusion/metrics/\(name)/val_accuracy", as: Double.self).values, [v.accuracy], name)
            XCTAssertEqual(try file.read("fusion/metrics/\(name)/test_loss", as: Double.self).values, [t.meanLoss], name)
            XCTAssertEqual(try file.read("fusion/metrics/\(name)/test_accuracy", as: Double.self).values, [t.accuracy], name)
        }
        // Barriers on the LM val loss: expert 0–1 on both shards' domains, fused–expert i on domain i.
        let pair = try file.openGroup("fusion/barrier/expert-0--expert-1")
        XCTAssertEqual(try pair.stringAttribute("data"), "val, domains 0, 1 (the first 256 windows of each domain)")
        let pairLoss = try file.read("fusion/barrier/expert-0--expert-1/val_loss", as: Double.self).values
        XCTAssertEqual(pairLoss.count, 11)
        XCTAssertEqual(pairLoss.first, score(experts[0], .val).overall.meanLoss)
        XCTAssertEqual(pairLoss.last, score(experts[1], .val).overall.meanLoss)
        for i in 0..<2 {
            let path = "fusion/barrier/fused--expert-\(i)"
            XCTAssertEqual(try file.openGroup(path).stringAttribute("data"), "val, domain \(i) (the first 256 windows of each domain)")
            let losses = try file.read(path + "/val_loss", as: Double.self).values
            let accuracies = try file.read(path + "/val_accuracy", as: Double.self).values
            let own = score(experts[i], .val).domains[i].sums
            XCTAssertEqual(losses.last, own.meanLoss)
            XCTAssertEqual(accuracies.last, own.accuracy)
            XCTAssertEqual(losses.first, score(fused, .val).domains[i].sums.meanLoss)
            XCTAssertEqual(try file.read(path + "/barrier", as: Double.self).values, [FuseTask.Curve.barrier(losses)])
            XCTAssertEqual(try file.read(path + "/error_barrier", as: Double.self).values,
                           [FuseTask.Curve.barrier(accuracies.map { 1 - $0 })])
        }
        // The collapse threshold is half the loss of a uniform guess over the 256 byte tokens.
        XCTAssertEqual(try file.openGroup("fusion").attribute("barrier_threshold", as: Double.self), 0.5 * log(256), accuracy: 1e-12)
        XCTAssertEqual(try file.read("fusion/coefficients", as: Double.self).values, [0.5, 0.5])
    }

    /// A curve point of LM experts is measured on the first `curveWindows` validation windows of
    /// each domain (the shipped corpus would otherwise forward ~33M tokens for the curves of 4
    /// experts): the same sums as the §5.4 protocol cut to those windows, not the whole split.
    func testCurvePointsScoreTheFirstWindowsOfEachDomain() throws {
        let experts = try writeExperts()
        let probe = LMFusionProbe(config: config, corpus: corpus, batchSize: 5, curveWindows: 2)
        let point = probe.curvePoint(tensors(experts[0]), domains: [1])
        let cut = LMScores.score(experts[0], corpus, split: .val, batchSize: 5, only: [1], windowsPerDomain: 2).overall
        XCTAssertEqual(cut.scored, 2 * config.context, "two windows of domain 1")
        XCTAssertEqual(point.loss, cut.meanLoss)
        XCTAssertEqual(point.accuracy, cut.accuracy)
        let whole = LMScores.score(experts[0], corpus, split: .val, batchSize: 5, only: [1]).overall
        XCTAssertGreaterThan(whole.scored, cut.scored)
        XCTAssertNotEqual(point.loss, whole.meanLoss)
        XCTAssertEqual(probe.curveSubset, "the first 2 windows of each domain")
        // Both domains: each contributes its first two windows.
        XCTAssertEqual(LMScores.score(experts[0], corpus, split: .val, batchSize: 5, windowsPerDomain: 2).overall.scored, 4 * config.context)
    }

    /// Every other weight-space method fuses LM experts into a transformer checkpoint; the
    /// task-vector methods use the spec seed's initialisation as θ₀ (checked against
    /// `Fusion.taskArithmetic` on the same tensors), `data_size` weights the experts'
    /// `train_tokens`, and `fisher` measures each expert's Fisher on validation windows.
    func testEveryWeightSpaceMethodFusesLMExperts() throws {
        let experts = try writeExperts().map(tensors)
        let base = tensors(TransformerLM(config: config, seed: seed))
        let methods = [
            "{method: average, weights: data_size}", "{method: average, weights: val_loss}", "{method: average, weights: optimized}",
            "{method: greedy_soup}", "{method: task_arithmetic, lambda: 0.7}", "{method: ties, density: 0.5}",
            "{method: dare, density: 0.5}", "{method: dare_ties, density: 0.5}", "{method: slerp, t: 0.3}",
            "{method: fisher, fisher_samples: 2}",
        ]
        for method in methods {
            try? FileManager.default.removeItem(atPath: layout.taskFile("fuse"))
            let file = try runFuse(method)
            let fused = tensors(try fusedLM(file))
            let loss = try file.read("fusion/metrics/fused/val_loss", as: Double.self).values[0]
            XCTAssertTrue(loss.isFinite && loss > 0 && loss < 7, "\(method): fused val loss \(loss)")
            let coefficients = try file.read("fusion/coefficients", as: Double.self).values
            XCTAssertEqual(coefficients.count, 2, method)
            XCTAssertEqual(try file.children(of: "fusion/barrier").count, 3, method)
            switch method {
            case let m where m.contains("data_size"):
                XCTAssertEqual(coefficients[0], 1.0 / 3, accuracy: 1e-12)
                XCTAssertEqual(coefficients[1], 2.0 / 3, accuracy: 1e-12)
            case let m where m.contains("task_arithmetic"):
                let expected = try Fusion.taskArithmetic(base: base, models: experts, weights: coefficients, lambda: 0.7, normalize: true)
                XCTAssertEqual(fused.values, expected.model.values)
            case let m where m.contains("slerp"):
                XCTAssertEqual(fused.values, try Fusion.slerp(experts[0], experts[1], t: 0.3).values)
            case let m where m.contains("fisher"):
                XCTAssertEqual(try file.openGroup("fusion").attribute("fisher_batches", as: Int64.self), 2)
                XCTAssertNotEqual(fused.values, try Fusion.average(experts).values, "the Fisher weights changed nothing")
            default: break
            }
        }
    }

    /// The Fisher of an LM expert on one batch of every validation window is the elementwise
    /// square of the gradient of the mean next-token loss on those windows.
    func testLMFisherIsTheSquaredGradientOnValidationWindows() throws {
        let expert = try writeExperts(1)[0]
        let probe = LMFusionProbe(config: config, corpus: corpus, batchSize: 5)
        let windows = corpus.evaluationWindows(.val, context: config.context)
        let total = windows.map(\.count).reduce(0, +)
        let (fisher, batches) = try probe.fisher(tensors(expert), batches: 3, rows: total)
        XCTAssertEqual(batches, 1)
        let width = config.context + 1
        var tokens = [Int32](repeating: 0, count: total * width)
        var domains: [Int] = []
        var row = 0
        for w in windows {
            tokens.withUnsafeMutableBufferPointer { w.fill($0.baseAddress! + row * width, windows: 0 ..< w.count) }
            domains += Array(repeating: w.domain, count: w.count)
            row += w.count
        }
        expert.parameters.zeroGrad()
        tokens.withUnsafeBufferPointer { t in
            domains.withUnsafeBufferPointer { d in
                _ = expert.forward(TokenWindows(tokens: t.baseAddress!, batch: total, length: width, domains: d.baseAddress!),
                                   context: ForwardContext(training: true, step: 0, seed: 0))
                expert.backward()
            }
        }
        for p in expert.parameters {
            let squared = Array(p.grad.buffer).map { $0 * $0 }
            XCTAssertEqual(fisher[p.name]!, squared, p.name)
        }
    }

    /// BTX's MoE LM: with the `domain` router, every token of a domain-j window goes to expert j
    /// with gate 1, so when the shared tensors are expert j's the MoE LM's logits are expert j's
    /// (up to float rounding) — they would not be if expert j's FFN landed at another index.
    func testMixedLMRoutingEveryTokenToExpertJIsExpertJ() throws {
        let experts = try writeExperts()
        let moe = MoEConfig(experts: 2, blocks: [0, 1], router: .domain, k: 1)
        var mixConfig = config
        mixConfig.moe = moe
        let windows = corpus.evaluationWindows(.val, context: config.context)
        for j in 0..<2 {
            let mixed = try FuseTask.mix(experts: experts.map(tensors), averaged: tensors(experts[j]),
                                         into: TransformerLM(config: mixConfig, seed: seed))
            let w = windows[j]
            XCTAssertGreaterThan(w.count, 0)
            var tokens = [Int32](repeating: 0, count: config.context + 1)
            w.fill(&tokens, windows: 0 ..< 1)
            var domain = j
            let n = config.context * config.vocab
            mixed.forwardLogits(tokens, batch: 1, tokens: config.context, rowStride: config.context + 1, domains: &domain,
                                context: ForwardContext(training: false, step: 0, seed: 0))
            let got = Array(UnsafeBufferPointer(start: mixed.logits, count: n))
            for (i, expert) in experts.enumerated() {
                expert.forwardLogits(tokens, batch: 1, tokens: config.context, rowStride: config.context + 1,
                                     context: ForwardContext(training: false, step: 0, seed: 0))
                let want = Array(UnsafeBufferPointer(start: expert.logits, count: n))
                let diff = zip(got, want).map { abs($0 - $1) }.max()!
                if i == j {
                    XCTAssertLessThan(diff, 1e-5, "domain \(j): the MoE LM differs from expert \(j)")
                } else {
                    XCTAssertGreaterThan(diff, 1e-3, "domain \(j): the MoE LM equals expert \(i)")
                }
            }
        }
    }

    /// `fusion.method: mix` on LM experts writes the MoE transformer checkpoint the finetune task
    /// builds from the spec (`lmSetup.model`, the spec's router): each expert's FFN at its index,
    /// attention, norms, embeddings and positions averaged, routers the fresh initialisation × 0.01,
    /// and its metrics are the §5.4 scores of that model.
    func testMixWritesTheMoELMTheFinetuneTaskLoads() throws {
        let experts = try writeExperts()
        let spec = try spec("{method: mix, weights: uniform, finetune: {epochs: 1, lr: 0.001}}",
                            extra: "router: {type: topk, k: 1}")
        try FuseTask(spec: spec, layout: layout, log: RunLog(path: nil, quiet: true)).run()
        let file = try H5File.open(layout.taskFile("fuse"))
        let mixed = try fusedLM(file)
        var want = config
        want.moe = spec.moeConfig
        XCTAssertEqual(mixed.config, want)
        XCTAssertEqual(mixed.config, spec.lmSetup?.model)
        let fresh = TransformerLM(config: want, seed: seed)
        let mixedTensors = tensors(mixed), freshTensors = tensors(fresh)
        let e = experts.map(tensors)
        for name in mixedTensors.names {
            let got = mixedTensors[name]!
            switch ParameterPath(name) {
            case .experts(let b, let t):
                XCTAssertEqual(got, e[0]["blocks/\(b)/ffn/\(t)"]! + e[1]["blocks/\(b)/ffn/\(t)"]!, name)
            case .router(_, "weight"):
                XCTAssertEqual(got, freshTensors[name]!.map { $0 * FuseTask.mixRouterScale }, name)
            default:
                for (j, x) in got.enumerated() {
                    let mean = (Double(e[0][name]![j]) + Double(e[1][name]![j])) / 2
                    XCTAssertEqual(Double(x), mean, accuracy: 1e-7 * max(1, abs(mean)), name)
                }
            }
        }
        XCTAssertTrue(mixedTensors.names.contains("blocks/0/attn/qkv/weight"))
        let v = LMScores.score(mixed, corpus, split: .val, batchSize: 5).overall
        XCTAssertEqual(try file.read("fusion/metrics/fused/val_loss", as: Double.self).values, [v.meanLoss])
        XCTAssertEqual(try file.openGroup("fusion").stringAttribute("method"), "mix")
    }

    /// The evaluate task reuses the fuse task's §5.4 sums of the checkpoints the fuse task
    /// measured (each expert's `/model`, the fused `/model`), and they are the figures scoring
    /// those checkpoints afresh gives, bit for bit; changed sums in fuse.h5 show in evaluate.h5,
    /// so the figures are read, not recomputed.
    func testEvaluateReusesTheFuseTasksScoresOfTheSameCheckpoints() throws {
        let experts = try writeExperts()
        var fuse = try runFuse("{method: average}")
        XCTAssertEqual(try fuse.openGroup("fusion/metrics/expert-1/sums").stringAttribute("model"), "expert-1/model")
        XCTAssertEqual(try fuse.openGroup("fusion/metrics/fused/sums").stringAttribute("model"), "fuse/model")
        XCTAssertEqual(try fuse.read("fusion/metrics/expert-0/sums/test", as: Double.self).shape, [2, 3])
        let fused = try fusedLM(fuse)
        fuse.close()
        let models = [("expert-0", "expert-0"), ("expert-1", "expert-1"), ("fused", "fuse"), ("final", "fuse")]
        let evaluate = { try LMEvaluateTask.run(splits: [.val, .test], batchSize: 5, models: models, layout: self.layout,
                                                log: RunLog(path: nil, quiet: true)) }
        try evaluate()
        var eval = try H5File.open(layout.taskFile("evaluate"))
        for (name, model) in [("expert-0", experts[0]), ("expert-1", experts[1]), ("fused", fused), ("final", fused)] {
            for split in [TextSplit.val, .test] {
                let fresh = LMScores.score(model, corpus, split: split, batchSize: 5)
                XCTAssertEqual(try eval.readScalar("summary/\(name)/\(split.rawValue)_loss", as: Double.self), fresh.overall.meanLoss, name)
                for (domain, sums) in fresh.domains {
                    let base = "summary/\(name)/domains/\(domain)/\(split.rawValue)"
                    XCTAssertEqual(try eval.readScalar(base + "_loss", as: Double.self), sums.meanLoss, base)
                    XCTAssertEqual(try eval.readScalar(base + "_accuracy", as: Double.self), sums.accuracy, base)
                }
            }
        }
        eval.close()
        fuse = try H5File.open(layout.taskFile("fuse"), mode: .readWrite)
        var (values, shape) = try fuse.read("fusion/metrics/expert-0/sums/val", as: Double.self)
        values[0] *= 2   // Σ loss of domain 0
        try fuse.deleteLink("fusion/metrics/expert-0/sums/val")
        try fuse.createDataset("fusion/metrics/expert-0/sums/val", values, shape: shape)
        fuse.close()
        try evaluate()
        eval = try H5File.open(layout.taskFile("evaluate"))
        let domain0 = LMScores.score(experts[0], corpus, split: .val, batchSize: 5).domains[0]
        XCTAssertEqual(try eval.readScalar("summary/expert-0/domains/\(domain0.name)/val_loss", as: Double.self), 2 * domain0.sums.meanLoss)
        XCTAssertEqual(try eval.readScalar("summary/expert-1/val_loss", as: Double.self),
                       LMScores.score(experts[1], corpus, split: .val, batchSize: 5).overall.meanLoss)
    }
}
