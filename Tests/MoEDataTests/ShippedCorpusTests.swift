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

    /// h5py alone (no moe-run code) opens the file and finds each text's sha256 attribute right.
    func testPythonReadsItAndChecksTheSHA256() throws {
        let python = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"]
            ?? NSHomeDirectory() + "/.cache/moe-run/venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("no Python with h5py: set MOE_RUN_PYTHON (make test does) or run make venv")
        }
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
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script, file]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, output)
        XCTAssertTrue(output.hasSuffix("ok\n"), output)
    }
}
