import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import MoEReport

/// The SVG output of `moe-run report` at the level of coordinates and colours, and a sweep's
/// metric-vs-key charts from a hand-written summary.csv (no runs needed). The sweep end-to-end
/// tests render real reports with rsvg-convert; these pin down what the pictures say.
final class ChartTests: XCTestCase {
    /// The `points` attribute of each `<polyline class="series">`, by its data-series label.
    private func polylines(_ svg: String) -> [String: String] {
        var out: [String: String] = [:]
        for part in svg.components(separatedBy: "<polyline class=\"series\" data-series=\"").dropFirst() {
            let label = String(part.prefix { $0 != "\"" })
            let points = part.components(separatedBy: "points=\"")[1].prefix { $0 != "\"" }
            out[label] = String(points)
        }
        return out
    }

    private func parses(_ svg: String, file: StaticString = #filePath, line: UInt = #line) {
        let parser = XMLParser(data: Data(svg.utf8))
        XCTAssertTrue(parser.parse(), "well-formed XML: \(String(describing: parser.parserError))", file: file, line: line)
    }

    func testLineChartMapsDataToThePlotArea() {
        // x 0…1 and y 0…1 fill the plot area: left 78, right edge 800 − 250 = 550, top 44, bottom 440 − 58 = 382.
        let chart = LineChart(title: "t", xLabel: "step", yLabel: "loss",
                              series: [ChartSeries(label: "a", points: [(0, 0), (0.5, 1), (1, 0.5), (2, .nan)])])
        let svg = chart.svg()
        parses(svg)
        XCTAssertEqual(polylines(svg), ["a": "78.00,382.00 314.00,44.00 550.00,213.00"], "the non-finite point is dropped")
        for tick in ["0.00", "0.20", "0.40", "0.60", "0.80", "1.00"] {
            XCTAssertTrue(svg.contains("text-anchor=\"end\">\(tick)</text>"), "y tick \(tick)")
        }
        XCTAssertTrue(svg.contains(">step</text>") && svg.contains(">loss</text>"))
        XCTAssertEqual(svg.components(separatedBy: "<circle cx=").count - 1, 3, "a marker per point")
    }

    func testSeriesColoursDashesEscapingAndLegendShortLabels() {
        var b = ChartSeries(label: "router.k=2 seed=1", points: [(0, 1), (1, 2)])
        b.colorIndex = 0
        b.dashPattern = "7 4"
        let svg = LineChart(title: "a < b & c", xLabel: "x", yLabel: "y", series: [
            ChartSeries(label: "router.k=1 seed=0", points: [(0, 1), (1, 3)]), b,
            ChartSeries(label: "third", points: [(0, 2), (1, 2)], dashed: true),
        ]).svg()
        parses(svg)
        XCTAssertTrue(svg.contains(">a &lt; b &amp; c</text>"))
        XCTAssertTrue(svg.contains("data-series=\"router.k=1 seed=0\" points=\"78.00,382.00 550.00,44.00\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\">"))
        XCTAssertTrue(svg.contains("data-series=\"router.k=2 seed=1\" points=\"78.00,382.00 550.00,213.00\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" stroke-dasharray=\"7 4\">"))
        XCTAssertTrue(svg.contains("data-series=\"third\" points=\"78.00,213.00 550.00,213.00\" fill=\"none\" stroke=\"#2ca02c\" stroke-width=\"2\" stroke-dasharray=\"6 4\">"))
        XCTAssertTrue(svg.contains(">k=1 seed=0</text>") && svg.contains(">k=2 seed=1</text>"), "legend: a.b.key=v shortened to key=v")
    }

    func testCategoricalAxisPutsCategoriesAtIndices() {
        let svg = LineChart(title: "t", xLabel: "method", yLabel: "acc",
                            series: [ChartSeries(label: "m", points: [(0, 0.5), (1, 0.7), (2, 0.6)])],
                            categories: ["average", "ties", "dare"]).svg()
        parses(svg)
        // x range −0.5 … 2.5 over 472 px: index i at 78 + (i + 0.5) · 472 / 3.
        let xs = polylines(svg)["m"]!.split(separator: " ").map { String($0.split(separator: ",")[0]) }
        XCTAssertEqual(xs, ["156.67", "314.00", "471.33"])
        for name in ["average", "ties", "dare"] { XCTAssertTrue(svg.contains("text-anchor=\"middle\">\(name)</text>"), name) }
    }

    func testAxisTicksAndLabels() {
        XCTAssertEqual(Axis.ticks((0, 1)), [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1])
        XCTAssertEqual(Axis.ticks((3, 47)), [0, 10, 20, 30, 40, 50])
        XCTAssertEqual(Axis.ticks((5, 5)), [5])
        XCTAssertEqual(Axis.range([2, 2]).0, 1.9, accuracy: 1e-12)
        XCTAssertEqual(Axis.range([]).1, 1)
        XCTAssertEqual(Axis.label(20, ticks: [0, 10]), "20")
        XCTAssertEqual(Axis.label(0.4, ticks: [0, 0.2]), "0.40")
        XCTAssertEqual(Axis.label(0.125, ticks: []), "0.125")
        XCTAssertEqual(Axis.label(8, ticks: []), "8")
    }

    func testHeatMapCellsScaleFromWhiteToDark() {
        let svg = HeatMap(title: "router", xLabel: "step", yLabel: "expert", rowNames: ["e0", "e1"],
                          columnValues: [20, 40, 60], values: [[0, 1, 2], [4, 3, 2]], scaleLabel: "load").svg()
        parses(svg)
        let fills = svg.components(separatedBy: "<rect class=\"cell\"").dropFirst().map { $0.components(separatedBy: "fill=\"")[1].prefix(7) }
        XCTAssertEqual(fills.count, 6)
        XCTAssertEqual(fills[0], "#ffffff", "0 is white")
        XCTAssertEqual(fills[3], "#081d44", "the largest value is the darkest")
        XCTAssertEqual(fills[2], fills[5], "equal values, equal colours")
        XCTAssertEqual(SVG.heat(0.5), "#4292c6")
        for label in [">e0</text>", ">e1</text>", ">20</text>", ">load</text>"] { XCTAssertTrue(svg.contains(label), label) }
    }

    /// A sweep directory with only summary.csv: each swept setting gets its metric-vs-key chart,
    /// points are the mean over seeds with one dot per seed and the 95 % CI as an error bar (none
    /// for a lone seed), failed trials and the seed key are left out, a metric equal in every
    /// trial gets no chart, and index.html shows the varying columns and the grouped table.
    func testSweepReportFromSummaryCSV() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-report-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            trial,experts,seed,status,test_accuracy,test_loss,dropped_fraction,run_dir
            1,2,0,complete,0.80,0.5,0,
            2,2,1,complete,0.90,0.4,0,
            3,8,0,complete,0.70,0.3,0,
            4,8,1,failed,,,,
            """.write(toFile: dir + "/summary.csv", atomically: true, encoding: .utf8)
        var report = try Report(directory: dir + "/", sort: "test_loss")
        XCTAssertTrue(report.isSweep)
        XCTAssertEqual(report.directory, dir)
        XCTAssertEqual(report.table.column("trial"), ["3", "2", "1", "4"])
        XCTAssertEqual(report.shownTable.columns, ["trial", "experts", "seed", "status", "test_accuracy", "test_loss", "dropped_fraction"],
                       "dropped_fraction varies: the failed trial has none")
        let index = try report.write()
        XCTAssertEqual(index, dir + "/report/index.html")
        XCTAssertEqual(report.plots, ["test_accuracy-vs-experts.svg", "test_loss-vs-experts.svg"], "no chart against seed, none of dropped_fraction")
        let svg = try String(contentsOfFile: dir + "/report/test_accuracy-vs-experts.svg", encoding: .utf8)
        parses(svg)
        // Mean accuracy 0.85 at experts = 2 (seeds 0 and 1), 0.70 at 8 (seed 1 failed).
        XCTAssertTrue(svg.contains(">test_accuracy vs experts (mean ± 95 % CI over seed, n = 1–2; dots: each trial)</text>"), svg)
        // experts = 2: sd 0.0707, CI 0.85 ± t₀.₉₇₅(1) · 0.0707 / √2 = 0.85 ± 0.635 = [0.215, 1.485];
        // the y axis covers it: ticks 0, 0.5, 1, 1.5, 338 px high under the title and the one
        // line of note (top 44 + 15): y ↦ 59 + 338 · (1.5 − y) / 1.5.
        XCTAssertEqual(polylines(svg)["test_accuracy"], "99.45,205.47 528.55,239.27")
        XCTAssertTrue(svg.contains("<text class=\"note\" x=\"400.00\" y=\"44.00\" text-anchor=\"middle\">each trial's final model (run.h5 /summary/final, else its first model) on the whole test split</text>"), svg)
        XCTAssertEqual(svg.components(separatedBy: "class=\"replicate\"").count - 1, 3, "one dot per complete trial")
        XCTAssertEqual(svg.components(separatedBy: "class=\"error-bar\"").count - 1, 1, "n = 1 at experts = 8: no interval")
        XCTAssertTrue(svg.contains("<line class=\"error-bar\" x1=\"99.45\" y1=\"348.62\" x2=\"99.45\" y2=\"62.31\""), svg)
        let html = try String(contentsOfFile: index, encoding: .utf8)
        XCTAssertTrue(html.contains("<th>trial</th><th>experts</th><th>seed</th><th>status</th><th>test_accuracy</th><th>test_loss</th><th>dropped_fraction</th></tr>"), html)
        XCTAssertFalse(html.contains("<th>run_dir</th>"))
        XCTAssertTrue(html.contains("<tr><th>experts</th><th>n</th><th>test_loss</th><th>test_loss_ci95</th><th>test_accuracy</th><th>test_accuracy_ci95</th></tr>\n<tr><td>8</td><td>1</td><td>0.3</td><td></td><td>0.7</td><td></td></tr>\n<tr><td>2</td><td>2</td><td>0.450 ± 0.071</td><td>[-0.185, 1.085]</td><td>0.850 ± 0.071</td><td>[0.215, 1.485]</td></tr>"), html)
        for p in report.plots { XCTAssertTrue(html.contains("<img src=\"\(p)\""), p) }

        XCTAssertThrowsError(try Report(directory: dir + "/report", sort: nil)) {
            XCTAssertEqual(($0 as? ReportError)?.description, "\(dir)/report: neither a sweep directory (summary.csv) nor a run directory (run.h5)")
        }
    }
}
