import Foundation
import MoEHDF5
import XCTest

/// `moe-run SPEC.yaml` on a transformer LM spec end to end: a small text folder made here, a tiny
/// model, a few hundred steps. Checks the files the run wrote (the §5.4 data layout, the training
/// series, the per-domain summary, `moe-run show` and `moe-run eval`), the numpy recomputation of
/// the val and test figures (check_run.py).
final class LMRunEndToEndTests: XCTestCase {
    func testTrainsEvaluatesAndIsRecomputedByNumpy() throws {
        let dir = try CLI.lmWorkspace(steps: 200, moe: true)
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
        XCTAssertEqual(try train.children(of: "metrics"),
                       ["aux_loss", "eval", "grad_norm", "lr", "step", "tokens_per_second", "train_accuracy", "train_loss"])
        XCTAssertEqual(try train.read("router/1/load", as: Double.self).shape, [20, 4])
        try assertProgressLinesCountTokens(try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8), steps: 200)
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

    /// Every progress line of the run (log.txt keeps them all, one per `log_every` = 10 steps) is
    /// `train: step S/200 loss L acc A lr R N tokens/s ETA Ts`: no epoch, tokens/s, and an ETA of
    /// at least the remaining steps × batch·context tokens at that rate (rounding aside).
    private func assertProgressLinesCountTokens(_ log: String, steps: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let format = try NSRegularExpression(pattern: #"^train: step (\d+)/(\d+) loss \d+\.\d{4} acc [01]\.\d{3} lr \d\.\d{2}e[-+]\d{2} (\d+) tokens/s ETA (\d+)s$"#)
        // log.txt lines are "<ISO time> <line>".
        let lines = log.split(separator: "\n").map { String($0.drop { $0 != " " }.dropFirst()) }.filter { $0.hasPrefix("train: step ") && !$0.contains("val_loss") }
        XCTAssertEqual(lines.count, steps / 10, lines.joined(separator: "\n"), file: file, line: line)
        for (i, text) in lines.enumerated() {
            guard let m = format.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) else {
                XCTFail("not a progress line: \(text)", file: file, line: line)
                continue
            }
            let field = { (k: Int) in Double(text[Range(m.range(at: k), in: text)!])! }
            XCTAssertEqual(field(1), Double(10 * (i + 1)), text, file: file, line: line)
            XCTAssertEqual(field(2), Double(steps), text, file: file, line: line)
            // At least the remaining tokens at the training rate (more for evaluations and checkpoints).
            let eta = (field(2) - field(1)) * 8 * 16 / max(field(3), 1)
            XCTAssertGreaterThanOrEqual(field(4), eta - 0.5 - 0.01 * eta, text, file: file, line: line)
        }
        XCTAssertFalse(log.contains("samples/s"), "an LM's rate is in tokens", file: file, line: line)
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
