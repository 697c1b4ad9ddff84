import Foundation
import MoECore
import MoEData
import MoEHDF5
import XCTest

/// experiments/data/text-domains.h5, the shipped text corpus (experiments/data/README.md).
final class ShippedCorpusTests: XCTestCase {
    let file = repositoryRoot.appendingPathComponent("experiments/data/text-domains.h5").path

    func testLoadsWithFourDomainsOfAtLeastOneMegabyteOfTraining() throws {
        let corpus = try TextCorpus.preflight(path: file, train: 0.8, val: 0.1, context: 256)
        XCTAssertEqual(corpus.domains, ["bible", "jargon", "dictionary", "python"])
        for (d, stream) in corpus.streams(.train).enumerated() {
            XCTAssertGreaterThanOrEqual(stream.count, 1 << 20, corpus.domains[d])
        }
        XCTAssertEqual(corpus.streams(.train)[0].prefix(20).map { UInt8($0) }, Array("\nGenesis 1\n\n  1 In t".utf8))
    }

    func testStoredSHA256MatchesTheText() throws {
        let h5 = try H5File.open(file)
        for name in try h5.readStrings("domains") {
            let dataset = try h5.openDataset("text/" + name)
            let bytes = try dataset.read(UInt8.self)
            XCTAssertEqual(SHA256.hex(bytes), try dataset.stringAttribute("sha256"), name)
            XCTAssertEqual(Int(try dataset.attribute("bytes", as: Int64.self)), bytes.count, name)
            for key in ["package", "version", "licence", "source", "genre", "description", "files"] {
                XCTAssertFalse(try dataset.stringAttribute(key).isEmpty, "\(name): \(key)")
            }
        }
    }

    /// The project's Python with numpy and h5py, or a skip.
    func python() throws -> String {
        let python = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"]
            ?? NSHomeDirectory() + "/.cache/moe-run/venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("no Python with h5py: set MOE_RUN_PYTHON (make test does) or run make venv")
        }
        return python
    }

    /// Runs the Python with `arguments`; returns its exit status and output (stdout + stderr).
    func runPython(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try python())
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    /// h5py alone (no moe-run code) opens the file and finds each text's sha256 attribute right.
    func testPythonReadsItAndChecksTheSHA256() throws {
        let script = """
        import hashlib, sys, h5py
        with h5py.File(sys.argv[1], "r") as f:
            assert f.attrs["kind"] == "text-corpus", f.attrs["kind"]
            names = list(f["domains"].asstr()[:])
            assert names == ["bible", "jargon", "dictionary", "python"], names
            for name in names:
                ds = f["text/" + name]
                assert ds.dtype == "|u1" and ds.ndim == 1, (name, ds.dtype)
                data = ds[:].tobytes()
                assert hashlib.sha256(data).hexdigest() == ds.attrs["sha256"], name
                assert len(data) == int(ds.attrs["bytes"]) and len(data) * 0.8 >= 2**20, name
                print(name, len(data))
        print("ok")
        """
        let (status, output) = try runPython(["-c", script, file])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.hasSuffix("ok\n"), output)
    }

    /// Tests/python/check_text_data.py splits the corpus and cuts evaluation windows on its own
    /// (numpy, from the documented rules); moe-run's tasks/data.h5 and windows must agree.
    func testIndependentSplitAndWindowsAgree() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("text-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = repositoryRoot.appendingPathComponent("Tests/python/check_text_data.py").path
        for (train, val, context) in [(0.8, 0.1, 64), (0.7, 0.25, 100)] {
            let corpus = try TextCorpus.load(path: file, train: train, val: val)
            let data = directory.appendingPathComponent("data-\(context).h5").path
            try corpus.write(hdf5: data)
            let (status, output) = try runPython([script, file, data, "\(train)", "\(val)", "\(context)"])
            XCTAssertEqual(status, 0, output)
            var expected: [String] = []
            for split in TextSplit.allCases {
                for w in corpus.evaluationWindows(split, context: context) {
                    let last = w.count > 0 ? Int(w.stream[w.offset(w.count - 1)]) : -1
                    expected.append("\(split.rawValue) \(w.name) \(w.count) \(last)")
                }
            }
            XCTAssertEqual(output.split(separator: "\n").map(String.init), expected + ["ok"])
        }
    }

    /// A tasks/data.h5 a user makes with h5py (fixed-length name strings, uint16 tokens) loads.
    func testUserDataFileFromH5py() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("text-user-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let data = directory.appendingPathComponent("mine.h5").path
        let script = """
        import sys, h5py, numpy as np
        with h5py.File(sys.argv[1], "w") as f:
            f["data/domains"] = np.array([b"news", b"code"])
            for split, (a, b) in {"train": (30, 20), "val": (9, 8), "test": (10, 9)}.items():
                f[f"data/{split}/tokens"] = (np.arange(a + b) % 256).astype(np.uint16)
                f[f"data/{split}/domain"] = np.array([0] * a + [1] * b, dtype=np.int64)
        """
        let (status, output) = try runPython(["-c", script, data])
        XCTAssertEqual(status, 0, output)
        let corpus = try TextCorpus.preflight(path: data, train: 0.8, val: 0.1, context: 7)
        XCTAssertEqual(corpus.domains, ["news", "code"])
        XCTAssertEqual(corpus.streams(.val).map(\.count), [9, 8])
        XCTAssertEqual(corpus.streams(.train)[1], (30..<50).map(UInt16.init))
        do {
            try TextCorpus.preflight(path: data, train: 0.8, val: 0.1, context: 8, source: "mine.h5")
            XCTFail("context 8 needs 9 tokens; code has 8 val tokens")
        } catch {
            XCTAssertEqual("\(error)", "mine.h5: domain 'code' has 8 val tokens, fewer than context + 1 = 9 for one window")
        }
    }
}
