import Foundation
import MoEHDF5
import XCTest

/// `moe-run eval` on checkpoints by model kind: a kind this build does not know is one clear
/// error line (exit 2) naming the file and the kind, never a crash or a wrongly built model.
final class ModelKindEndToEndTests: XCTestCase {
    /// A data file of two feature rows and a checkpoint whose config has `kind`, in a fresh directory.
    private func fixture(kind: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-kind-e2e-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try H5File.createAtomically(dir + "/data.h5") { file in
            try file.createDataset("x", [Float](repeating: 0.5, count: 6), shape: [2, 3])
            try file.createDataset("y", [Int64(0), 1])
        }
        try H5File.createAtomically(dir + "/lm.h5") { file in
            try file.setAttribute("format", "moe-run/1")
            try file.setAttribute("kind", "model")
            try file.setAttribute("config", #"{"kind":"\#(kind)","vocab":256,"hidden":8,"blocks":1}"#)
            try file.createDataset("embed/weight", [Float](repeating: 0, count: 8 * 256), shape: [256, 8])
        }
        return dir
    }

    /// (Before the transformer kind existed, this checked `kind: transformer`; it now checks a
    /// kind no build knows.)
    func testEvalOfAnUnknownModelKindIsOneLineNamingFileAndKind() throws {
        let dir = try fixture(kind: "rnn")
        let r = try CLI.run(["eval", "lm.h5", "data.h5"], in: dir)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stdout, "")
        XCTAssertEqual(r.stderr, "moe-run: error: lm.h5:/: unknown model kind \"rnn\" in config (this moe-run reads: mlp)\n")
    }

    /// A transformer checkpoint whose config lacks a key it needs (`context` sets the rows of
    /// `pos/weight`) is one line naming the file and the key, not a decoder's dump.
    func testEvalOfATransformerWithAnIncompleteConfigIsOneLine() throws {
        let dir = try fixture(kind: "transformer")
        let r = try CLI.run(["eval", "lm.h5", "data.h5"], in: dir)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stdout, "")
        XCTAssertEqual(r.stderr, "moe-run: error: lm.h5:/: not a moe-run model checkpoint: config has no \"context\"\n")
    }
}
