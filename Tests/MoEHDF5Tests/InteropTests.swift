import Foundation
import MoEHDF5
import XCTest

/// Files written by MoEHDF5 must open in the standard tools without any moe-run code.
final class InteropTests: HDF5TestCase {
    private func writeSample(_ target: String) throws {
        try H5File.createAtomically(target) { file in
            try file.setAttribute("format", "moe-run/1")
            try file.setAttribute("note", "ünïcödé ✓")
            try file.createDataset("data/train/x", (0..<20_000).map { Float($0) }, shape: [1000, 20])
            try file.createDataset("data/train/y", (0..<1000).map { Int64($0 % 10) })
            try file.createString("spec", "name: sample\n")
            let steps = try file.createSeries("metrics/step", of: Int64.self)
            try steps.append([0, 10, 20])
        }
    }

    func testH5DumpReadsTheHeader() throws {
        let target = path("sample.h5")
        try writeSample(target)
        guard let (status, output) = runTool("h5dump", ["-H", target]), status != 127 else {
            throw XCTSkip("h5dump (hdf5-tools) is not installed")
        }
        XCTAssertEqual(status, 0, output)
        for name in ["DATASET \"x\"", "DATASET \"y\"", "DATASET \"spec\"", "DATASET \"step\"",
                     "ATTRIBUTE \"format\"", "H5T_IEEE_F32LE", "H5T_STD_I64LE", "CSET H5T_CSET_UTF8",
                     "DATASPACE  SIMPLE { ( 1000, 20 ) / ( 1000, 20 ) }",
                     "DATASPACE  SIMPLE { ( 3 ) / ( H5S_UNLIMITED ) }"] {
            XCTAssertTrue(output.contains(name), "h5dump -H output lacks \(name):\n\(output)")
        }
    }

    /// A Python that has h5py: $MOE_RUN_PYTHON, the project venv, or python3 on PATH.
    private func pythonWithH5py() -> String? {
        var candidates: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"] { candidates.append(explicit) }
        candidates.append(FileManager.default.homeDirectoryForCurrentUser
            .appendingPathComponent(".cache/moe-run/venv/bin/python3").path)
        candidates.append("python3")
        return candidates.first { candidate in
            if candidate.hasPrefix("/") && !FileManager.default.isExecutableFile(atPath: candidate) { return false }
            return runTool(candidate, ["-c", "import h5py"])?.status == 0
        }
    }

    func testH5pyReadsStringsAsStr() throws {
        guard let python = pythonWithH5py() else { throw XCTSkip("no Python with h5py available") }
        let target = path("sample.h5")
        try writeSample(target)
        let script = """
        import sys, h5py
        with h5py.File(sys.argv[1], "r") as f:
            fmt, note = f.attrs["format"], f.attrs["note"]
            spec = f["spec"].asstr()[()]
            assert isinstance(fmt, str) and fmt == "moe-run/1", repr(fmt)
            assert isinstance(note, str) and note == "ünïcödé ✓", repr(note)
            assert spec == "name: sample\\n", repr(spec)
            assert f["data/train/x"].dtype == "<f4" and f["data/train/x"].shape == (1000, 20)
            assert f["data/train/y"].dtype == "<i8" and int(f["data/train/y"][13]) == 3
            assert list(f["metrics/step"][:]) == [0, 10, 20]
        print("ok")
        """
        guard let (status, output) = runTool(python, ["-c", script, target]) else {
            return XCTFail("could not run \(python)")
        }
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("ok"), output)
    }
}
