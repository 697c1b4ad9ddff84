import Foundation
import MoEHDF5
import XCTest

/// Issue 17 item 6: `train.init_from: CHECKPOINT` starts the run's model from any compatible
/// checkpoint (a task file, a checkpoint file, a run's run.h5 or directory), dense or MoE, mlp or
/// transformer; incompatible ones are refused before the run, naming the tensor; the run id
/// holds the checkpoint's content hash, not its path.
final class InitFromEndToEndTests: XCTestCase {
    /// A learning rate so small that AdamW's steps (≈ lr) and decay (lr · wd · θ) vanish below
    /// float32 resolution: a run that starts from a checkpoint ends with its exact bits.
    static let frozen = "lr: 1.0e-30"

    /// `tinySpec` starting from `path`, with the frozen learning rate.
    static func continued(_ path: String, name: String = "cont", extra: String = "") -> String {
        tinySpec(name: name, epochs: 1, extra: extra).replacingOccurrences(of: "lr: 0.003", with: "\(frozen)\n  init_from: \(path)")
    }

    func testDenseRunContinuesFromATaskFileARunDirectoryOrACopy() throws {
        let source = try CLI.completeRun(tinySpec(name: "src", epochs: 2))
        let expected = try CLI.finalModelBits(source)

        let fromTask = try CLI.completeRun(Self.continued(source + "/tasks/train.h5"))
        XCTAssertEqual(try CLI.finalModelBits(fromTask), expected, "the frozen run keeps the checkpoint's bits")
        let log = try String(contentsOfFile: fromTask + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("train: initialised from the model in \(source)/tasks/train.h5 (train.init_from)"), log)

        // A run directory names the task file of its final model: the same content, the same run.
        let fromDirectory = try CLI.completeRun(Self.continued(source))
        XCTAssertEqual((fromDirectory as NSString).lastPathComponent, (fromTask as NSString).lastPathComponent)

        // A copy elsewhere is the same input (content hash), and a run from another checkpoint is not.
        let copy = NSTemporaryDirectory() + "init-from-\(UUID().uuidString).h5"
        try FileManager.default.copyItem(atPath: source + "/tasks/train.h5", toPath: copy)
        let dir = try CLI.workspace(Self.continued(copy))
        let plan = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(plan.status, 0, plan.stderr)
        XCTAssertEqual((plan.lastLine as NSString).lastPathComponent, (fromTask as NSString).lastPathComponent)
        let other = try CLI.completeRun(tinySpec(name: "src", epochs: 3))
        let fromOther = try CLI.completeRun(Self.continued(other + "/tasks/train.h5"))
        XCTAssertNotEqual((fromOther as NSString).lastPathComponent, (fromTask as NSString).lastPathComponent)
    }

    func testMoEModelContinuesFromAnMoECheckpoint() throws {
        let moe = "experts: 2\nsplit: {strategy: replicate}\nrouter: {type: topk, k: 1}"
        let source = try CLI.completeRun(tinySpec(name: "moesrc", epochs: 2, extra: moe))
        let continued = try CLI.completeRun(Self.continued(source + "/run.h5", name: "moecont", extra: moe))
        let bits = try CLI.finalModelBits(continued)
        XCTAssertNotNil(bits["blocks/0/moe/router/weight"])
        XCTAssertEqual(bits, try CLI.finalModelBits(source))
    }

    func testIncompatibleCheckpointsAreRefusedNamingTheTensor() throws {
        let source = try CLI.completeRun(tinySpec(name: "src", epochs: 1))
        let file = source + "/tasks/train.h5"
        let wider = Self.continued(file).replacingOccurrences(of: "hidden: 16", with: "hidden: 24")
        let moe = Self.continued(file, extra: "experts: 2\nsplit: {strategy: replicate}")
        for (yaml, message) in [
            (wider, "\(file): /model/embed/weight: shape [16, 8] does not match the model's [24, 8]"),
            (moe, "\(file): /model/blocks/0/moe/router/weight: missing"),
        ] {
            let dir = try CLI.workspace(yaml)
            let r = try CLI.run(["spec.yaml"], in: dir)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").first.map(String.init),
                           "moe-run: error: spec.yaml:18:14: train.init_from: " + message)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing is written")
        }
        // A deeper checkpoint has every tensor of this model and more: refused at the first extra one.
        let deep = try CLI.completeRun(tinySpec(name: "deep", epochs: 1).replacingOccurrences(of: "blocks: 2", with: "blocks: 3"))
        let dir = try CLI.workspace(Self.continued(deep + "/tasks/train.h5"))
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").first.map(String.init),
                       "moe-run: error: spec.yaml:18:14: train.init_from: \(deep)/tasks/train.h5: /model/blocks/2/ffn/b1: not a tensor of this run's model (the checkpoint's architecture differs)")
    }

    func testLanguageModelContinuesFromALanguageModel() throws {
        let first = try CLI.lmWorkspace(steps: 6)
        let r = try CLI.run(["spec.yaml", "--quiet"], in: first)
        XCTAssertEqual(r.status, 0, r.stderr)
        let source = first + "/" + r.lastLine
        let second = try CLI.lmWorkspace(steps: 4)
        try CLI.editSpec(in: second, replacing: "lr: 0.003", with: "\(Self.frozen), init_from: \(source)")
        let c = try CLI.run(["spec.yaml", "--quiet"], in: second)
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertEqual(try CLI.finalModelBits(second + "/" + c.lastLine), try CLI.finalModelBits(source))
    }

    /// Layer-wise runs (stage-local and GPipe over 2 workers) start their stacked dense model
    /// from a dense checkpoint: every stage gets its blocks, so with the frozen learning rate
    /// the stacked model ends with the checkpoint's bits; a checkpoint of another depth is
    /// refused before the run, naming the tensor.
    func testLayerwiseRunsStartTheirStackedModelFromADenseCheckpoint() throws {
        let source = try CLI.completeRun(tinySpec(name: "src", epochs: 2))
        let expected = try CLI.finalModelBits(source)
        let layerwise = "experts: 2\nsplit: {strategy: layerwise}"
        let local = Self.continued(source + "/tasks/train.h5", name: "lwlocal", extra: layerwise)
            .replacingOccurrences(of: "  init_from:", with: "  local: true\n  init_from:")
        let gpipe = Self.continued(source + "/tasks/train.h5", name: "lwgpipe", extra: layerwise + "\nparallelism: {mode: pipeline, workers: 2}")
        for yaml in [local, gpipe] {
            let run = try CLI.completeRun(yaml)
            XCTAssertEqual(try CLI.finalModelBits(run), expected, yaml)
            let log = try String(contentsOfFile: run + "/log.txt", encoding: .utf8)
            XCTAssertTrue(log.contains("train: initialised from the model in \(source)/tasks/train.h5 (train.init_from)"), log)
        }
        // Without init_from the same layer-wise run ends elsewhere (the test could not fail otherwise).
        let fresh = try CLI.completeRun(local.replacingOccurrences(of: "  init_from: \(source)/tasks/train.h5\n", with: ""))
        XCTAssertNotEqual(try CLI.finalModelBits(fresh), expected)

        let deep = try CLI.completeRun(tinySpec(name: "deep", epochs: 1).replacingOccurrences(of: "blocks: 2", with: "blocks: 3"))
        let dir = try CLI.workspace(Self.continued(deep + "/tasks/train.h5", extra: layerwise))
        let r = try CLI.run(["spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").first.map(String.init),
                       "moe-run: error: spec.yaml:18:14: train.init_from: \(deep)/tasks/train.h5: /model/blocks/2/ffn/b1: not a tensor of this run's model (the checkpoint's architecture differs)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing is written")
    }

    func testInitFromExcludesUpcycleFrom() throws {
        let source = try CLI.completeRun(tinySpec(name: "src", epochs: 1))
        let dir = try CLI.workspace(Self.continued(source, extra: "experts: 2\nsplit: {strategy: replicate, upcycle_from: \(source)/tasks/train.h5}"))
        let r = try CLI.run(["validate", "spec.yaml"], in: dir)
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr.split(separator: "\n").first.map(String.init),
                       "moe-run: error: spec.yaml:18:14: train.init_from: and split.upcycle_from exclude each other: the experts are upcycled from the given dense checkpoint, so nothing starts from train.init_from")
    }
}
