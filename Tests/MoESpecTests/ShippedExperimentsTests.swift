import Foundation
import XCTest
@testable import MoESpec

/// The experiments shipped in experiments/ are valid and runnable by this version.
final class ShippedExperimentsTests: XCTestCase {
    let experiments = TestPaths.repository.appendingPathComponent("experiments")

    func testQuickstartIsSmallAndDense() throws {
        let spec = try SpecLoader.load(path: experiments.appendingPathComponent("quickstart.yaml").path)
        XCTAssertEqual(spec.name, "quickstart")
        XCTAssertEqual(spec.experts, 1)
        XCTAssertEqual(spec.data.source, .synthetic(.init(features: 16, classes: 4, domains: 4, samples: 4000,
                                                          separation: 6.0, labelNoise: 0)))
        XCTAssertEqual([spec.model.hidden, spec.model.ffn, spec.model.blocks], [64, 256, 2])
        XCTAssertEqual([spec.train.epochs, spec.train.batchSize], [20, 64])
        XCTAssertEqual(spec.output.dir, "results")
    }

    func testDigitsDenseReadsTheShippedFile() throws {
        let spec = try SpecLoader.load(path: experiments.appendingPathComponent("digits-dense.yaml").path)
        XCTAssertEqual(spec.name, "digits-dense")
        guard case .file(let file) = spec.data.source else { return XCTFail("expected a file source") }
        XCTAssertEqual(file.path, "data/digits.h5")
        XCTAssertEqual(file.resolvedPath, experiments.appendingPathComponent("data/digits.h5").standardizedFileURL.path)
        XCTAssertEqual(file.resolvedFormat, .hdf5)
        XCTAssertEqual(spec.experts, 1)
    }

    /// The README's comparison: same data, seed and budget, and the same FFN width per sample.
    func testMoEExperimentsMatchTheDenseBaselinesActiveWidth() throws {
        func load(_ name: String) throws -> ExperimentSpec {
            try SpecLoader.load(path: experiments.appendingPathComponent(name + ".yaml").path)
        }
        let dense = try load("dense-baseline"), topk = try load("moe-topk"), sw = try load("switch-capacity")
        XCTAssertEqual(dense.experts, 1)
        guard case .synthetic(let data) = dense.data.source else { return XCTFail("synthetic data expected") }
        XCTAssertEqual(data.domains, 8)
        for moe in [topk, sw] {
            XCTAssertEqual(moe.experts, 8)
            XCTAssertEqual(moe.split.strategy, .replicate)
            XCTAssertEqual(moe.data, dense.data)
            XCTAssertEqual(moe.seed, dense.seed)
            XCTAssertEqual(moe.train, dense.train)
            XCTAssertEqual([moe.model.hidden, moe.model.blocks], [dense.model.hidden, dense.model.blocks])
            XCTAssertEqual(moe.model.moeBlocks.indices(blocks: moe.model.blocks), [0, 1])
            XCTAssertEqual(moe.router.k * moe.model.ffn, dense.model.ffn, "active FFN units per sample")
        }
        XCTAssertEqual([topk.router.type, sw.router.type], [.topk, .switch])
        XCTAssertEqual(topk.router.k, 2)
        XCTAssertNil(topk.router.capacityFactor)
        XCTAssertEqual(sw.router.capacityFactor, 1.25)
    }

    /// Issue 13 item 7: lm-dense is nanoGPT's CPU recipe on the shipped corpus; lm-moe is the
    /// same with 8 experts, top-2, at lm-dense's active FFN width (2 × 256 = 512).
    func testLanguageModelsAreNanoGPTsRecipeAtEqualActiveWidth() throws {
        func load(_ name: String) throws -> ExperimentSpec {
            try SpecLoader.load(path: experiments.appendingPathComponent(name + ".yaml").path)
        }
        let dense = try load("lm-dense"), moe = try load("lm-moe")
        guard case .text(let corpus) = dense.data.source else { return XCTFail("text data expected") }
        XCTAssertEqual(corpus.resolvedPath, experiments.appendingPathComponent("data/text-domains.h5").standardizedFileURL.path)
        XCTAssertEqual(dense.model.transformer, .init(context: 64, heads: 4, tieEmbeddings: true))
        XCTAssertEqual([dense.model.hidden, dense.model.blocks, dense.model.ffn], [128, 4, 512])
        XCTAssertEqual(dense.model.activation, .gelu)
        XCTAssertEqual(dense.model.dropout, 0)
        XCTAssertEqual(dense.experts, 1)
        let t = dense.train
        XCTAssertEqual([t.steps, t.batchSize, t.warmupSteps], [2000, 12, 100])
        XCTAssertEqual(t.optimizer, .adamw)
        XCTAssertEqual([t.lr, t.minLR, t.weightDecay, t.gradClip], [1e-3, 1e-4, 0.1, 1.0])
        XCTAssertEqual(t.betas, [0.9, 0.99])
        XCTAssertEqual(t.schedule, .cosine)
        XCTAssertEqual(dense.eval.batchSize, 64, "4096 tokens per evaluation forward, not the default's 65,536 (over 3 GB)")

        XCTAssertEqual(moe.data, dense.data)
        XCTAssertEqual(moe.seed, dense.seed)
        XCTAssertEqual(moe.train, dense.train)
        XCTAssertEqual(moe.eval, dense.eval)
        XCTAssertEqual(moe.model.transformer, dense.model.transformer)
        XCTAssertEqual([moe.model.hidden, moe.model.blocks], [dense.model.hidden, dense.model.blocks])
        XCTAssertEqual(moe.experts, 8)
        XCTAssertEqual(moe.split.strategy, .replicate)
        XCTAssertEqual(moe.model.moeBlocks.indices(blocks: moe.model.blocks), [0, 1, 2, 3])
        XCTAssertEqual(moe.router.type, .topk)
        XCTAssertNil(moe.router.capacityFactor)
        XCTAssertEqual(moe.router.k * moe.model.ffn, dense.model.ffn, "active FFN units per token")
        XCTAssertEqual([moe.router.auxLoss, moe.router.zLoss], [0.01, 0.001], "as moe-bench's lm-moe")
    }

    /// Issue 15: lm-upcycle is lm-moe's MoE LM upcycled from a dense LM of its expert width, and
    /// lm-moefication moefies lm-dense's GPT; both train pretrain_steps + steps = lm-moe's 2000
    /// steps of the same batches' size (equal total training tokens), with its data and recipe.
    func testUpcycledAndMoefiedLMsTrainLMMoesTokens() throws {
        func load(_ name: String) throws -> ExperimentSpec {
            try SpecLoader.load(path: experiments.appendingPathComponent(name + ".yaml").path)
        }
        let moe = try load("lm-moe"), dense = try load("lm-dense")
        for spec in [try load("lm-upcycle"), try load("lm-moefication")] {
            XCTAssertEqual(spec.split.pretrainSteps + (spec.train.steps ?? 0), moe.train.steps, spec.name)
            XCTAssertEqual(spec.split.pretrainEpochs, 0, spec.name)
            XCTAssertEqual(spec.train.batchSize, moe.train.batchSize, spec.name)
            XCTAssertEqual(spec.data, moe.data, spec.name)
            XCTAssertEqual(spec.seed, moe.seed, spec.name)
            XCTAssertEqual(spec.eval, moe.eval, spec.name)
            XCTAssertEqual(spec.router, moe.router, spec.name)
            XCTAssertEqual(spec.experts, moe.experts, spec.name)
            var t = spec.train, m = moe.train
            (t.steps, m.steps) = (nil, nil)
            XCTAssertEqual(t, m, "\(spec.name): lm-moe's recipe but for the step count")
        }
        let upcycle = try load("lm-upcycle"), moefication = try load("lm-moefication")
        XCTAssertEqual(upcycle.split.strategy, .replicate)
        XCTAssertEqual(upcycle.model, moe.model, "lm-moe's MoE LM; the dense LM has its expert width")
        XCTAssertEqual(moefication.split.strategy, .neurons)
        XCTAssertEqual(moefication.split.method, .cluster)
        XCTAssertEqual(moefication.model, dense.model, "lm-dense's GPT, split into experts")
        XCTAssertEqual(moefication.router.k * moefication.model.ffn / moefication.experts, dense.model.ffn / 4, "a quarter of the FFN units per token")
    }

    /// Issue 6's contrast: the same data, model, experts and fusion; only where the experts start
    /// differs (a shared pre-trained seed vs independent inits, with the same total epochs).
    func testFusionContrastDiffersOnlyInTheExpertsStart() throws {
        func load(_ name: String) throws -> ExperimentSpec {
            try SpecLoader.load(path: experiments.appendingPathComponent(name + ".yaml").path)
        }
        let shared = try load("fuse-shared-init"), independent = try load("fuse-independent-init"), soup = try load("soup")
        XCTAssertEqual(shared.data, independent.data)
        XCTAssertEqual(shared.model, independent.model)
        XCTAssertEqual(shared.fusion, independent.fusion)
        XCTAssertEqual([shared.split.seedModel, independent.split.seedModel], [.shared, .independent])
        XCTAssertEqual(shared.split.pretrainEpochs + shared.train.epochs, independent.train.epochs)
        XCTAssertEqual(shared.fusion.method, .average)
        XCTAssertEqual(shared.fusion.weights, .valLoss)
        XCTAssertNotNil(shared.fusion.finetune)
        XCTAssertEqual(soup.fusion.method, .greedy_soup)
        XCTAssertEqual(soup.split.shardBy, .none)
    }

    /// BTX vs BTM: the same 4 domain experts (data, model, split, train, seed), fused three ways;
    /// mix and average fine-tune for the same epochs and lr. The seed recipe is layerwise, local,
    /// 4 stages, stacked and fine-tuned.
    func testBranchMergeMixAndEnsembleShareTheirExperts() throws {
        func load(_ name: String) throws -> ExperimentSpec {
            try SpecLoader.load(path: experiments.appendingPathComponent(name + ".yaml").path)
        }
        let mix = try load("btx-mix"), average = try load("btm-average"), ensemble = try load("btm-ensemble")
        for other in [average, ensemble] {
            XCTAssertEqual(mix.data, other.data)
            XCTAssertEqual(mix.model, other.model)
            XCTAssertEqual(mix.split, other.split)
            XCTAssertEqual(mix.train, other.train)
            XCTAssertEqual(mix.seed, other.seed)
            XCTAssertEqual(mix.experts, other.experts)
        }
        XCTAssertEqual([mix.fusion.method, average.fusion.method, ensemble.fusion.method], [.mix, .average, .ensemble])
        XCTAssertEqual(mix.fusion.finetune, average.fusion.finetune)
        XCTAssertNil(ensemble.fusion.finetune)
        XCTAssertEqual(mix.split.shardBy, .domain)
        XCTAssertGreaterThan(mix.split.pretrainEpochs, 0)

        let recipe = try load("seed-recipe")
        XCTAssertEqual(recipe.split.strategy, .layerwise)
        XCTAssertTrue(recipe.train.local)
        XCTAssertEqual(recipe.experts, 4)
        XCTAssertEqual(recipe.fusion.method, .stack)
        XCTAssertNotNil(recipe.fusion.finetune)
    }

    func testEveryShippedExperimentValidates() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: experiments.path).filter { $0.hasSuffix(".yaml") }
        XCTAssertTrue(names.contains("quickstart.yaml") && names.contains("digits-dense.yaml"))
        for name in names {
            let path = experiments.appendingPathComponent(name).path
            guard let sweep = try SpecLoader.loadForSweep(path: path).sweep else {
                // Strict: a shipped experiment writes no key without effect.
                XCTAssertNoThrow(try SpecLoader.loadWithWarnings(path: path, strict: true), name)
                continue
            }
            // A sweep (run by `moe-run sweep`): every combination of its grid is a valid run.
            var combinations: [[String]] = [[]]
            for p in sweep.parameters {
                combinations = combinations.flatMap { c in p.values.map { c + ["\(p.keyPath)=\($0.yamlText)"] } }
            }
            for c in combinations {
                XCTAssertNoThrow(try SpecLoader.loadWithWarnings(path: path, overrides: ["sweep="] + c, strict: true), "\(name) \(c)")
            }
        }
    }
}
