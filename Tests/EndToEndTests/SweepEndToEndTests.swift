import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import MoEHDF5
import XCTest

/// `moe-run sweep` and `moe-run report` on tiny specs: trial listing, validation of every
/// combination before anything runs, a 2 × 2 grid with its summary.csv/summary.h5, resume,
/// a failing trial, the compare table and the SVG plots (parsed, and rendered by rsvg-convert).
final class SweepEndToEndTests: XCTestCase {
    /// A 2 × 2 grid of a tiny MoE spec (router.k × experts), run once for the tests that read it.
    struct GridSweep {
        let workspace: String
        let directory: String
        let result: CLI.Result
    }

    nonisolated(unsafe) static var grid: GridSweep?

    static let gridArguments = ["sweep", "spec.yaml", "--grid", "router.k=1,2", "--grid", "experts=2,4", "--jobs", "2"]

    func gridSweep() throws -> GridSweep {
        if let g = Self.grid { return g }
        let dir = try CLI.workspace(tinyMoESpec(name: "grid", epochs: 1, router: "{type: topk, k: 1}"))
        let r = try CLI.run(Self.gridArguments, in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let g = GridSweep(workspace: dir, directory: dir + "/" + r.lastLine, result: r)
        Self.grid = g
        return g
    }

    func testSpecWithSweepAsksForTheSweepCommand() throws {
        let dir = try CLI.workspace(tinySpec(extra: "sweep:\n  parameters:\n    train.lr: [0.001, 0.003]\n"))
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr.split(separator: "\n").first.map(String.init),
                       "moe-run: error: spec.yaml:22:3: sweep: this spec defines a sweep; run it with `moe-run sweep SPEC` (`--dry-run` lists the trials)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"))
    }

    func testDryRunListsTrialsAndWritesNothing() throws {
        let dir = try CLI.workspace(tinySpec(extra: "sweep:\n  parameters:\n    train.lr: [0.001, 0.003]\n    model.hidden: [8, 16]\n"))
        let r = try CLI.run(["sweep", "spec.yaml", "--dry-run"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines[0].hasPrefix("sweep tiny: 4 trials (grid over train.lr, model.hidden) → out/tiny/sweep-"), lines[0])
        let trials = lines.filter { $0.hasPrefix("trial ") }
        XCTAssertEqual(trials.count, 4)
        // The grid in the order the parameters are listed, the last varying fastest.
        for (i, (lr, hidden)) in [("0.001", 8), ("0.001", 16), ("0.003", 8), ("0.003", 16)].enumerated() {
            XCTAssertTrue(trials[i].hasPrefix("trial \(i + 1)/4  train.lr=\(lr) model.hidden=\(hidden)  → out/tiny/"), trials[i])
        }
        XCTAssertEqual(Set(trials.map { $0.components(separatedBy: "→ ").last! }).count, 4, "one run directory per trial")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "a dry run writes nothing")

        // --grid replaces a swept key of the spec; --random samples combinations by seed.
        let g = try CLI.run(["sweep", "spec.yaml", "--dry-run", "--grid", "model.hidden=4,8,12"], in: dir)
        XCTAssertEqual(g.stdout.split(separator: "\n").filter { $0.hasPrefix("trial ") }.count, 6, g.stderr)
        let a = try CLI.run(["sweep", "spec.yaml", "--dry-run", "--random", "3", "--seed", "5"], in: dir)
        let b = try CLI.run(["sweep", "spec.yaml", "--dry-run", "--random", "3", "--seed", "5"], in: dir)
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertEqual(a.stdout.split(separator: "\n").filter { $0.hasPrefix("trial ") }.count, 3)
        XCTAssertEqual(a.stdout, b.stdout, "the same seed draws the same trials")
    }

    func testInvalidCombinationIsRefusedNamingTheTrial() throws {
        let dir = try CLI.workspace(tinyMoESpec(name: "bad", epochs: 1))
        let r = try CLI.run(["sweep", "spec.yaml", "--grid", "router.k=1,8"], in: dir)
        XCTAssertEqual(r.status, 2)
        let lines = r.stderr.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2, r.stderr)
        XCTAssertEqual(lines[0], "moe-run: error: trial 2/2 (router.k=8) is invalid: router.k: must be between 1 and experts (4), got 8")
        XCTAssertTrue(lines[1].hasPrefix("hint: 1 of 2 trials invalid (trial 2); nothing ran."), lines[1])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing runs")

        let skip = try CLI.run(["sweep", "spec.yaml", "--grid", "router.k=1,8", "--skip-invalid", "--dry-run"], in: dir)
        XCTAssertEqual(skip.status, 0, skip.stderr)
        XCTAssertTrue(skip.stdout.contains("trial 2/2  router.k=8  INVALID: "), skip.stdout)

        let badKey = try CLI.run(["sweep", "spec.yaml", "--grid", "router.kk=1,2"], in: dir)
        XCTAssertEqual(badKey.status, 2)
        XCTAssertTrue(badKey.stderr.hasPrefix("moe-run: error: --grid:1:1: router.kk: unknown key; did you mean k?"), badKey.stderr)
    }

    func testGridWritesSummaryCSVAndH5() throws {
        let g = try gridSweep()
        XCTAssertTrue(g.directory.contains("/out/grid/sweep-"), g.directory)
        let csv = try String(contentsOfFile: g.directory + "/summary.csv", encoding: .utf8)
        let rows = csv.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        XCTAssertEqual(rows.count, 5, csv)
        XCTAssertEqual(rows[0], ["trial", "router.k", "experts", "status", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
                                 "dropped_fraction", "wall_seconds", "run_dir", "error"])
        XCTAssertEqual(rows.dropFirst().map { [$0[0], $0[1], $0[2], $0[3]] },
                       [["1", "1", "2", "complete"], ["2", "1", "4", "complete"], ["3", "2", "2", "complete"], ["4", "2", "4", "complete"]])
        for row in rows.dropFirst() {
            XCTAssertNotNil(Double(row[5]), "val_accuracy of trial \(row[0])")
            XCTAssertNotNil(Double(row[7]), "test_accuracy of trial \(row[0])")
            XCTAssertTrue(FileManager.default.fileExists(atPath: g.workspace + "/" + row[10] + "/run.h5"), row[10])
        }
        XCTAssertEqual(Set(rows.dropFirst().map { $0[10] }).count, 4)

        let file = try H5File.open(g.directory + "/summary.h5")
        XCTAssertEqual(try file.stringAttribute("kind"), "sweep")
        XCTAssertEqual(try file.read("trials/router.k", as: Double.self).values, [1, 1, 2, 2])
        XCTAssertEqual(try file.read("trials/experts", as: Double.self).values, [2, 4, 2, 4])
        XCTAssertEqual(try file.read("trials/test_accuracy", as: Double.self).values.count, 4)
        let dump = try CLI.tool("/usr/bin/h5dump", ["-d", "/trials/status", g.directory + "/summary.h5"])
        XCTAssertEqual(dump.status, 0, dump.stderr)
        XCTAssertEqual(dump.stdout.components(separatedBy: "\"complete\"").count - 1, 4, dump.stdout)
    }

    func testRerunSkipsEveryCompleteTrial() throws {
        let g = try gridSweep()
        let before = try String(contentsOfFile: g.directory + "/summary.csv", encoding: .utf8)
        let r = try CLI.run(Self.gridArguments, in: g.workspace)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.components(separatedBy: "complete, skipped").count - 1, 4, r.stdout)
        XCTAssertFalse(r.stdout.contains("started"), r.stdout)
        XCTAssertEqual(g.workspace + "/" + r.lastLine, g.directory, "the same sweep directory")
        let after = try String(contentsOfFile: g.directory + "/summary.csv", encoding: .utf8)
        let strip = { (s: String) in s.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).prefix(9).joined(separator: ",") } }
        XCTAssertEqual(strip(after), strip(before), "the same trials and metrics")
    }

    func testReportShowsOnlyVaryingColumnsAndSorts() throws {
        let g = try gridSweep()
        let r = try CLI.run(["report", g.directory, "--sort", "test_accuracy", "--no-plots"], in: g.workspace)
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let header = lines[0].split(separator: " ").map(String.init)
        XCTAssertEqual(Array(header.prefix(4)), ["trial", "router.k", "experts", "status"], lines[0])
        XCTAssertFalse(header.contains("run_dir"))
        XCTAssertFalse(header.contains("error"), "no trial has an error: the column does not vary")
        XCTAssertTrue(header.contains("wall_seconds"))
        let accuracy = header.firstIndex(of: "test_accuracy")
        XCTAssertNotNil(accuracy, "test accuracy differs between the trials: \(lines[0])")
        if let accuracy {
            let values = lines.dropFirst(2).map { Double($0.split(separator: " ").map(String.init)[accuracy])! }
            XCTAssertEqual(values.count, 4)
            XCTAssertEqual(values, values.sorted(by: >), "--sort test_accuracy: descending")
        }
        let loss = try CLI.run(["report", g.directory, "--sort", "test_loss", "--no-plots"], in: g.workspace)
        let lossHeader = loss.stdout.split(separator: "\n")[0].split(separator: " ").map(String.init)
        let li = lossHeader.firstIndex(of: "test_loss")!
        let losses = loss.stdout.split(separator: "\n").dropFirst(2).map { Double($0.split(separator: " ").map(String.init)[li])! }
        XCTAssertEqual(losses, losses.sorted(), "--sort test_loss: ascending")

        let bad = try CLI.run(["report", g.directory, "--sort", "accuracy"], in: g.workspace)
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.hasPrefix("moe-run: error: --sort: unknown column \"accuracy\"; the columns are: trial, router.k, experts, status, val_loss"), bad.stderr)
    }

    func testReportSVGsAreWellFormedAndRendered() throws {
        let g = try gridSweep()
        let r = try CLI.run(["report", g.directory], in: g.workspace)
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = g.directory + "/report"
        XCTAssertEqual(r.lastLine, report + "/index.html")
        let files = try FileManager.default.contentsOfDirectory(atPath: report).sorted()
        let svgs = files.filter { $0.hasSuffix(".svg") }
        for name in ["train_loss.svg", "val_loss.svg", "test_accuracy-vs-router.k.svg", "test_accuracy-vs-experts.svg",
                     "router-trial-1-1.svg", "router-trial-4-1.svg", "max_violation.svg"] {
            XCTAssertTrue(svgs.contains(name), "\(name) in \(svgs)")
        }
        let labels = ["router.k=1 experts=2", "router.k=1 experts=4", "router.k=2 experts=2", "router.k=2 experts=4"]
        let train = try String(contentsOfFile: report + "/train_loss.svg", encoding: .utf8)
        XCTAssertEqual(train.components(separatedBy: "<polyline class=\"series\"").count - 1, 4)
        for label in labels { XCTAssertTrue(train.contains("data-series=\"\(label)\""), label) }
        XCTAssertTrue(train.contains(">training step</text>") && train.contains(">training loss</text>"), "axis labels")
        let violation = try String(contentsOfFile: report + "/max_violation.svg", encoding: .utf8)
        for label in labels { XCTAssertTrue(violation.contains("data-series=\"\(label)\""), label) }
        XCTAssertTrue(violation.contains(">max violation</text>"), "axis label")
        let versus = try String(contentsOfFile: report + "/test_accuracy-vs-router.k.svg", encoding: .utf8)
        XCTAssertTrue(versus.contains("data-series=\"experts=2\"") && versus.contains("data-series=\"experts=4\""))
        XCTAssertTrue(versus.contains(">router.k</text>") && versus.contains(">test_accuracy</text>"))
        let heat = try String(contentsOfFile: report + "/router-trial-4-1.svg", encoding: .utf8)
        XCTAssertGreaterThanOrEqual(heat.components(separatedBy: "<rect class=\"cell\"").count - 1, 4, "experts × log steps cells")
        let index = try String(contentsOfFile: report + "/index.html", encoding: .utf8)
        for svg in svgs { XCTAssertTrue(index.contains("<img src=\"\(svg)\""), svg) }
        XCTAssertTrue(index.contains("<th>test_accuracy</th>"))

        try CLI.assertSVGsRender(svgs, in: report, caller: "SweepEndToEndTests")
    }

    func testFailingTrialIsReportedAndTheOthersComplete() throws {
        let dir = try CLI.workspace(tinySpec(name: "fail", epochs: 1))
        let r = try CLI.run(["sweep", "spec.yaml", "--grid", "train.lr=1.0e+30,0.003"], in: dir)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        let errors = r.stderr.split(separator: "\n").map(String.init)
        XCTAssertTrue(errors[0].hasPrefix("moe-run: trial 1/2 (train.lr=1e+30) failed: "), r.stderr)
        XCTAssertTrue(r.stderr.contains("moe-run: error: 1 trial failed; 1 of 2 trials complete"), r.stderr)
        XCTAssertTrue(r.stdout.contains("trial 2/2 (train.lr=0.003): complete in"), r.stdout)
        let csvPath = try FileManager.default.contentsOfDirectory(atPath: dir + "/out/fail").filter { $0.hasPrefix("sweep-") }
            .map { dir + "/out/fail/" + $0 + "/summary.csv" }.first!
        let rows = try String(contentsOfFile: csvPath, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        XCTAssertEqual(rows.dropFirst().map { $0[2] }, ["failed", "complete"])
    }

    func testInterruptedSweepExits130AndResumes() throws {
        let dir = try CLI.workspace(tinySpec(name: "stop", epochs: 40, extra: "sweep:\n  parameters:\n    train.lr: [0.001, 0.002]\n"))
        let p = try CLI.start(["sweep", "spec.yaml", "--quiet"], in: dir)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && p.isRunning && !CLI.hasCheckpoint(dir) {
            usleep(20_000)
        }
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130, "the sweep ends as interrupted")
        CLI.assertNoProcesses(in: dir)
        let sweep = try FileManager.default.contentsOfDirectory(atPath: dir + "/out/stop").first { $0.hasPrefix("sweep-") }!
        let csv = try String(contentsOfFile: "\(dir)/out/stop/\(sweep)/summary.csv", encoding: .utf8)
        XCTAssertEqual(csv.split(separator: "\n").dropFirst().map { $0.split(separator: ",")[2] }, ["interrupted", "not run"], csv)

        let r = try CLI.run(["sweep", "spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("2 of 2 trials complete"), r.stdout)
        let table = try String(contentsOfFile: "\(dir)/out/stop/\(sweep)/summary.csv", encoding: .utf8)
            .split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        let runDir = table[1][table[0].firstIndex(of: "run_dir")!]
        let log = try String(contentsOfFile: "\(dir)/\(runDir)/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("train: resuming from the checkpoint at step"), "trial 1 continues its interrupted run: \(log)")
    }

    func testFailFastStopsAtTheFirstFailure() throws {
        let dir = try CLI.workspace(tinySpec(name: "fast", epochs: 1))
        let r = try CLI.run(["sweep", "spec.yaml", "--grid", "train.lr=1.0e+30,0.003", "--fail-fast"], in: dir)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("(--fail-fast: the remaining trials were not started)"), r.stderr)
        XCTAssertFalse(r.stdout.contains("trial 2/2 (train.lr=0.003): started"), r.stdout)
    }

    func testReportOfARunDirectory() throws {
        let g = try gridSweep()
        let csv = try String(contentsOfFile: g.directory + "/summary.csv", encoding: .utf8)
        let rows = csv.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let runDir = g.workspace + "/" + rows[4][rows[0].firstIndex(of: "run_dir")!]
        let r = try CLI.run(["report", runDir], in: g.workspace)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("model  val_loss  val_accuracy  test_loss  test_accuracy\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("\nfinal "), r.stdout)
        let loss = try String(contentsOfFile: runDir + "/report/loss.svg", encoding: .utf8)
        XCTAssertTrue(loss.contains("data-series=\"train_loss\"") && loss.contains("data-series=\"val_loss\""), "training and validation curves")
        XCTAssertTrue(FileManager.default.fileExists(atPath: runDir + "/report/router-train-1.svg"))
        let violation = try String(contentsOfFile: runDir + "/report/router-violation.svg", encoding: .utf8)
        XCTAssertTrue(violation.contains("data-series=\"train\""), violation)

        let missing = try CLI.run(["report", g.workspace], in: g.workspace)
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.contains("neither a sweep directory (summary.csv) nor a run directory (run.h5)"), missing.stderr)
    }

    /// The fusion interpolation chart, from a run file holding only `/fusion/barrier` (what a
    /// fusion run writes) and a summary.
    func testReportPlotsTheFusionBarrier() throws {
        let dir = try CLI.workspace("")
        let run = dir + "/run"
        try FileManager.default.createDirectory(atPath: run + "/tasks", withIntermediateDirectories: true)
        try H5File.createAtomically(run + "/run.h5") { f in
            try f.setAttribute("kind", "run")
            try f.createScalar("summary/final/val_loss", 0.5)
            for (pair, bump) in [("expert-0--expert-1", 0.3), ("expert-0--expert-2", 0.1)] {
                let alpha = stride(from: 0.0, through: 1.0, by: 0.25).map { $0 }
                try f.createDataset("fusion/barrier/\(pair)/alpha", alpha)
                try f.createDataset("fusion/barrier/\(pair)/val_loss", alpha.map { 0.5 + bump * 4 * $0 * (1 - $0) })
            }
        }
        let r = try CLI.run(["report", "run"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        let svg = try String(contentsOfFile: run + "/report/fusion-barrier.svg", encoding: .utf8)
        XCTAssertEqual(svg.components(separatedBy: "<polyline class=\"series\"").count - 1, 2)
        XCTAssertTrue(svg.contains("data-series=\"expert-0 ↔ expert-1\"") && svg.contains(">interpolation α</text>"), svg)
        XCTAssertTrue(XMLParser(data: Data(svg.utf8)).parse())
    }
}
