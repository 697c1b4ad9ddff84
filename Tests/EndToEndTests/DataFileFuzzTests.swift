import Foundation
import MoECore
import XCTest

/// The data-file fuzzer: bad data files go through `moe-run validate` (the run's pre-flight for
/// `data.path`) and through `moe-run eval`, and every one must end with exit 2 and one line
/// `moe-run: error: …` naming the file: never a crash, a raw HDF5 error stack, or exit 0.
///
/// The files come from `Tests/python/bad_data_files.py` (h5py: wrong dtypes and ranks, NaN/Inf
/// features, bad labels, missing and empty datasets, a declared shape beyond memory, CSV with
/// ragged rows, …) and from seeded byte-level damage made here: truncations of a good file at
/// random lengths, random bytes with and without the HDF5 signature, empty files, text named
/// `.h5`, a directory.
final class DataFileFuzzTests: XCTestCase {
    /// Workspace with the generated files and a model trained on `good.h5` (4 features, 3 classes).
    private static var workspace: String?
    private static var runDir: String?

    private func prepare() throws -> (dir: String, run: String) {
        if let dir = Self.workspace, let run = Self.runDir { return (dir, run) }
        let python = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"] ?? (NSHomeDirectory() + "/.cache/moe-run/venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("no Python venv with h5py at \(python); `make test` creates it")
        }
        let dir = try CLI.workspace(Self.spec(path: "good.h5"))
        let script = CLI.repositoryRoot.appendingPathComponent("Tests/python/bad_data_files.py").path
        let made = try CLI.tool(python, [script, dir])
        XCTAssertEqual(made.status, 0, made.stderr)
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        Self.workspace = dir
        Self.runDir = dir + "/" + r.lastLine
        return (dir, Self.runDir!)
    }

    /// `data.path` is on line 2, its value at column 28.
    private static func spec(path: String) -> String {
        """
        name: fuzz
        data: {source: file, path: \(path)}
        train: {epochs: 1, batch_size: 8}
        output: {dir: out}
        """
    }

    /// Runs `validate` and `eval` on `file` (relative to the workspace); asserts exit 2, one
    /// line each, nothing written; returns the two messages without the `moe-run: error: ` prefix
    /// and the name of the spec `validate` read.
    @discardableResult
    private func refuse(_ file: String, line: UInt = #line) throws -> (validate: String, eval: String, spec: String) {
        let (dir, run) = try prepare()
        let before = Set(CLI.files(under: dir))
        let specName = "spec-\(UUID().uuidString.prefix(8)).yaml"
        try Self.spec(path: file).write(toFile: dir + "/" + specName, atomically: true, encoding: .utf8)
        var messages: [String] = []
        for args in [["validate", specName], ["eval", run, file]] {
            let r = try CLI.run(args, in: dir)
            // One error line; a `hint:` line may follow (the CLI contract's format).
            let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            XCTAssertEqual(r.status, 2, "\(args) on \(file): \(r.stdout)\(r.stderr)", line: line)
            XCTAssertTrue(lines.count == 1 || (lines.count == 2 && lines.last!.hasPrefix("hint: ")),
                          "\(args) on \(file): one line, got \(r.stderr)", line: line)
            XCTAssertTrue(r.stderr.hasPrefix("moe-run: error: "), r.stderr, line: line)
            XCTAssertTrue(r.stderr.contains(file), "\(args): the message names \(file): \(r.stderr)", line: line)
            XCTAssertFalse(r.stderr.contains("HDF5-DIAG") || r.stderr.contains("errno") || r.stderr.contains("Backtrac"),
                           "no raw HDF5 error or trace: \(r.stderr)", line: line)
            messages.append(String(lines.first ?? "").replacingOccurrences(of: "moe-run: error: ", with: ""))
        }
        try FileManager.default.removeItem(atPath: dir + "/" + specName)
        let after = Set(CLI.files(under: dir))
        XCTAssertEqual(after.subtracting(before), [], "nothing written", line: line)
        return (messages[0], messages[1], specName)
    }

    /// The exact line of the main cases, for `validate` (at `data.path`) and for `eval`.
    private func assertRefused(_ file: String, _ message: String, line: UInt = #line) throws {
        let (validate, eval, spec) = try refuse(file, line: line)
        XCTAssertEqual(validate, "\(spec):2:28: data.path: \(message)", line: line)
        XCTAssertEqual(eval, message, line: line)
    }

    func testTheGoodFilesPass() throws {
        let (dir, run) = try prepare()
        for file in ["good.h5", "good.csv"] {
            try Self.spec(path: file).write(toFile: dir + "/ok.yaml", atomically: true, encoding: .utf8)
            XCTAssertEqual(try CLI.run(["validate", "ok.yaml"], in: dir).stdout, "ok.yaml: valid (fuzz)\n")
            let e = try CLI.run(["eval", run, file], in: dir)
            XCTAssertEqual(e.status, 0, e.stderr)
            XCTAssertTrue(e.stdout.hasPrefix("\(file): 60 samples, loss "), e.stdout)
        }
    }

    func testBadNumbersNameDatasetRowAndColumn() throws {
        try assertRefused("nan.h5", "nan.h5: x[12, 3] is nan (dataset 'x', row 12, column 3); features must be finite numbers")
        try assertRefused("inf.h5", "inf.h5: x[7, 2] is inf (dataset 'x', row 7, column 2); features must be finite numbers")
        try assertRefused("neginf.h5", "neginf.h5: x[0, 0] is -inf (dataset 'x', row 0, column 0); features must be finite numbers")
        try assertRefused("nan-float64.h5", "nan-float64.h5: x[59, 1] is nan (dataset 'x', row 59, column 1); features must be finite numbers")
        try assertRefused("y-negative.h5", "y-negative.h5: y[5] is -1: labels are class ids 0, 1, 2, … (dataset 'y', row 5)")
        try assertRefused("y-over-classes.h5", "y-over-classes.h5: y[2] is 2, not below the class count 2 (dataset 'y', row 2)")
        try assertRefused("y-float.h5", "y-float.h5: dataset 'y' has type float64, expected an integer type (int64 or int32; labels are whole numbers)")
        try assertRefused("domain-negative.h5", "domain-negative.h5: domain[9] is -2: domain ids are 0, 1, 2, … (dataset 'domain', row 9)")
        try assertRefused("csv-nan.csv", "csv-nan.csv:5: column 'b': 'nan' is not a finite number; features must be finite numbers")
        try assertRefused("csv-float-label.csv", "csv-float-label.csv:6: column 'y': '1.5' is not a whole number; labels are class ids 0, 1, 2, …")
        try assertRefused("csv-negative-label.csv", "csv-negative-label.csv:6: column 'y': -1 is negative; labels are class ids 0, 1, 2, …")
    }

    func testWrongStructure() throws {
        try assertRefused("x-int.h5", "x-int.h5: dataset 'x' has type int64, expected float32 (or float64)")
        try assertRefused("x-rank1.h5", "x-rank1.h5: x must be 2-D [samples, features], found shape [240]")
        try assertRefused("x-rank3.h5", "x-rank3.h5: x must be 2-D [samples, features], found shape [60, 4, 1]")
        try assertRefused("x-no-features.h5", "x-no-features.h5: x has no feature columns (shape [60, 0])")
        try assertRefused("x-group.h5", "x-group.h5: 'x' must be a dataset, found a group")
        try assertRefused("y-rank2.h5", "y-rank2.h5: y must be 1-D [samples], found shape [60, 1]")
        try assertRefused("y-short.h5", "y-short.h5: y has 59 labels but x has 60 rows")
        try assertRefused("domain-float.h5", "domain-float.h5: dataset 'domain' has type float64, expected an integer type (int64 or int32; domain ids are whole numbers)")
        try assertRefused("no-x.h5", "no-x.h5: missing dataset 'x'")
        try assertRefused("no-y.h5", "no-y.h5: missing dataset 'y'")
        try assertRefused("no-datasets.h5", "no-datasets.h5: missing dataset 'x'")
        try assertRefused("empty.h5", "empty.h5: holds no samples (x has 0 rows)")
        try assertRefused("ragged.csv", "ragged.csv:11: expected 5 columns, found 4")
        try assertRefused("csv-text-cell.csv", "csv-text-cell.csv:5: column 'c': 'oops' is not a valid number")
        try assertRefused("csv-no-header.csv", "csv-no-header.csv:1: the first line must be a header naming the columns (one of them 'y' or 'label'), found numbers")
        try assertRefused("csv-header-only.csv", "csv-header-only.csv: holds no samples (x has 0 rows)")
        try assertRefused("csv-empty.csv", "csv-empty.csv:1: the file is empty")
        try assertRefused("binary.csv", "binary.csv:1: this is an HDF5 file, not CSV text (name it .h5, or set data.format: hdf5)")
        let huge = try refuse("huge.h5")
        XCTAssertTrue(huge.eval.hasPrefix("huge.h5: dataset 'x' has shape [1000000000, 1000000], 4.0e+06 GB in memory, more than this machine has ("), huge.eval)
    }

    func testNotHDF5() throws {
        let (dir, _) = try prepare()
        FileManager.default.createFile(atPath: dir + "/zero.h5", contents: Data())
        try "a,b,c,d,y\n1,2,3,4,0\n".write(toFile: dir + "/text.h5", atomically: true, encoding: .utf8)
        try assertRefused("zero.h5", "zero.h5: not an HDF5 file: the file is empty (0 bytes)")
        try assertRefused("text.h5", "text.h5: not an HDF5 file (no HDF5 signature; it looks like text)")
        // A directory: the spec loader refuses it as a path; eval says what it is.
        try FileManager.default.createDirectory(atPath: dir + "/folder.h5", withIntermediateDirectories: true)
        let folder = try refuse("folder.h5")
        XCTAssertTrue(folder.validate.hasSuffix(":2:28: data.path: \"folder.h5\" is a directory, not a file"), folder.validate)
        XCTAssertEqual(folder.eval, "folder.h5: is a directory, not a file")
    }

    /// Seeded damage: every outcome is exit 2 with one line (asserted in `refuse`).
    func testSeededTruncationsAndGarbage() throws {
        let (dir, _) = try prepare()
        let good = try Data(contentsOf: URL(fileURLWithPath: dir + "/good.h5"))
        var rng = RNG(seed: 11, purpose: "data-file-fuzz")
        let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
        var cases: [(String, Data)] = []
        for i in 0..<12 {
            let cut = 1 + rng.int(below: good.count - 1)
            cases.append(("cut-\(i).h5", good.prefix(cut)))
        }
        for i in 0..<6 {
            let bytes = (0..<(1 + rng.int(below: 4096))).map { _ in UInt8(truncatingIfNeeded: rng.nextUInt32()) }
            cases.append(("garbage-\(i).h5", Data(bytes)))
            cases.append(("signed-garbage-\(i).h5", Data(signature + bytes)))
        }
        for (name, bytes) in cases {
            try bytes.write(to: URL(fileURLWithPath: dir + "/" + name))
            let (validate, eval, spec) = try refuse(name)
            XCTAssertTrue(eval.hasPrefix("\(name): "), eval)
            XCTAssertEqual(validate, "\(spec):2:28: data.path: \(eval)")
        }
    }
}
