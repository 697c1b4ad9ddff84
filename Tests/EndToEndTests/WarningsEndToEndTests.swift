import Foundation
import MoEHDF5
import XCTest

/// Issue 11 item 4: a key without effect as configured is a warning (stderr once, run.h5's
/// `warnings` attribute), so sweeps and overrides that change the key it depends on run;
/// `validate --strict` keeps it an error.
final class WarningsEndToEndTests: XCTestCase {
    static func experiment(_ name: String) -> String { CLI.repositoryRoot.appendingPathComponent("experiments/\(name)").path }

    /// `PATH:LINE:COL` of the value written after `needle` in the experiment file.
    static func position(of needle: String, in path: String) throws -> String {
        let lines = try String(contentsOfFile: path, encoding: .utf8).components(separatedBy: "\n")
        let line = try XCTUnwrap(lines.firstIndex { $0.contains(needle) })
        let column = lines[line].range(of: needle)!.upperBound
        return "\(path):\(line + 1):\(lines[line].distance(from: lines[line].startIndex, to: column) + 1)"
    }

    /// The case: `normalize_topk: true` no longer refuses the k=1 trials.
    func testTopkSweepOverKAndExpertsRunsFourTrials() throws {
        let spec = Self.experiment("moe-topk.yaml")
        let dir = try CLI.workspace("unused: true\n")
        let r = try CLI.run(["sweep", spec, "--grid", "router.k=1,2", "--grid", "experts=2,4", "--set", "train.epochs=1",
                             "--set", "data.samples=800", "--set", "train.warmup_steps=0", "--out", dir + "/out", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let warning = try Self.position(of: "normalize_topk: ", in: spec)
            + ": router.normalize_topk: has no effect with router.k: 1 (the one gate keeps its probability)"
        // Once for the sweep, naming the trials (k=1 with 2 and with 4 experts), not once per trial.
        XCTAssertEqual(r.stderr, "moe-run: warning: \(warning) (trials 1, 2)\n")
        let sweep = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/moe-topk").first { $0.hasPrefix("sweep-") })
        let csv = try String(contentsOfFile: dir + "/out/moe-topk/\(sweep)/summary.csv", encoding: .utf8)
        let rows = csv.split(separator: "\n").dropFirst()
        XCTAssertEqual(rows.count, 4, csv)
        XCTAssertEqual(rows.filter { $0.contains(",complete,") }.count, 4, csv)
        // Each k=1 trial's run.h5 records the warning; the k=2 trials have none.
        var stored: [String] = []
        for run in try FileManager.default.contentsOfDirectory(atPath: dir + "/out/moe-topk") where !run.hasPrefix("sweep-") {
            stored.append(try H5File.open(dir + "/out/moe-topk/\(run)/run.h5").stringAttribute("warnings"))
        }
        XCTAssertEqual(stored.sorted(), ["", "", warning, warning])
    }

    /// `--set fusion.weights=uniform` on a spec that sets `fusion.temperature` runs, warns once and
    /// stores the warning; `validate --strict` refuses it with today's error.
    func testOverrideOfADependencyRunsAndStoresTheWarning() throws {
        let spec = Self.experiment("fuse-shared-init.yaml")
        let dir = try CLI.workspace("unused: true\n")
        let short = ["--set", "train.epochs=1", "--set", "split.pretrain_epochs=1", "--set", "data.samples=400",
                     "--set", "fusion.finetune.epochs=1", "--set", "train.warmup_steps=0"]
        let r = try CLI.run([spec, "--set", "fusion.weights=uniform", "--out", dir + "/out", "--quiet"] + short, in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let warning = try Self.position(of: "temperature: ", in: spec) + ": fusion.temperature: applies only with fusion.weights: val_loss"
        XCTAssertEqual(r.stderr, "moe-run: warning: \(warning)\n")
        let runDir = r.lastLine
        let run = try H5File.open(runDir + "/run.h5")
        XCTAssertEqual(try run.stringAttribute("status"), "complete")
        XCTAssertEqual(try run.stringAttribute("warnings"), warning)
        XCTAssertTrue(try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8).contains("warning: " + warning))

        let valid = try CLI.run(["validate", spec, "--set", "fusion.weights=uniform"], in: dir)
        XCTAssertEqual(valid.status, 0, valid.stderr)
        XCTAssertEqual(valid.stderr, "moe-run: warning: \(warning)\n")
        XCTAssertEqual(valid.stdout, "\(spec): valid (fuse-shared-init)\n")
        let strict = try CLI.run(["validate", spec, "--set", "fusion.weights=uniform", "--strict"], in: dir)
        XCTAssertEqual(strict.status, 2)
        XCTAssertEqual(strict.stderr, "moe-run: error: \(warning)\nhint: remove the key, or change the setting it depends on\n")
        XCTAssertEqual(strict.stdout, "")
    }

    /// A dense baseline of an MoE spec without editing it: `--unset router --set experts=1`, or
    /// `--set router=null`; warnings point into the file.
    func testUnsetMakesADenseBaselineOfAnMoESpec() throws {
        let spec = Self.experiment("moe-topk.yaml")
        let moeBlocks = try Self.position(of: "moe_blocks: ", in: spec) + ": model.moe_blocks: has no effect with experts: 1 (a dense model has no router or MoE blocks)"
        let strategy = try Self.position(of: "strategy: ", in: spec) + ": split.strategy: replicate has no effect with experts: 1 (one copy of the FFN is the dense model)"
        for removal in [["--unset", "router"], ["--set", "router=null"]] {
            let r = try CLI.run(["validate", spec] + removal + ["--set", "experts=1"], in: NSTemporaryDirectory())
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(r.stdout, "\(spec): valid (moe-topk)\n")
            XCTAssertEqual(r.stderr, "moe-run: warning: \(strategy)\nmoe-run: warning: \(moeBlocks)\n", "\(removal)")
        }
        // The plan is the dense one: one training task of a dense model.
        let plan = try CLI.run(["plan", spec, "--unset", "router", "--set", "experts=1", "--json"], in: NSTemporaryDirectory())
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertFalse(plan.stdout.contains("expert"), plan.stdout)
        // A sweep passes the removal on to every trial (its log shows the trial's command line).
        let dir = try CLI.workspace("unused: true\n")
        let sweep = try CLI.run(["sweep", spec, "--unset", "router", "--set", "experts=1", "--set", "train.epochs=1", "--set", "data.samples=400",
                                 "--set", "train.warmup_steps=0", "--grid", "train.lr=0.001,0.002", "--out", "out", "--quiet"], in: dir)
        XCTAssertEqual(sweep.status, 0, sweep.stderr)
        XCTAssertEqual(sweep.stderr, "moe-run: warning: \(strategy) (every trial)\nmoe-run: warning: \(moeBlocks) (every trial)\n")
        let log = try String(contentsOfFile: dir + "/" + sweep.lastLine + "/logs/trial-1.txt", encoding: .utf8)
        XCTAssertTrue(log.hasPrefix("$ moe-run \(spec) --unset router --set experts=1 "), log)
        let unknown = try CLI.run(["validate", spec, "--unset", "routr"], in: NSTemporaryDirectory())
        XCTAssertEqual(unknown.status, 2)
        XCTAssertEqual(unknown.stderr, "moe-run: error: --unset:1:1: routr: unknown key; did you mean router?\n")
        // A nullable key keeps null as its value: dropless capacity is not the default removed.
        let nullable = try CLI.run(["validate", spec, "--set", "router.capacity_factor=null", "--strict"], in: NSTemporaryDirectory())
        XCTAssertEqual(nullable.status, 0, nullable.stderr)
    }
}
