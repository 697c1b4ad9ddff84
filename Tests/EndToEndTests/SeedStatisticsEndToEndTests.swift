import Foundation
import XCTest

/// Seed statistics through the built binary: a 2 × 3 sweep (router.k × seed) prints and writes
/// n, mean ± sd and the 95 % Student t interval per setting, recomputed here from summary.csv;
/// `report --group-by` regroups; the metric-vs-key plot has the intervals as error bars and
/// renders to PNG.
final class SeedStatisticsEndToEndTests: XCTestCase {
    /// t₀.₉₇₅ with 2 degrees of freedom (tables): the interval of a mean of 3 seeds.
    static let t2 = 4.30265272974946

    nonisolated(unsafe) static var swept: (dir: String, sweep: String, stdout: String)?

    /// The 2 × 3 sweep, run once for the tests that read it.
    func seedSweep() throws -> (dir: String, sweep: String, stdout: String) {
        if let s = Self.swept { return s }
        let dir = try CLI.workspace(tinyMoESpec(name: "seeds", epochs: 1, router: "{type: topk, k: 1}"))
        let r = try CLI.run(["sweep", "spec.yaml", "--grid", "router.k=1,2", "--grid", "seed=1,2,3", "--jobs", "2"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        Self.swept = (dir, dir + "/" + r.lastLine, r.stdout)
        return Self.swept!
    }

    /// `moe-run ls` lists the six runs with their swept values and metrics; a missing folder is refused.
    func testListShowsTheRunsOfTheSweep() throws {
        let (dir, sweep, _) = try seedSweep()
        let ls = try CLI.run(["ls", "out"], in: dir)
        XCTAssertEqual(ls.status, 0, ls.stderr)
        let lines = ls.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 8, ls.stdout)
        let header = lines[0].split(separator: " ").map(String.init)
        XCTAssertEqual(header, ["status", "name", "id", "swept", "val_loss", "test_loss", "test_accuracy", "age"])
        let summary = try String(contentsOfFile: sweep + "/summary.csv", encoding: .utf8).split(separator: "\n")
            .map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let h = summary[0]
        for trial in summary.dropFirst() {
            let id = (trial[h.firstIndex(of: "run_dir")!] as NSString).lastPathComponent
            let row = try XCTUnwrap(lines.first { $0.contains(" \(id) ") }, "run \(id) listed")
            let cells = row.components(separatedBy: "  ").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            XCTAssertEqual(Array(cells.prefix(4)), ["complete", "seeds", id, "router.k=\(trial[1]) seed=\(trial[2])"], row)
            XCTAssertEqual(Double(cells[6])!, Double(trial[h.firstIndex(of: "test_accuracy")!])!, accuracy: 5e-4, row)
            XCTAssertNotNil(cells[7].range(of: "^[0-9]+[smhd]$", options: .regularExpression), row)
        }
        let one = try CLI.run(["ls", sweep + "/../" + (summary[1][h.firstIndex(of: "run_dir")!] as NSString).lastPathComponent], in: dir)
        XCTAssertEqual(one.stdout.split(separator: "\n").count, 3, "a run directory lists itself: \(one.stdout)")
        let missing = try CLI.run(["ls", "nowhere"], in: dir)
        XCTAssertEqual(missing.status, 2)
        XCTAssertEqual(missing.stderr, "moe-run: error: nowhere: no such directory\n")
        let empty = try CLI.run(["ls", "."], in: dir + "/out/seeds/" + (sweep as NSString).lastPathComponent)
        XCTAssertEqual(empty.status, 0)
        XCTAssertEqual(empty.stdout, "no runs under .\n")
    }

    func testSweepOverThreeSeedsShowsMeanSDAndConfidenceInterval() throws {
        let (dir, sweep, stdout) = try seedSweep()
        let r = (stdout: stdout, ())
        XCTAssertTrue(r.stdout.contains("Grouped by router.k, pooled over seed: n trials, mean ± sd, 95 % CI of the mean (Student t, n − 1 df)"), r.stdout)

        // The expected statistics, from summary.csv's per-trial accuracies.
        let summary = try String(contentsOfFile: sweep + "/summary.csv", encoding: .utf8).split(separator: "\n")
            .map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let header = summary[0]
        let (k, acc) = (header.firstIndex(of: "router.k")!, header.firstIndex(of: "test_accuracy")!)
        var expected: [String: (mean: Double, sd: Double, low: Double, high: Double)] = [:]
        for value in ["1", "2"] {
            let xs = summary.dropFirst().filter { $0[k] == value }.map { Double($0[acc])! }
            XCTAssertEqual(xs.count, 3)
            let mean = xs.reduce(0, +) / 3
            let sd = (xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 2).squareRoot()
            XCTAssertGreaterThan(sd, 0, "the seeds give different accuracies: \(xs)")
            let half = Self.t2 * sd / 3.0.squareRoot()
            expected[value] = (mean, sd, mean - half, mean + half)
        }

        // summary-groups.csv.
        let groups = try String(contentsOfFile: sweep + "/summary-groups.csv", encoding: .utf8).split(separator: "\n")
            .map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        XCTAssertEqual(groups.count, 3, "a header and two settings")
        let gh = groups[0]
        XCTAssertEqual(Array(gh.prefix(3)), ["router.k", "n", "trials"])
        for row in groups.dropFirst() {
            let e = try XCTUnwrap(expected[row[0]])
            XCTAssertEqual(row[1], "3")
            XCTAssertEqual(row[gh.firstIndex(of: "test_accuracy_n")!], "3")
            XCTAssertEqual(Double(row[gh.firstIndex(of: "test_accuracy_mean")!])!, e.mean, accuracy: 1e-8)
            XCTAssertEqual(Double(row[gh.firstIndex(of: "test_accuracy_sd")!])!, e.sd, accuracy: 1e-8)
            XCTAssertEqual(Double(row[gh.firstIndex(of: "test_accuracy_ci95_low")!])!, e.low, accuracy: 1e-8)
            XCTAssertEqual(Double(row[gh.firstIndex(of: "test_accuracy_ci95_high")!])!, e.high, accuracy: 1e-8)
        }

        // The printed table of `report`: router.k, n, then mean ± sd and the interval per metric.
        let rep = try CLI.run(["report", sweep, "--no-plots"], in: dir)
        XCTAssertEqual(rep.status, 0, rep.stderr)
        let lines = rep.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let h = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("Grouped by router.k") })
        let columns = lines[h + 1].split(separator: " ").map(String.init)
        XCTAssertEqual(Array(columns.prefix(2)), ["router.k", "n"], lines[h + 1])
        let ai = try XCTUnwrap(columns.firstIndex(of: "test_accuracy"))
        XCTAssertEqual(columns[ai + 1], "test_accuracy_ci95")
        for line in lines[(h + 3)...(h + 4)] {
            let cells = line.components(separatedBy: "  ").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            let e = try XCTUnwrap(expected[cells[0]], line)
            XCTAssertEqual(cells[1], "3", line)
            let decimals = max(0, 1 - Int(floor(log10(e.sd))))
            XCTAssertEqual(cells[ai], String(format: "%.\(decimals)f ± %.\(decimals)f", e.mean, e.sd), line)
            XCTAssertEqual(cells[ai + 1], String(format: "[%.\(decimals)f, %.\(decimals)f]", e.low, e.high), line)
        }

        // --group-by seed pools router.k instead; an unknown key is refused and writes nothing.
        let bySeed = try CLI.run(["report", sweep, "--group-by", "seed", "--no-plots"], in: dir)
        XCTAssertEqual(bySeed.status, 0, bySeed.stderr)
        XCTAssertTrue(bySeed.stdout.contains("Grouped by seed, pooled over router.k"), bySeed.stdout)
        let regrouped = try String(contentsOfFile: sweep + "/summary-groups.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(regrouped.count, 4)
        XCTAssertTrue(regrouped[0].hasPrefix("seed,n,trials,"), String(regrouped[0]))
        XCTAssertEqual(regrouped.dropFirst().map { $0.split(separator: ",")[1] }, ["2", "2", "2"])
        let before = try String(contentsOfFile: sweep + "/summary-groups.csv", encoding: .utf8)
        let bad = try CLI.run(["report", sweep, "--group-by", "experts"], in: dir)
        XCTAssertEqual(bad.status, 2)
        XCTAssertEqual(bad.stderr, "moe-run: error: --group-by: \"experts\" is not a swept key; the swept keys are: router.k, seed\n")
        XCTAssertEqual(try String(contentsOfFile: sweep + "/summary-groups.csv", encoding: .utf8), before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: sweep + "/report"))

        // The plot: one mean per setting with its interval as an error bar, rendered to PNG.
        let plots = try CLI.run(["report", sweep], in: dir)
        XCTAssertEqual(plots.status, 0, plots.stderr)
        let svg = try String(contentsOfFile: sweep + "/report/test_accuracy-vs-router.k.svg", encoding: .utf8)
        XCTAssertTrue(svg.contains("test_accuracy vs router.k (mean ± 95 % CI over seed, n = 3; dots: each trial)"), svg)
        XCTAssertEqual(svg.components(separatedBy: "class=\"error-bar\"").count - 1, 2)
        XCTAssertEqual(svg.components(separatedBy: "class=\"replicate\"").count - 1, 6)
        let html = try String(contentsOfFile: sweep + "/report/index.html", encoding: .utf8)
        XCTAssertTrue(html.contains("<th>router.k</th><th>n</th>"), html)
        let svgs = try FileManager.default.contentsOfDirectory(atPath: sweep + "/report").filter { $0.hasSuffix(".svg") }.sorted()
        XCTAssertTrue(svgs.contains("train_loss.svg") && svgs.contains("val_loss.svg") && svgs.contains("router-trial-1-1.svg"), "\(svgs)")
        try CLI.assertSVGsRender(svgs, in: sweep + "/report", caller: "SeedStatisticsEndToEndTests")
    }
}
