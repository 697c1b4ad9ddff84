import Foundation
import MoEHDF5
import XCTest

/// A tiny Mixture-of-Experts experiment (`split.strategy: replicate`): 4 experts in block 1 of 2.
/// `tinyMoESpec` grown to about 3,000 steps (40 epochs of 3,000 samples, hidden 32, ffn 64) with a
/// checkpoint every 42 steps, run to the end once, and once killed after its first checkpoint and
/// resumed (`--resume` must say so): the two runs' `tasks/train.h5`, to compare bit for bit.
func killedAndResumedMoERun(name: String, router: String, file: StaticString = #filePath, line: UInt = #line) throws
    -> (reference: H5File, resumed: H5File) {
    let yaml = tinyMoESpec(name: name, epochs: 40, router: router)
        .replacingOccurrences(of: "log_every: 5", with: "log_every: 5\n  checkpoint_every: 42")
        .replacingOccurrences(of: "samples: 600", with: "samples: 3000")
        .replacingOccurrences(of: "hidden: 16\n  ffn: 16", with: "hidden: 32\n  ffn: 64")
    let reference = try CLI.completeRun(yaml, file: file, line: line)
    let dir = try CLI.workspace(yaml)
    try CLI.startAndKillAfterFirstCheckpoint(in: dir, file: file, line: line)
    let resumed = try CLI.run(["spec.yaml", "--resume"], in: dir)
    XCTAssertEqual(resumed.status, 0, resumed.stderr, file: file, line: line)
    XCTAssertTrue(resumed.stdout.contains("resuming from the checkpoint at step"), resumed.stdout, file: file, line: line)
    return (try H5File.open(reference + "/tasks/train.h5"), try H5File.open(dir + "/" + resumed.lastLine + "/tasks/train.h5"))
}

func tinyMoESpec(name: String = "tinymoe", epochs: Int = 3, router: String = "{type: topk, k: 2}", extra: String = "") -> String {
    """
    name: \(name)
    seed: 7
    data:
      source: synthetic
      samples: 600
      features: 8
      classes: 3
      domains: 4
    model:
      hidden: 16
      ffn: 16
      blocks: 2
      moe_blocks: [1]
    experts: 4
    split: {strategy: replicate}
    router: \(router)
    train:
      epochs: \(epochs)
      batch_size: 32
      lr: 0.003
      log_every: 5
    eval:
      batch_size: 50
    output:
      dir: out
    \(extra)
    """
}

/// End-to-end: MoE runs through the built binary: router series in the task file, `show`'s load
/// table, capacity drops, exact resume, the numpy re-implementation, domain-id checks.
final class MoEEndToEndTests: XCTestCase {
    static let series = ["dropped_fraction", "unused_experts", "gate_entropy", "load_cv", "max_mean_load", "aux_loss", "z_loss"]

    private func run(_ yaml: String) throws -> (dir: String, runDir: String) {
        let dir = try CLI.workspace(yaml)
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        return (dir, dir + "/" + r.lastLine)
    }

    func testMoERunWritesRouterSeriesAndShowPrintsTheLoadTable() throws {
        let (dir, runDir) = try run(tinyMoESpec())
        let train = try H5File.open(runDir + "/tasks/train.h5")
        let steps = try train.read("metrics/step", as: Int64.self).values
        XCTAssertEqual(steps, [5, 10, 15, 20, 25, 30, 35, 40, 45], "480 training samples: 15 steps of 32 per epoch")
        XCTAssertEqual(try train.read("metrics/aux_loss", as: Double.self).values.count, steps.count)
        XCTAssertEqual(try train.openGroup("router").children(), ["1"], "one MoE layer, named by its block")
        XCTAssertEqual(try train.read("router/1/step", as: Int64.self).values, steps)
        let (load, shape) = try train.read("router/1/load", as: Double.self)
        XCTAssertEqual(shape, [steps.count, 4])
        // Dropless top-2: every step serves 2 assignments for each of its 32 tokens.
        for row in 0..<shape[0] { XCTAssertEqual(load[row * 4 ..< row * 4 + 4].reduce(0, +), 64, accuracy: 1e-9) }
        for name in Self.series {
            XCTAssertEqual(try train.read("router/1/" + name, as: Double.self).values.count, steps.count, name)
        }
        XCTAssertEqual(Set(try train.read("router/1/dropped_fraction", as: Double.self).values), [0], "dropless")
        let entropy = try train.read("router/1/gate_entropy", as: Double.self).values
        XCTAssertTrue(entropy.allSatisfy { $0 > 0 && $0 <= log(4) + 1e-9 }, "\(entropy)")
        XCTAssertTrue(try train.read("router/1/aux_loss", as: Double.self).values.allSatisfy { $0 >= 1 - 1e-6 },
                      "E·Σ f_i P_i >= 1 for top-k (equality when balanced)")
        let model = try train.openGroup("model")
        XCTAssertEqual(try model.openDataset("blocks/1/moe/experts/w1").shape, [4, 16, 16])
        XCTAssertEqual(try model.openDataset("blocks/1/moe/router/weight").shape, [4, 16])
        XCTAssertTrue(model.exists("blocks/0/ffn/w1") && !model.exists("blocks/1/ffn"))
        XCTAssertTrue(try model.stringAttribute("config").contains("\"moe\":{"), "the config names the MoE layers")

        let h5ls = try CLI.tool("/usr/bin/h5ls", ["-r", runDir + "/tasks/train.h5"])
        for name in ["load", "step"] + Self.series {
            XCTAssertTrue(h5ls.stdout.contains("/router/1/\(name) "), "h5ls lacks /router/1/\(name):\n\(h5ls.stdout)")
        }
        for target in [(runDir as NSString).lastPathComponent, "tasks/train.h5"] {
            let show = try CLI.run(["show", target], in: target.hasPrefix("tasks") ? runDir : (runDir as NSString).deletingLastPathComponent)
            XCTAssertEqual(show.status, 0, show.stderr)
            XCTAssertTrue(show.stdout.contains("router load at step 45, share of routed tokens per expert (%):"), show.stdout)
            XCTAssertTrue(show.stdout.contains("    block    e0    e1    e2    e3  dropped     cv  maxvio"), show.stdout)
            XCTAssertTrue(show.stdout.contains("\n        1 "), show.stdout)
        }
        let plan = try CLI.run(["plan", "spec.yaml"], in: dir)
        XCTAssertTrue(plan.stdout.contains("train MoE (4 experts, topk k=2, block 1) residual MLP"), plan.stdout)
    }

    func testTightCapacityShowsUpAsDroppedFraction() throws {
        let (_, runDir) = try run(tinyMoESpec(router: "{type: switch, capacity_factor: 0.5, min_capacity: 1}", extra: ""))
        let train = try H5File.open(runDir + "/tasks/train.h5")
        let dropped = try train.read("router/1/dropped_fraction", as: Double.self).values
        // Capacity ⌈32/4 · 0.5⌉ = 4 of 32 tokens per expert: at least half the tokens are dropped.
        XCTAssertTrue(dropped.allSatisfy { $0 >= 0.5 - 1e-9 && $0 < 1 }, "\(dropped)")
        let load = try train.read("router/1/load", as: Double.self).values
        XCTAssertTrue(load.allSatisfy { $0 <= 4 + 1e-9 }, "no expert serves more than its capacity: \(load)")
    }

    /// Python (h5py + numpy) rebuilds the MoE forward pass from the checkpoint alone, with the
    /// evaluation batching and capacity of moe-run, and matches its test loss.
    func testPythonReproducesTheMoETestLoss() throws {
        let python = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"] ?? (NSHomeDirectory() + "/.cache/moe-run/venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("no Python venv with h5py at \(python); `make test` creates it")
        }
        let script = CLI.repositoryRoot.appendingPathComponent("Tests/python/check_run.py").path
        let routers = [
            "{type: topk, k: 2, capacity_factor: 1.0, min_capacity: 2}",
            "{type: switch, capacity_factor: 1.25, drop_policy: position}",
            "{type: noisy_topk, k: 2, normalize_topk: false}",
            "{type: expert_choice, k: 2, capacity_factor: 1.0}",
            "{type: domain}",
        ]
        for router in routers {
            let (_, runDir) = try run(tinyMoESpec(name: "interop", router: router))
            let py = try CLI.tool(python, [script, runDir])
            XCTAssertEqual(py.status, 0, router + ": " + py.stdout + py.stderr)
            // check_run.py lists every linked model it recomputed (best, then final).
            XCTAssertTrue(py.stdout.hasPrefix("interop: ok: "), router + ": " + py.stdout)
            XCTAssertTrue(py.stdout.contains("final (MoE "), router + ": " + py.stdout)
        }
    }

    func testKilledMoERunResumesToBitIdenticalWeightsAndRouterSeries() throws {
        // About 3,000 steps (a second or so), a checkpoint every 42: not a multiple of log_every, so
        // the run is killed and resumed in the middle of a log window (kept in the checkpoint).
        let (a, b) = try killedAndResumedMoERun(name: "moeresume", router: "{type: topk, k: 2, capacity_factor: 1.0, jitter: 0.05}")
        let model = try a.openGroup("model")
        for name in ["blocks/1/moe/router/weight", "blocks/1/moe/experts/w1", "blocks/1/moe/experts/b2", "head/weight"] {
            XCTAssertEqual(try model.read(name, as: Float.self).values.map(\.bitPattern),
                           try b.read("model/" + name, as: Float.self).values.map(\.bitPattern), name)
        }
        XCTAssertEqual(try a.read("router/1/step", as: Int64.self).values, try b.read("router/1/step", as: Int64.self).values)
        for name in ["load", "aux_loss", "gate_entropy", "dropped_fraction"] {
            XCTAssertEqual(try a.read("router/1/" + name, as: Double.self).values.map(\.bitPattern),
                           try b.read("router/1/" + name, as: Double.self).values.map(\.bitPattern), name)
        }
        for name in ["aux_loss", "train_loss", "train_accuracy", "grad_norm"] {
            XCTAssertEqual(try a.read("metrics/" + name, as: Double.self).values.map(\.bitPattern),
                           try b.read("metrics/" + name, as: Double.self).values.map(\.bitPattern), name)
        }
    }

    /// `router.type: domain` routes by domain ids: data without them is refused before anything
    /// is written (a run), or by `moe-run eval`.
    func testDomainRouterNeedsDomainIds() throws {
        var csv = "a,b,y\n"
        for i in 0..<40 { csv += "\(Double(i % 7) * 0.5),\(Double(i % 3)),\(i % 2)\n" }
        let yaml = """
            name: oracle
            data: {source: file, path: plain.csv}
            experts: 2
            split: {strategy: replicate}
            router: {type: domain}
            output: {dir: out}
            """
        let dir = try CLI.workspace(yaml)
        try csv.write(toFile: dir + "/plain.csv", atomically: true, encoding: .utf8)
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertEqual(r.stderr, "moe-run: error: spec.yaml:2:28: data.path: plain.csv: the samples have no domain ids, and router.type: domain routes by them; add a `domain` dataset (HDF5) or column (CSV), or choose another router.type\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing written")

        let (_, runDir) = try run(tinyMoESpec(name: "oracle", router: "{type: domain}"))
        let test = try H5File.open(runDir + "/run.h5")
        let (x, shape) = try test.read("data/test/x", as: Float.self)
        try H5File.createAtomically(dir + "/test.h5") { f in
            try f.createDataset("x", x, shape: shape)
            try f.createDataset("y", try test.read("data/test/y", as: Int64.self).values)
        }
        let e = try CLI.run(["eval", runDir + "/run.h5", dir + "/test.h5"], in: dir)
        XCTAssertEqual(e.status, 2, e.stdout + e.stderr)
        XCTAssertTrue(e.stderr.hasPrefix("moe-run: error: \(dir)/test.h5: the samples have no domain ids"), e.stderr)
    }
}
