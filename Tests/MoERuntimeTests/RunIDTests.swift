import Foundation
@testable import MoERuntime
@testable import MoESpec
import XCTest

/// Run ids (docs/results.md): stable across upgrades (defaults left out, the shipped experiments'
/// ids pinned), blind to keys that cannot change results, and runs of the old scheme still found.
final class RunIDTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let experiments = RunIDTests.repository.appendingPathComponent("experiments")

    /// The run id of every shipped experiment; for a spec with a sweep, the id of its base spec
    /// (`--set sweep=`) and its sweep folder's hash. A change here moves users' results: it is
    /// only right together with a bump of `ExperimentSpec.identityScheme` (or a changed spec).
    static let golden: [String: String] = [
        "branch-domains": "2c6290ab0ae3",
        "btm-average": "8d93f9b60cb3",
        "btm-ensemble": "b7cf8dbb7764",
        "btx-mix": "9b28855469fe",
        "data-parallel": "f208f79c4309",
        "dense-baseline": "e669a2e6d1f1",
        "digits-dense": "c49f2a3fa793",
        "expert-parallel": "b1875259cb3d",
        "fuse-independent-init": "774d92575fdb",
        "fuse-shared-init": "21f171d5db29",
        "layerwise-local": "bc0b8b497f9d",
        "layerwise-pipeline": "e5c49f83a058",
        "lm-btm": "7c9e697fdcc0",
        "lm-btm-average": "3a4d5cf3352d",
        "lm-btx": "ef10f44dfb50",
        "lm-data-parallel": "6fa66db49bd3",
        "lm-dense": "d4263fb568cf",
        "lm-expert-parallel": "5f35c731f256",
        "lm-moe": "de3a8904fe7f",
        "lm-moefication": "604badf98e73",
        "lm-pipeline": "7209ec228d57",
        "lm-router-balance": "b14ce4d5f647",
        "lm-router-balance sweep": "a294ee49335b",
        "lm-router-shared": "01403e376f47",
        "lm-router-shared sweep": "0aedd8193bcb",
        "lm-seed-recipe": "8db13a31538e",
        "lm-switch": "1613731649ab",
        "lm-upcycle": "8fbbc095d07f",
        "moe-merge": "0387bb8cf64b",
        "moe-topk": "239f43b3418a",
        "moefication": "8f25000eea5d",
        "quickstart": "9f64f77b9a91",
        "seed-recipe": "a8cd4805756c",
        "soup": "f0e68a70ba95",
        "sweep-capacity": "af9ed24abfcb",
        "sweep-capacity sweep": "291b2e16f9e2",
        "sweep-fusion": "975e8ebba024",
        "sweep-fusion sweep": "51cdf80ea929",
        "sweep-lm-fusion": "79d8f5b74b36",
        "sweep-lm-fusion sweep": "65465ad04958",
        "sweep-router": "71f120e6db3c",
        "sweep-router sweep": "0e134a5a0d77",
        "switch-capacity": "af9f19ba677b",
        "upcycle": "f5e9454c8218",
    ]

    func testShippedExperimentsKeepTheirRunIDs() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: experiments.path).filter { $0.hasSuffix(".yaml") }.sorted()
        var got: [String: String] = [:]
        for file in files {
            let path = experiments.appendingPathComponent(file).path
            let name = String(file.dropLast(".yaml".count))
            if try SpecLoader.loadForSweep(path: path).sweep != nil {
                got[name] = RunLayout.runID(try SpecLoader.load(path: path, overrides: ["sweep="]))
                got[name + " sweep"] = try SweepPlan.make(specPath: path, overrides: [], grid: [], random: nil, seed: nil,
                                                          outputRoot: "/nonexistent").hash
            } else {
                got[name] = RunLayout.runID(try SpecLoader.load(path: path))
            }
        }
        let lines = got.keys.sorted().map { "\"\($0)\": \"\(got[$0]!)\"," }.joined(separator: " ")
        XCTAssertEqual(got, Self.golden, "run ids moved; if on purpose (identityScheme bumped), the new list is: \(lines)")
    }

    /// The schema defaults, as the identity leaves them out. Changing one changes what every
    /// spec that does not set the key computes, without changing its run id: bump
    /// `ExperimentSpec.identityScheme` with it, then update this list.
    func testDefaultsLeftOutOfTheRunIDAreFrozen() {
        var lines: [String] = []
        func visit(_ fields: [SchemaField], _ prefix: String) {
            for field in fields {
                let path = prefix + field.key
                if let value = field.defaultValue, !ExperimentSpec.resultNeutralKeys.contains(path) {
                    lines.append("\(path): \(YAMLText.inline(value))")
                }
                visit(field.children, path + ".")
            }
        }
        visit(SpecSchema.root, "")
        XCTAssertEqual(lines.joined(separator: "\n"), Self.frozenDefaults,
                       "a default changed or was added; if it was added, append it; if it changed, bump identityScheme")
        XCTAssertEqual(ExperimentSpec.identityScheme, 2)
    }

    static let frozenDefaults = """
        seed: 0
        data.source: synthetic
        data.format: auto
        data.features: 16
        data.classes: 4
        data.domains: 4
        data.samples: 4000
        data.separation: 6.0
        data.label_noise: 0.0
        data.split.train: 0.8
        data.split.val: 0.1
        data.split.test: 0.1
        data.standardize: true
        data.seed: null
        model.kind: mlp
        model.context: 64
        model.hidden: 128
        model.heads: 4
        model.ffn: 512
        model.blocks: 2
        model.activation: gelu
        model.dropout: 0.0
        model.norm_eps: 1e-05
        model.tie_embeddings: true
        model.moe_blocks: all
        model.shared_experts: 0
        model.shared_ffn: null
        experts: 1
        split.strategy: none
        split.upcycle_from: null
        split.pretrain_epochs: 0
        split.pretrain_steps: 0
        split.method: cluster
        split.shard_by: domain
        split.seed_model: shared
        split.overrides: null
        split.source: final
        router.type: topk
        router.capacity_factor: null
        router.min_capacity: 4
        router.drop_policy: probs
        router.aux_loss: 0.01
        router.z_loss: 0.001
        router.jitter: 0.0
        router.normalize_topk: true
        router.score: softmax
        router.balance: aux_loss
        router.bias_rate: 0.001
        parallelism.mode: none
        parallelism.workers: 1
        parallelism.microbatches: 4
        parallelism.compression: none
        parallelism.ratio: 0.01
        train.epochs: 10
        train.steps: null
        train.batch_size: 64
        train.optimizer: adamw
        train.lr: 0.001
        train.weight_decay: 0.01
        train.momentum: 0.9
        train.nesterov: false
        train.betas: [0.9, 0.999]
        train.eps: 1e-08
        train.grad_clip: 1.0
        train.schedule: cosine
        train.warmup_steps: 0
        train.min_lr: 0.0
        train.eval_every: 0
        train.local: false
        train.init_from: null
        train.early_stopping: null
        train.early_stopping.min_delta: 0.0
        fusion.method: none
        fusion.weights: uniform
        fusion.temperature: 1.0
        fusion.lambda: 1.0
        fusion.density: 0.5
        fusion.rescale: true
        fusion.t: 0.5
        fusion.normalize: true
        fusion.epsilon: 1e-08
        fusion.fisher_samples: 16
        fusion.prior: validation
        fusion.finetune: null
        fusion.finetune.epochs: 1
        fusion.finetune.steps: null
        fusion.source: final
        eval.batch_size: 1024
        eval.splits: [val, test]
        eval.metric: val_loss
        sweep.method: grid
        sweep.seed: 0
        """

    private func spec(_ yaml: String, _ overrides: [String] = []) throws -> ExperimentSpec {
        try SpecLoader.load(yaml: yaml, file: "spec.yaml", overrides: overrides)
    }

    /// Only keys that differ from their default count: a spec written out with every default
    /// (as moe-run stores it) has the id of the spec as written, and the identity of a minimal
    /// spec is its name and the one computed default (`router.k`, 1 for a dense model).
    func testKeysAtTheirDefaultDoNotCount() throws {
        let minimal = try spec("name: x\n")
        XCTAssertEqual(minimal.identityYAML(), "# moe-run run identity, scheme 2\nname: x\nrouter: {k: 1}\n")
        let shipped = try SpecLoader.load(path: experiments.appendingPathComponent("moe-topk.yaml").path)
        let everyKey = try SpecLoader.loadResolved(yaml: shipped.resolvedYAML(), file: "resolved.yaml",
                                                   baseDirectory: experiments.path)
        XCTAssertEqual(RunLayout.runID(everyKey), RunLayout.runID(shipped))
        XCTAssertFalse(shipped.identityYAML().contains("betas"), "train.betas is at its default")
        XCTAssertTrue(shipped.identityYAML().contains("experts: 8"))
    }

    func testKeysThatCannotChangeResultsDoNotChangeTheRunID() throws {
        let branch = "name: x\nexperts: 4\nsplit: {strategy: branch}\nfusion: {method: average}\n"
        let base = try spec(branch)
        let id = RunLayout.runID(base)
        for set in ["description=hello", "train.log_every=3", "train.checkpoint_every=7", "output.compression=0",
                    "output.keep_checkpoints=5", "output.dir=elsewhere", "parallelism.retries=4", "parallelism.workers=3",
                    "parallelism.backend=mpi", "parallelism.backend=shm"] {
            XCTAssertEqual(RunLayout.runID(try spec(branch, [set])), id, set)
        }
        let parallel = RunLayout.runID(try spec(branch, ["parallelism.mode=branch"]))
        XCTAssertEqual(RunLayout.runID(try spec(branch, ["parallelism.mode=branch", "parallelism.workers=4"])), parallel)
    }

    func testKeysThatChangeResultsChangeTheRunID() throws {
        let dense = "name: x\n"
        let id = RunLayout.runID(try spec(dense))
        for set in ["seed=1", "train.lr=0.002", "train.eval_every=5", "eval.batch_size=64", "model.hidden=64"] {
            XCTAssertNotEqual(RunLayout.runID(try spec(dense, [set])), id, set)
        }
        // Where workers share a task their number changes the bits, and gradient compression
        // (not output compression) changes the gradients.
        let data = "name: x\nparallelism: {mode: data, workers: 2}\n"
        XCTAssertNotEqual(RunLayout.runID(try spec(data)), RunLayout.runID(try spec(data, ["parallelism.workers=4"])))
        XCTAssertNotEqual(RunLayout.runID(try spec(data)), RunLayout.runID(try spec(data, ["parallelism.compression=topk"])))
        // The backend is not: shm and MPI sum in rank order (the same bits, ARCHITECTURE §5.5).
        XCTAssertEqual(RunLayout.runID(try spec(data)), RunLayout.runID(try spec(data, ["parallelism.backend=mpi"])))
        let expert = "name: x\nexperts: 4\nsplit: {strategy: replicate}\nparallelism: {mode: expert, workers: 2}\n"
        XCTAssertNotEqual(RunLayout.runID(try spec(expert)), RunLayout.runID(try spec(expert, ["parallelism.workers=4"])))
    }

    /// `legacyRunID` is the scheme moe-run used before: these are the ids the binary of main at
    /// 9830da6 printed (`moe-run sweep SPEC --grid seed=0 --dry-run`).
    /// Issue 13's keys: written at their defaults they leave the id alone; set, they move it.
    func testIssue13KeysAtTheirDefaultsKeepTheRunID() throws {
        let id = RunLayout.runID(try spec("name: x\n"))
        XCTAssertEqual(RunLayout.runID(try spec("name: x\ntrain: {steps: null}\n")), id)
        XCTAssertEqual(RunLayout.runID(try spec("name: x\ntrain: {epochs: 10}\n")), id)
        let steps = RunLayout.runID(try spec("name: x\ntrain: {steps: 100}\n"))
        XCTAssertNotEqual(steps, id)
        XCTAssertNotEqual(steps, RunLayout.runID(try spec("name: x\ntrain: {steps: 101}\n")))
    }

    func testLegacyRunIDIsTheOldScheme() throws {
        let old = ["quickstart": "3bafa45e3349", "data-parallel": "2078df6b841d", "moe-topk": "92a15d3d0146",
                   "digits-dense": "84507806e610", "layerwise-pipeline": "b779e3d2951b", "btm-average": "32bb2fa522a5"]
        for (name, id) in old {
            let spec = try SpecLoader.load(path: experiments.appendingPathComponent(name + ".yaml").path)
            XCTAssertEqual(RunLayout.legacyRunID(spec), id, name)
            XCTAssertNotEqual(RunLayout.runID(spec), id, name)
        }
    }

    func testLocateFindsARunOfTheOldSchemeUnlessTheCurrentOneExists() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("moe-run-runid-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let s = try spec("name: x\n")
        let current = RunLayout(spec: s, outputRoot: root)
        let legacy = root + "/x/" + RunLayout.legacyRunID(s)
        XCTAssertEqual(RunLayout.locate(spec: s, outputRoot: root).layout.directory, current.directory)
        try FileManager.default.createDirectory(atPath: legacy, withIntermediateDirectories: true)
        XCTAssertFalse(RunLayout.locate(spec: s, outputRoot: root).isLegacy, "a directory without run.h5 is no run")
        FileManager.default.createFile(atPath: legacy + "/run.h5", contents: Data())
        let found = RunLayout.locate(spec: s, outputRoot: root)
        XCTAssertEqual(found.layout.directory, legacy)
        XCTAssertTrue(found.isLegacy)
        try current.create()
        XCTAssertEqual(RunLayout.locate(spec: s, outputRoot: root).layout.directory, current.directory)
    }

    func testDocsListEveryKeyLeftOut() throws {
        let doc = try String(contentsOf: Self.repository.appendingPathComponent("docs/results.md"), encoding: .utf8)
        for key in ExperimentSpec.resultNeutralKeys + ["parallelism.workers"] {
            XCTAssertTrue(doc.contains("| `\(key)` |"), key)
        }
    }
}
