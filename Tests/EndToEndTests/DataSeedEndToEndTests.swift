import Foundation
import MoEHDF5
import XCTest

/// Issue 17 item 4: `data.seed` draws the data (the split of feature data, the synthetic
/// generator, random shards) apart from `seed` (initialisation, batch order, dropout), and every
/// split of `tasks/data.h5` stores its source rows as `/data/<split>/index`.
final class DataSeedEndToEndTests: XCTestCase {
    static let digits = CLI.repositoryRoot.appendingPathComponent("experiments/data/digits.h5").path

    static func digitsSpec(seed: Int, dataSeed: Int?) -> String {
        """
        name: digits-seed
        seed: \(seed)
        data:
          source: file
          path: \(digits)
          split: {train: 0.7, val: 0.15, test: 0.15}
          \(dataSeed.map { "seed: \($0)" } ?? "")
        model: {hidden: 16, ffn: 32, blocks: 1}
        train: {epochs: 1, batch_size: 64, lr: 0.003, log_every: 10}
        output: {dir: out}
        """
    }

    /// Every dataset below `/data` of a run's data.h5, as raw bytes by path.
    static func dataBytes(_ runDir: String) throws -> [String: [UInt32]] {
        let file = try H5File.open(runDir + "/tasks/data.h5")
        var out: [String: [UInt32]] = [:]
        for split in ["train", "val", "test"] {
            out[split + "/x"] = try file.read("data/\(split)/x", as: Float.self).values.map(\.bitPattern)
            out[split + "/y"] = try file.read("data/\(split)/y", as: Int64.self).values.map { UInt32(truncatingIfNeeded: $0) }
            out[split + "/index"] = try file.read("data/\(split)/index", as: Int64.self).values.map { UInt32(truncatingIfNeeded: $0) }
        }
        return out
    }

    static var python: String? {
        let path = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"] ?? (NSHomeDirectory() + "/.cache/moe-run/venv/bin/python")
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }

    /// Changing `seed` with `data.seed` fixed keeps the split bit for bit and changes the
    /// initialisation; `data.seed` equal to `seed` is the run without it (same run id, same bits).
    func testSeedChangesTheInitAndNotTheSplitWhenDataSeedIsFixed() throws {
        let a = try CLI.completeRun(Self.digitsSpec(seed: 1, dataSeed: 5))
        let b = try CLI.completeRun(Self.digitsSpec(seed: 2, dataSeed: 5))
        XCTAssertEqual(try Self.dataBytes(a), try Self.dataBytes(b), "the same data seed draws the same split")
        XCTAssertEqual(try H5File.open(a + "/tasks/data.h5").arrayAttribute("data_seed", as: Int64.self), [5])
        let initA = try CLI.modelBits(try H5File.open(a + "/run.h5"), "final")
        let initB = try CLI.modelBits(try H5File.open(b + "/run.h5"), "final")
        XCTAssertEqual(Set(initA.keys), Set(initB.keys))
        XCTAssertNotEqual(initA["embed/weight"], initB["embed/weight"], "another seed initialises (and trains) another model")

        // The data seed alone moves the split.
        let c = try CLI.completeRun(Self.digitsSpec(seed: 1, dataSeed: 6))
        XCTAssertNotEqual(try Self.dataBytes(a)["train/index"], try Self.dataBytes(c)["train/index"])

        // data.seed: 5 with seed: 5 is the run without data.seed: the same id and the same bits.
        let explicit = try CLI.completeRun(Self.digitsSpec(seed: 5, dataSeed: 5))
        let implicit = try CLI.completeRun(Self.digitsSpec(seed: 5, dataSeed: nil))
        XCTAssertEqual((explicit as NSString).lastPathComponent, (implicit as NSString).lastPathComponent)
        XCTAssertEqual(try Self.dataBytes(explicit), try Self.dataBytes(a))
        XCTAssertEqual(try CLI.finalModelBits(explicit), try CLI.finalModelBits(implicit))
    }

    /// numpy: the source file's rows at `index` are the split's rows, and the indices partition it.
    func testIndexSelectsTheSourceRows() throws {
        guard let python = Self.python else { throw XCTSkip("no Python venv with h5py; `make test` creates it") }
        let run = try CLI.completeRun(Self.digitsSpec(seed: 3, dataSeed: 11))
        let script = CLI.repositoryRoot.appendingPathComponent("Tests/python/check_data_index.py").path
        let py = try CLI.tool(python, [script, "features", run + "/tasks/data.h5", Self.digits])
        XCTAssertEqual(py.status, 0, py.stdout + py.stderr)
        XCTAssertEqual(py.stdout, "index: ok: 1797 source rows, split 1258/270/269\n")
    }

    /// Synthetic data is generated from the data seed: another `seed` leaves every sample.
    func testSyntheticDataComesFromTheDataSeed() throws {
        let withDataSeed = tinySpec(name: "syn", epochs: 1).replacingOccurrences(of: "  domains: 3", with: "  domains: 3\n  seed: 4")
        let one = try CLI.completeRun(withDataSeed)
        let two = try CLI.completeRun(withDataSeed.replacingOccurrences(of: "seed: 7", with: "seed: 8"))
        XCTAssertEqual(try Self.dataBytes(one), try Self.dataBytes(two))
        XCTAssertNotEqual(try CLI.finalModelBits(one), try CLI.finalModelBits(two))
        let index = try H5File.open(one + "/tasks/data.h5").read("data/train/index", as: Int64.self).values
        XCTAssertEqual(index.count, 480)
        XCTAssertEqual(index, index.sorted())
    }

    /// A text corpus: `index` holds each domain's block of its stream; numpy checks it against
    /// the corpus files. `data.seed` has no effect there: a warning naming the key.
    func testTextIndexIsEachDomainsBlockAndDataSeedWarns() throws {
        let dir = try CLI.lmWorkspace(steps: 2)
        try CLI.editSpec(in: dir, replacing: "test: 0.1}}", with: "test: 0.1}, seed: 3}")
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "moe-run: warning: spec.yaml:3:84: data.seed: has no effect with data.source: text (each domain's stream is cut into contiguous blocks; nothing about the data is drawn)\n")
        let run = dir + "/" + r.lastLine
        let data = try H5File.open(run + "/tasks/data.h5")
        // Domains in name order: code (2,310 bytes), prose (2,200 bytes); 0.8/0.1/0.1 of each.
        XCTAssertEqual(try data.read("data/train/index", as: Int64.self).values, [0, 1848, 0, 1760])
        XCTAssertEqual(try data.read("data/val/index", as: Int64.self).values, [1848, 2079, 1760, 1980])
        XCTAssertEqual(try data.read("data/test/index", as: Int64.self).values, [2079, 2310, 1980, 2200])
        guard let python = Self.python else { throw XCTSkip("no Python venv with h5py; `make test` creates it") }
        let script = CLI.repositoryRoot.appendingPathComponent("Tests/python/check_data_index.py").path
        let py = try CLI.tool(python, [script, "text", run + "/tasks/data.h5", dir + "/corpus"])
        XCTAssertEqual(py.status, 0, py.stdout + py.stderr)
        XCTAssertEqual(py.stdout, "index: ok: 2 domains, 4510 bytes\n")
    }

    func testNegativeDataSeedIsRefused() throws {
        let dir = try CLI.workspace(Self.digitsSpec(seed: 1, dataSeed: -1))
        let r = try CLI.run(["validate", "spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr.split(separator: "\n").first.map(String.init), "moe-run: error: spec.yaml:7:9: data.seed: must be >= 0, got -1")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"))
    }
}
