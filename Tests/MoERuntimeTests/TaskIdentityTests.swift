import Foundation
import XCTest
@testable import MoEPlan
@testable import MoERuntime
@testable import MoESpec

/// The task cache's identity (`TaskIdentity`): one mutation of every input class changes it,
/// result-neutral keys and the sections a kind never reads do not.
final class TaskIdentityTests: XCTestCase {
    private let experiments = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("experiments")

    private func fusionSweepTrial(_ overrides: [String] = []) throws -> ExperimentSpec {
        try SpecLoader.load(path: experiments.appendingPathComponent("sweep-fusion.yaml").path, overrides: ["sweep="] + overrides)
    }

    private func identities(_ spec: ExperimentSpec, codeVersions: [PlanTask.Kind: Int] = TaskIdentity.codeVersions) throws -> [String: String] {
        try TaskIdentity.identities(Planner.plan(spec), spec: spec, codeVersions: codeVersions)
    }

    /// The code versions change only on purpose: bumping one makes the cache stop handing out
    /// that kind's files written by older code.
    func testCodeVersionsArePinned() {
        XCTAssertEqual(TaskIdentity.codeVersions, [.data: 1, .pretrain: 1, .train: 1, .fuse: 1, .finetune: 1, .evaluate: 1])
        XCTAssertEqual(TaskIdentity.scheme, 1)
    }

    /// Another fusion method (the sweep-fusion grid) keeps data, seed model and experts, and
    /// only those: the fused model and its evaluation are other tasks.
    func testAnotherFusionMethodKeepsTheUpstreamIdentities() throws {
        let average = try identities(try fusionSweepTrial())
        let ties = try identities(try fusionSweepTrial(["fusion.method=ties"]))
        XCTAssertEqual(Set(average.keys), ["data", "pretrain", "expert-0", "expert-1", "expert-2", "expert-3", "fuse", "evaluate"])
        for task in ["data", "pretrain", "expert-0", "expert-1", "expert-2", "expert-3"] {
            XCTAssertEqual(average[task], ties[task], task)
        }
        XCTAssertNotEqual(average["fuse"], ties["fuse"])
        XCTAssertNotEqual(average["evaluate"], ties["evaluate"])
        XCTAssertEqual(Set(average.values).count, average.count, "every task has its own identity")
        XCTAssertTrue(average.values.allSatisfy { $0.count == 64 && $0.allSatisfy(\.isHexDigit) })
    }

    /// Keys that cannot change a bit (log and checkpoint cadence, output compression, free text)
    /// change no identity.
    func testResultNeutralKeysChangeNoIdentity() throws {
        let base = try identities(try fusionSweepTrial())
        let neutral = try identities(try fusionSweepTrial(["train.log_every=7", "train.checkpoint_every=3", "output.compression=0",
                                                           "description=other words"]))
        XCTAssertEqual(base, neutral)
    }

    /// One mutation of each input class, every one changes the identity of the task it reaches.
    func testEveryInputClassChangesTheIdentity() throws {
        let spec = try fusionSweepTrial()
        let plan = Planner.plan(spec)
        let base = try identities(spec)
        // The task's own spec slice: a training key moves every task (data included: its slice
        // is all but `fusion`); the seed alone too.
        for change in ["train.lr=0.003", "seed=5", "model.hidden=32", "data.samples=6000", "eval.batch_size=512"] {
            let changed = try identities(try fusionSweepTrial([change]))
            for task in plan.tasks {
                XCTAssertNotEqual(changed[task.id], base[task.id], "\(change) must change \(task.id)")
            }
        }
        // A fusion key only reaches the tasks that read it.
        let weights = try identities(try fusionSweepTrial(["fusion.weights=val_loss"]))
        XCTAssertEqual(weights["expert-2"], base["expert-2"])
        XCTAssertNotEqual(weights["fuse"], base["fuse"])
        // An expert's own override changes that expert, and everything after it, only.
        let override = try identities(try fusionSweepTrial(["split.overrides=[{}, {lr: 0.01}, {}, {}]"]))
        XCTAssertNotEqual(override["expert-1"], base["expert-1"])
        XCTAssertNotEqual(override["fuse"], base["fuse"])
        // The upstream identities, the code version of the kind, the content of a named file.
        let expert = try XCTUnwrap(plan.task("expert-0"))
        let upstream = ["data": base["data"]!, "pretrain": base["pretrain"]!]
        let text = TaskIdentity.text(of: expert, spec: spec, upstream: upstream, files: [])
        var otherUpstream = upstream
        otherUpstream["pretrain"] = String(repeating: "0", count: 64)
        XCTAssertNotEqual(TaskIdentity.text(of: expert, spec: spec, upstream: otherUpstream, files: []), text)
        XCTAssertNotEqual(TaskIdentity.text(of: expert, spec: spec, upstream: upstream, files: [], codeVersions: [.train: 2]), text)
        XCTAssertNotEqual(TaskIdentity.text(of: expert, spec: spec, upstream: upstream, files: [("/d.csv", "ab")]), text)
        XCTAssertNotEqual(TaskIdentity.text(of: expert, spec: spec, upstream: upstream, files: [("/d.csv", "ac")]),
                          TaskIdentity.text(of: expert, spec: spec, upstream: upstream, files: [("/d.csv", "ab")]))
        var codeVersions = TaskIdentity.codeVersions
        codeVersions[.fuse] = 2
        let newFuse = try identities(spec, codeVersions: codeVersions)
        XCTAssertEqual(newFuse["expert-0"], base["expert-0"], "a new fuse code version keeps the experts")
        XCTAssertNotEqual(newFuse["fuse"], base["fuse"])
        XCTAssertNotEqual(newFuse["evaluate"], base["evaluate"], "and moves everything after the fuse task")
    }

    /// A data file's content is part of the identity (a file is hashed, a folder file by file).
    func testDataFileContentChangesTheIdentity() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("task-identity-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/corpus", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let csv = dir + "/data.csv"
        try "a,b,y\n0.5,1.0,0\n1.5,0.0,1\n2.0,1.0,0\n0.0,1.0,1\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let spec = try SpecLoader.load(yaml: "name: x\ndata:\n  source: file\n  path: data.csv\n", file: dir + "/spec.yaml", baseDirectory: dir)
        let before = try identities(spec)
        try "a,b,y\n0.5,1.0,0\n1.5,0.0,1\n2.0,1.0,0\n0.0,1.0,0\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let after = try identities(spec)
        for task in Planner.plan(spec).tasks { XCTAssertNotEqual(before[task.id], after[task.id], task.id) }

        try "one".write(toFile: dir + "/corpus/a.txt", atomically: true, encoding: .utf8)
        let folder = try TaskIdentity.contentHash(dir + "/corpus")
        try "one".write(toFile: dir + "/corpus/b.txt", atomically: true, encoding: .utf8)
        XCTAssertNotEqual(try TaskIdentity.contentHash(dir + "/corpus"), folder, "a new file in a corpus folder")
        XCTAssertEqual(try TaskIdentity.contentHash(csv), try TaskIdentity.contentHash(csv))
    }
}
