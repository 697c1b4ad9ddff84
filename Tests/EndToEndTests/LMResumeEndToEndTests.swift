import Foundation
import MoEHDF5
import XCTest

/// Exact resume (ARCHITECTURE §6) for transformer LM runs: `moe-run` killed with SIGKILL, or
/// interrupted with SIGINT, after its first checkpoint and before the end, then rerun with
/// `--resume`, ends with the final model of an uninterrupted run bit for bit, and with the same
/// series: every `/metrics` row (train_loss, lr, grad_norm, …; the wall-clock rates aside) and
/// validation row, and for an MoE block the router series, once per log step, no gap, no
/// duplicate. The spec checkpoints every 45 steps and logs every 10, so the checkpoint falls
/// inside an open log window; dropout makes the step's random stream matter.
final class LMResumeEndToEndTests: XCTestCase {
    private let steps = 450

    private func workspace(moe: Bool) throws -> String {
        try CLI.lmWorkspace(steps: steps, moe: moe, dropout: 0.1, logEvery: 10, evalEvery: 70, checkpointEvery: 45)
    }

    /// An uninterrupted run: its directory.
    private func reference(moe: Bool) throws -> String {
        let dir = try workspace(moe: moe)
        let r = try CLI.run(["spec.yaml", "--quiet"], in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        return dir + "/" + r.lastLine
    }

    /// The step of "train: resuming from the checkpoint at step N (…" in `stdout`.
    private func resumedStep(_ stdout: String) -> Int? {
        let prefix = "train: resuming from the checkpoint at step "
        guard let line = stdout.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return nil }
        return Int(line.dropFirst(prefix.count).prefix { $0.isNumber })
    }

    /// Resumes the run in `dir` and asserts it ends as `reference` did: the same final model,
    /// the same series in `tasks/train.h5` (rows at 10, 20, …, `steps`), a `tokens_per_second`
    /// row for each. `onCadence`: the checkpoint resumed from is one of every 45 steps (after
    /// SIGKILL; SIGINT saves one at the step it arrives).
    private func assertResumesToTheSameRun(_ dir: String, reference: String, onCadence: Bool = true,
                                           file: StaticString = #filePath, line: UInt = #line) throws {
        let resumed = try CLI.run(["spec.yaml", "--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr, file: file, line: line)
        let from = try XCTUnwrap(resumedStep(resumed.stdout), resumed.stdout, file: file, line: line)
        XCTAssertTrue(from >= 45 && from < steps && (!onCadence || from % 45 == 0), "resumed from step \(from)", file: file, line: line)
        let runDir = dir + "/" + resumed.lastLine
        XCTAssertEqual(try H5File.open(runDir + "/run.h5").stringAttribute("status"), "complete", file: file, line: line)

        let expected = try CLI.finalModelBits(reference), got = try CLI.finalModelBits(runDir)
        XCTAssertEqual(Set(got.keys), Set(expected.keys), file: file, line: line)
        for (name, bits) in expected where got[name] != bits {
            XCTFail("\(name) differs after resume", file: file, line: line)
        }
        let a = try H5File.open(reference + "/tasks/train.h5"), b = try H5File.open(runDir + "/tasks/train.h5")
        let clocks: Set<String> = ["tokens_per_second", "samples_per_second"]
        XCTAssertEqual(try b.read("metrics/step", as: Int64.self).values, Array(stride(from: 10, through: Int64(steps), by: 10)),
                       "one row per log step, no gap, no duplicate", file: file, line: line)
        XCTAssertEqual(try b.read("metrics/tokens_per_second", as: Double.self).values.count, steps / 10, file: file, line: line)
        for group in ["metrics"] + (a.exists("router") ? ["router"] : []) {
            let want = try CLI.seriesBits(a, group, except: clocks), have = try CLI.seriesBits(b, group, except: clocks)
            XCTAssertEqual(Set(have.keys), Set(want.keys), file: file, line: line)
            for (name, bits) in want where have[name] != bits {
                XCTFail("\(name) differs after resume", file: file, line: line)
            }
        }
        XCTAssertEqual(try b.read("metrics/eval/step", as: Int64.self).values, Array(stride(from: 70, through: Int64(steps), by: 70)),
                       file: file, line: line)
        CLI.assertNoProcesses(in: dir, file: file, line: line)
    }

    func testKilledDenseLMRunResumesToTheSameBitsAndSeries() throws {
        let reference = try reference(moe: false)
        let dir = try workspace(moe: false)
        try CLI.startAndKillAfterFirstCheckpoint(in: dir)
        CLI.assertNoProcesses(in: dir)
        try assertResumesToTheSameRun(dir, reference: reference)
    }

    /// The router series, their open windows and the MoE aux-loss series resume too.
    func testKilledMoELMRunResumesRouterStateToTheSameBits() throws {
        let reference = try reference(moe: true)
        XCTAssertEqual(try H5File.open(reference + "/tasks/train.h5").read("router/1/load", as: Double.self).shape, [steps / 10, 4])
        let dir = try workspace(moe: true)
        try CLI.startAndKillAfterFirstCheckpoint(in: dir)
        try assertResumesToTheSameRun(dir, reference: reference)
    }

    /// Ctrl-C: the worker saves a checkpoint at the step it is on and stops; the run is
    /// `interrupted` (exit 130), and `--resume` ends as an uninterrupted run.
    func testSIGINTInterruptsAnLMRunThatResumesToTheSameBits() throws {
        let reference = try reference(moe: false)
        let dir = try workspace(moe: false)
        let p = try CLI.start(["spec.yaml", "--quiet"], in: dir)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && p.isRunning && !CLI.hasCheckpoint(dir) { usleep(20_000) }
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130, "the run finished before it could be interrupted; make the spec longer")
        CLI.assertNoProcesses(in: dir)
        let runDir = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/tinylm").first)
        XCTAssertEqual(try H5File.open(dir + "/out/tinylm/\(runDir)/run.h5").stringAttribute("status"), "interrupted")
        try assertResumesToTheSameRun(dir, reference: reference, onCadence: false)
    }
}
