import XCTest
@testable import MoEReport

/// The compare table of `moe-run report` without a run: CSV parsing, sorting, the varying
/// columns, the text and HTML forms. (The sweep end-to-end tests check the same table through
/// the CLI on real runs.)
final class CompareTableTests: XCTestCase {
    func testCSVQuotingEmbeddedCommasQuotesAndNewlines() {
        let rows = CompareTable.parseCSV("a,b,c\n1,\"x, y\",\"say \"\"hi\"\"\"\n2,\"two\nlines\",\n3,,last")
        XCTAssertEqual(rows, [["a", "b", "c"], ["1", "x, y", "say \"hi\""], ["2", "two\nlines", ""], ["3", "", "last"]])
        XCTAssertEqual(CompareTable.parseCSV("a,b\r\n1,2\r\n"), [["a", "b"], ["1", "2"]])
        XCTAssertEqual(CompareTable.parseCSV(""), [])
    }

    func testCSVFileShortRowsArePaddedAndErrorsNameTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-report-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "trial,status,test_loss\n1,complete\n2,failed,0.5\n".write(toFile: dir + "/s.csv", atomically: true, encoding: .utf8)
        let t = try CompareTable.csv(path: dir + "/s.csv")
        XCTAssertEqual(t.columns, ["trial", "status", "test_loss"])
        XCTAssertEqual(t.rows, [["1", "complete", ""], ["2", "failed", "0.5"]])
        try "".write(toFile: dir + "/empty.csv", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CompareTable.csv(path: dir + "/empty.csv")) {
            XCTAssertEqual(($0 as? ReportError)?.description, "\(dir)/empty.csv: empty file")
        }
        XCTAssertThrowsError(try CompareTable.csv(path: dir + "/none.csv")) {
            XCTAssertEqual(($0 as? ReportError)?.description, "\(dir)/none.csv: cannot read the file")
            XCTAssertEqual(($0 as? ReportError)?.exitCode, 2)
        }
    }

    private let table = CompareTable(columns: ["trial", "router.k", "status", "test_accuracy", "test_loss", "note"], rows: [
        ["1", "1", "complete", "0.9", "0.30", "b"],
        ["2", "2", "complete", "0.95", "0.25", "a"],
        ["3", "1", "failed", "", "", "c"],
        ["4", "2", "complete", "0.9", "10", "a"],
    ])

    func testSortAccuracyDescendingOthersAscendingNumericEmptyLastStable() throws {
        XCTAssertEqual(try table.sorted(by: "test_accuracy").column("trial"), ["2", "1", "4", "3"], "ties keep their order, empty last")
        XCTAssertEqual(try table.sorted(by: "test_loss").column("trial"), ["2", "1", "4", "3"], "10 > 0.30 as numbers, not as text")
        XCTAssertEqual(try table.sorted(by: "note").column("trial"), ["2", "4", "1", "3"])
        XCTAssertThrowsError(try table.sorted(by: "accuracy")) {
            XCTAssertEqual(($0 as? ReportError)?.description,
                           "--sort: unknown column \"accuracy\"; the columns are: trial, router.k, status, test_accuracy, test_loss, note")
        }
    }

    func testVaryingKeepsDiffersAndKeptColumnsDropsDropped() {
        let t = CompareTable(columns: ["trial", "status", "lr", "k", "run_dir"], rows: [
            ["1", "complete", "0.1", "1", "/a"], ["2", "complete", "0.1", "2", "/b"],
        ])
        let v = t.varying(keep: ["trial", "status"], drop: ["run_dir"])
        XCTAssertEqual(v.columns, ["trial", "status", "k"])
        XCTAssertEqual(v.rows, [["1", "complete", "1"], ["2", "complete", "2"]])
    }

    func testTextAlignsNumbersRightAndTextLeft() {
        let t = CompareTable(columns: ["name", "loss"], rows: [["dense", "0.5"], ["moe-topk", "12.25"]])
        XCTAssertEqual(t.text(), """
            name       loss
            --------  -----
            dense       0.5
            moe-topk  12.25
            """)
    }

    func testHTMLEscapesCells() {
        let t = CompareTable(columns: ["a<b"], rows: [["x & \"y\""]])
        XCTAssertEqual(t.html(), "<table>\n<tr><th>a&lt;b</th></tr>\n<tr><td>x &amp; &quot;y&quot;</td></tr>\n</table>\n")
    }
}
