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
}
