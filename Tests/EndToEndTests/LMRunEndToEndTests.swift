import Foundation
import MoEHDF5
import XCTest

/// `moe-run SPEC.yaml` on a transformer LM spec end to end: a small text folder made here, a tiny
/// model, a few hundred steps. Checks the files the run wrote (the §5.4 data layout, the training
/// series, the per-domain summary, `moe-run show` and `moe-run eval`), the numpy recomputation of
/// the val and test figures (check_run.py).
final class LMRunEndToEndTests: XCTestCase {
    /// A folder corpus with two domains of different text, and a spec reading it.
    private func workspace(steps: Int, moe: Bool = false, checkpointEvery: Int = 50) throws -> String {
        let yaml = """
            name: tinylm
            seed: 1
            data: {source: text, path: corpus, split: {train: 0.8, val: 0.1, test: 0.1}}
            model: {kind: transformer, context: 16, hidden: 32, heads: 2, blocks: 2, ffn: \(moe ? 32 : 64)\(moe ? ", moe_blocks: [1]" : "")}
            \(moe ? "experts: 4\nsplit: {strategy: replicate}\nrouter: {type: topk, k: 2, capacity_factor: null}" : "")
            train: {steps: \(steps), batch_size: 8, lr: 0.003, betas: [0.9, 0.99], log_every: 10, eval_every: 100, checkpoint_every: \(checkpointEvery)}
            eval: {splits: [val, test], batch_size: 7}
            """
        let dir = try CLI.workspace(yaml)
        try FileManager.default.createDirectory(atPath: dir + "/corpus", withIntermediateDirectories: true)
        try String(repeating: "In the beginning God created the heaven and the earth. ", count: 40)
            .write(toFile: dir + "/corpus/prose.txt", atomically: true, encoding: .utf8)
        try String(repeating: "def add(a, b):\n    return a + b\n\n", count: 70)
            .write(toFile: dir + "/corpus/code.txt", atomically: true, encoding: .utf8)
        return dir
    }

    func testTrainsEvaluatesAndIsRecomputedByNumpy() throws {
        let dir = try workspace(steps: 200, moe: true)
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let runDir = dir + "/" + r.lastLine
        let data = try H5File.open(runDir + "/tasks/data.h5")
        XCTAssertEqual(try data.readStrings("data/domains"), ["code", "prose"])
        XCTAssertEqual(try data.openDataset("data/val/tokens").dtype.description, "uint16")
        XCTAssertEqual(try data.openDataset("data/val/domain").dtype.description, "int64")
        let train = try H5File.open(runDir + "/tasks/train.h5")
        XCTAssertEqual(try train.attribute("steps", as: Int64.self), 200)
        for name in ["train_loss", "tokens_per_second", "lr", "grad_norm"] {
            XCTAssertEqual(try train.read("metrics/" + name, as: Double.self).values.count, 20, name)
        }
        XCTAssertEqual(try train.read("router/1/load", as: Double.self).shape, [20, 4])
        let loss = try CLI.trainSeries(runDir, "train_loss")
        XCTAssertLessThan(loss.last!, loss.first! - 1, "the model learns: \(loss)")
        let run = try H5File.open(runDir + "/run.h5")
        for domain in ["code", "prose"] {
            for metric in ["val_loss", "val_accuracy", "val_bits_per_byte", "test_loss", "test_bits_per_byte"] {
                XCTAssertTrue(run.exists("summary/final/domains/\(domain)/\(metric)"), "\(domain)/\(metric)")
            }
        }
        let show = try CLI.run(["show", runDir], in: dir)
        XCTAssertEqual(show.status, 0, show.stderr)
        XCTAssertTrue(show.stdout.contains("per domain:"), show.stdout)
        XCTAssertTrue(show.stdout.contains("val_bits_per_byte"), show.stdout)
        let eval = try CLI.run(["eval", runDir, runDir + "/tasks/data.h5", "--batch-size", "7"], in: dir)
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let bpb = try run.readScalar("summary/final/test_bits_per_byte", as: Double.self)
        XCTAssertTrue(eval.stdout.contains("test: ") && eval.stdout.contains(String(format: "bits per byte %.4f", bpb)), eval.stdout)
        try CLI.assertNumpyReproduces(runDir, models: ["final"])
    }

    /// The shipped experiments/lm-dense.yaml and lm-moe.yaml run from the repository as written,
    /// shortened by overrides (20 steps; 0.25 % val and test splits, so each evaluation reads
    /// 22,000 tokens instead of 890,000): the shipped corpus's four domains get their
    /// per-domain summary, and `moe-run sample` on the run directory prints text.
    func testShippedLanguageModelsRunAndSample() throws {
        let dir = try CLI.workspace("")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["lm-dense", "lm-moe"] {
            let spec = CLI.repositoryRoot.appendingPathComponent("experiments/\(name).yaml").path
            let r = try CLI.run([spec, "--set", "train.steps=20", "--set", "data.split={train: 0.995, val: 0.0025, test: 0.0025}",
                                 "--out", dir + "/out", "--quiet"], in: dir)
            XCTAssertEqual(r.status, 0, name + ": " + r.stderr)
            let runDir = r.lastLine
            XCTAssertTrue(runDir.hasPrefix(dir + "/out/\(name)/"), runDir)
            let train = try H5File.open(runDir + "/tasks/train.h5")
            XCTAssertEqual(try train.attribute("steps", as: Int64.self), 20, name)
            XCTAssertEqual(train.exists("router/0/load"), name == "lm-moe", name)
            let run = try H5File.open(runDir + "/run.h5")
            for domain in ["bible", "jargon", "dictionary", "python"] {
                for metric in ["val_loss", "val_bits_per_byte", "test_loss", "test_bits_per_byte"] {
                    let value = try run.readScalar("summary/final/domains/\(domain)/\(metric)", as: Double.self)
                    XCTAssertTrue(value.isFinite && value > 0, "\(name) \(domain)/\(metric) = \(value)")
                }
            }
            let sample = try CLI.run(["sample", runDir, "--prompt", "The ", "--tokens", "50", "--seed", "0"], in: dir)
            XCTAssertEqual(sample.status, 0, name + ": " + sample.stderr)
            XCTAssertFalse(sample.stdout.isEmpty, name)
            XCTAssertTrue(sample.stderr.hasPrefix("sample: 50 tokens in "), sample.stderr)
        }
    }
}
