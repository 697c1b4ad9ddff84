import Foundation
import XCTest
@testable import MoESpec

final class GoodSpecTests: XCTestCase {
    static let good = TestPaths.resources.appendingPathComponent("good")

    func load(_ name: String, gate: Bool = true, overrides: [String] = []) throws -> ExperimentSpec {
        let yaml = try String(contentsOf: Self.good.appendingPathComponent(name), encoding: .utf8)
        return try SpecLoader.load(yaml: yaml, file: "good/\(name)", baseDirectory: Self.good.path, overrides: overrides,
                                   enforceSupportGate: gate)
    }

    /// Every documented default, written out by hand (docs/spec.md is generated from the same table).
    func testMinimalSpecResolvesEveryDefault() throws {
        let spec = try loadSpec("name: minimal\n")
        XCTAssertEqual(spec.name, "minimal")
        XCTAssertEqual(spec.seed, 0)
        XCTAssertNil(spec.description)
        XCTAssertEqual(spec.data.source, .synthetic(.init(features: 16, classes: 4, domains: 4, samples: 4000,
                                                          separation: 6.0, labelNoise: 0.0)))
        XCTAssertEqual(spec.data.split, .init(train: 0.8, val: 0.1, test: 0.1))
        XCTAssertTrue(spec.data.standardize)
        XCTAssertEqual(spec.model, ModelSpec(hidden: 128, ffn: 512, blocks: 2, activation: .gelu, dropout: 0, normEps: 1e-5,
                                             moeBlocks: .all))
        XCTAssertEqual(spec.experts, 1)
        XCTAssertEqual(spec.split, SplitSpec(strategy: .none, upcycleFrom: nil, resolvedUpcycleFrom: nil, pretrainEpochs: 0,
                                             method: .cluster, shardBy: .domain, overrides: nil))
        XCTAssertEqual(spec.router, RouterSpec(type: .topk, k: 1, capacityFactor: nil, minCapacity: 4, dropPolicy: .probs,
                                               auxLoss: 0.01, zLoss: 0.001, jitter: 0, normalizeTopk: true),
                       "k defaults to min(2, experts)")
        XCTAssertEqual(spec.parallelism, ParallelismSpec(mode: .none, workers: 1, retries: 1, microbatches: 4,
                                                         compression: .none, ratio: 0.01, backend: .auto))
        XCTAssertEqual(spec.train, TrainSpec(epochs: 10, batchSize: 64, optimizer: .adamw, lr: 0.001, weightDecay: 0.01,
                                             momentum: 0.9, nesterov: false, betas: [0.9, 0.999], eps: 1e-8, gradClip: 1.0,
                                             schedule: .cosine, warmupSteps: 0, minLR: 0, logEvery: 10, evalEvery: 0,
                                             checkpointEvery: 0, local: false))
        XCTAssertEqual(spec.fusion, FusionSpec(method: .none, weights: .uniform, temperature: 1, lambda: 1, density: 0.5,
                                               rescale: true, t: 0.5, normalize: true, epsilon: 1e-8, fisherSamples: 16,
                                               finetune: nil))
        XCTAssertEqual(spec.eval, EvalSpec(batchSize: 1024, splits: [.val, .test]))
        XCTAssertEqual(spec.output, OutputSpec(dir: "results", keepCheckpoints: 2, compression: 4))
        XCTAssertNil(spec.sweep)
    }

    /// Schema-driven: each key with a static default appears in the minimal spec's resolved YAML
    /// with exactly that default (so the table, the decoder and the emitter agree).
    func testSchemaDefaultsMatchTheResolvedMinimalSpec() throws {
        let resolved = try YAMLDocument(file: "resolved").parse(try loadSpec("name: minimal\n").resolvedYAML())
        let root = try XCTUnwrap(resolved)
        var checked = 0
        func visit(_ fields: [SchemaField], _ node: SpecNode?, _ path: String) {
            for field in fields {
                let child = node?.entries?.first { $0.key == field.key }?.value
                let keyPath = path.isEmpty ? field.key : "\(path).\(field.key)"
                if SpecSchema.Data.fileOnly.contains(where: { $0.key == field.key }), path == "data" { continue }
                if SpecSchema.Model.transformerOnly.contains(where: { $0.key == field.key }), path == "model" { continue }
                if field.isSection, child?.isNull == false {
                    visit(field.children, child, keyPath)
                } else if let value = field.defaultValue {
                    XCTAssertEqual(child?.specValue, value, keyPath)
                    checked += 1
                }
            }
        }
        visit(SpecSchema.root, root, "")
        XCTAssertGreaterThan(checked, 70)
    }

    func testFullDenseSpecReadsEveryKey() throws {
        let spec = try load("full-dense.yaml", gate: false)
        XCTAssertEqual(spec.name, "full-dense.v1")
        XCTAssertEqual(spec.description, "Every key, written out: \"quoted\" text")
        XCTAssertEqual(spec.data.source, .synthetic(.init(features: 8, classes: 3, domains: 2, samples: 500, separation: 2.5,
                                                          labelNoise: 0.05)))
        XCTAssertEqual(spec.data.split, .init(train: 0.7, val: 0.2, test: 0.1))
        XCTAssertEqual(spec.model, ModelSpec(hidden: 32, ffn: 64, blocks: 3, activation: .silu, dropout: 0.1, normEps: 1e-6,
                                             moeBlocks: .indices([0, 2])))
        XCTAssertEqual(spec.split, SplitSpec(strategy: .none, upcycleFrom: nil, resolvedUpcycleFrom: nil, pretrainEpochs: 2,
                                             method: .random, shardBy: .index, overrides: nil))
        XCTAssertEqual(spec.router, RouterSpec(type: .hash, k: 1, capacityFactor: 1.25, minCapacity: 0, dropPolicy: .position,
                                               auxLoss: 0, zLoss: 0.01, jitter: 0.01, normalizeTopk: false))
        XCTAssertEqual(spec.parallelism, ParallelismSpec(mode: .none, workers: 1, retries: 3, microbatches: 8,
                                                         compression: .none, ratio: 0.5, backend: .shm))
        XCTAssertEqual(spec.train, TrainSpec(epochs: 3, batchSize: 32, optimizer: .sgd, lr: 0.05, weightDecay: 0,
                                             momentum: 0.95, nesterov: true, betas: [0.8, 0.99], eps: 1e-6, gradClip: nil,
                                             schedule: .constant, warmupSteps: 5, minLR: 0.001, logEvery: 5, evalEvery: 20,
                                             checkpointEvery: 40, local: false))
        XCTAssertEqual(spec.fusion, FusionSpec(method: .none, weights: .explicit([2]), temperature: 0.5, lambda: -0.5,
                                               density: 0.25, rescale: false, t: 1, normalize: false, epsilon: 1e-6,
                                               fisherSamples: 4, finetune: nil))
        XCTAssertEqual(spec.eval, EvalSpec(batchSize: 256, splits: [.test, .train]))
        XCTAssertEqual(spec.output, OutputSpec(dir: "out/runs", keepCheckpoints: 5, compression: 0))
    }

    /// Features of later issues already parse and validate; the gate refuses them.
    func testFullMoESpecParsesEverySectionAndIsGated() throws {
        let spec = try load("full-moe.yaml", gate: false)
        guard case .file(let file) = spec.data.source else { return XCTFail("expected a file source") }
        XCTAssertEqual(file.path, "data/tiny.csv")
        XCTAssertEqual(file.resolvedPath, Self.good.appendingPathComponent("data/tiny.csv").standardizedFileURL.path)
        XCTAssertEqual(file.format, .auto)
        XCTAssertEqual(file.resolvedFormat, .csv)
        XCTAssertEqual(spec.model.moeBlocks, .every(2))
        XCTAssertEqual(spec.model.moeBlocks.indices(blocks: spec.model.blocks), [1, 3])
        XCTAssertEqual(spec.split.overrides, [.init(lr: 0.01, seed: 11), .init(),
                                              .init(epochs: 4, batchSize: 16, weightDecay: 0.1), .init(lr: 0.02)])
        XCTAssertEqual(spec.router.type, .noisy_topk)
        XCTAssertEqual(spec.router.k, 2)
        XCTAssertEqual(spec.router.capacityFactor, 2)
        XCTAssertEqual(spec.fusion.weights, .valLoss)
        XCTAssertEqual(spec.fusion.finetune, .init(epochs: 2, lr: 0.001), "finetune.lr defaults to train.lr")
        XCTAssertEqual(spec.sweep?.method, .random)
        XCTAssertEqual(spec.sweep?.trials, 6)
        XCTAssertEqual(spec.sweep?.parameters.map(\.keyPath), ["train.lr", "router.type", "fusion.finetune"])
        XCTAssertEqual(spec.sweep?.parameters[2].values, [.null, .map([.init(key: "epochs", value: .int(1))])])

        let gated = specError { try self.load("full-moe.yaml") }
        XCTAssertEqual(gated?.description, "good/full-moe.yaml:33:3: sweep: this spec defines a sweep; run it with `moe-run sweep SPEC` (`--dry-run` lists the trials)")
    }

    func testSwitchRouterDefaultsToK1() throws {
        let yaml = "name: s\nexperts: 4\nsplit: {strategy: replicate}\nrouter: {type: switch}\n"
        let spec = try SpecLoader.load(yaml: yaml, file: "s.yaml", baseDirectory: nil, overrides: [], enforceSupportGate: false)
        XCTAssertEqual(spec.router.k, 1)
        let topk = try SpecLoader.load(yaml: "name: s\nexperts: 4\nsplit: {strategy: replicate}\n", file: "s.yaml",
                                       baseDirectory: nil, overrides: [], enforceSupportGate: false)
        XCTAssertEqual(topk.router.k, 2)
    }

    func testResolvedYAMLRoundTrips() throws {
        var specs = [try loadSpec("name: minimal\n"), try load("full-dense.yaml", gate: false), try load("full-moe.yaml", gate: false)]
        specs.append(try loadSpec("name: w\nmodel: {moe_blocks: [1, 0]}\nrouter: {capacity_factor: 3}\n", gate: false))
        for spec in specs {
            let yaml = spec.resolvedYAML()
            let again = try SpecLoader.load(yaml: yaml, file: "good/resolved.yaml", baseDirectory: Self.good.path,
                                            overrides: [], enforceSupportGate: false)
            XCTAssertEqual(again, spec, yaml)
            XCTAssertEqual(again.resolvedYAML(), yaml, "resolving is idempotent")
        }
    }

    func testResolvedYAMLOrderAndShape() throws {
        let yaml = try loadSpec("name: minimal\n").resolvedYAML()
        let topKeys = yaml.split(separator: "\n").filter { !$0.hasPrefix(" ") && !$0.hasPrefix("#") }
            .map { String($0.prefix { $0 != ":" }) }
        XCTAssertEqual(topKeys, SpecSchema.root.map(\.key))
        XCTAssertTrue(yaml.contains("\n  split: {train: 0.8, val: 0.1, test: 0.1}\n"))
        XCTAssertTrue(yaml.contains("\n  betas: [0.9, 0.999]\n"))
        XCTAssertTrue(yaml.contains("\n  eps: 1e-08\n"))
        XCTAssertTrue(yaml.contains("\nsweep: null\n"))
        XCTAssertFalse(yaml.contains("path:"), "file-only keys are left out for synthetic data")
    }

    func testValueForms() throws {
        let spec = try loadSpec("""
            name: forms
            model: {norm_eps: 1E-4, dropout: .5}
            train: {lr: 1, grad_clip: ~, nesterov: True}
            router: {capacity_factor: +2.5}
            description: 'single ''quoted'''
            """, gate: false)
        XCTAssertEqual(spec.model.normEps, 1e-4)
        XCTAssertEqual(spec.model.dropout, 0.5)
        XCTAssertEqual(spec.train.lr, 1.0)
        XCTAssertNil(spec.train.gradClip)
        XCTAssertTrue(spec.train.nesterov)
        XCTAssertEqual(spec.router.capacityFactor, 2.5)
        XCTAssertEqual(spec.description, "single 'quoted'")
    }

    func testSmallAliasesAreAllowed() throws {
        let spec = try loadSpec("""
            name: aliases
            train:
              lr: &rate 0.002
              min_lr: *rate
              betas: &b [0.5, 0.6]
            fusion:
              weights: [1]
            data:
              split: &fractions {train: 0.5, val: 0.25, test: 0.25}
            """, gate: false)
        XCTAssertEqual(spec.train.minLR, 0.002)
        XCTAssertEqual(spec.train.betas, [0.5, 0.6])
        XCTAssertEqual(spec.data.split, .init(train: 0.5, val: 0.25, test: 0.25))
    }

    /// Text containing `*` that is not an alias is read unchanged.
    func testStarsInTextAreKept() throws {
        let spec = try loadSpec("name: stars\ndescription: a *bold* claim # and a * comment\n")
        XCTAssertEqual(spec.description, "a *bold* claim")
    }

    func testTabsInsideBlockScalarsAreAllowed() throws {
        let spec = try loadSpec("name: tabs\ndescription: |\n  line one\n  \tindented with a tab\nseed: 2\n")
        XCTAssertEqual(spec.description, "line one\n\tindented with a tab\n")
        XCTAssertEqual(spec.seed, 2)
    }

    /// Plans name the MoE blocks without listing hundreds of them (the spec fuzzer found a plan of
    /// 2^31 blocks that never finished).
    func testMoEBlockSummaryStaysShort() {
        typealias B = ModelSpec.MoEBlocks
        XCTAssertEqual(B.all.summary(blocks: 2), "blocks 0, 1")
        XCTAssertEqual(B.indices([1]).summary(blocks: 4), "block 1")
        XCTAssertEqual(B.all.summary(blocks: 1024), "blocks 0-1023")
        XCTAssertEqual(B.every(2).summary(blocks: 1024), "blocks 1, 3, …, 1023")
        XCTAssertEqual(B.every(3).summary(blocks: 10), "blocks 2, 5, 8")
        XCTAssertEqual(B.indices([9, 1, 2, 3, 4, 5, 6, 7, 8]).summary(blocks: 10), "blocks 1, 2, 3, …, 9")
    }
}
