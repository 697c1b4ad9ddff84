import Foundation
import MoEHDF5
import XCTest

/// Issue 14 items 2–5 (ARCHITECTURE §5.5): `mpirun -np N moe-run SPEC.yaml` runs the same plan
/// over N ranks, over TCP, to the bits of the shm backend: data-, expert-parallel and pipeline
/// groups over a sub-communicator, branch experts on free ranks. Bad launches are one line and
/// exit 2 before anything is written; a results directory a rank cannot see is refused; a killed
/// rank ends the job within seconds naming task, rank and host, leaving status `failed`, and
/// `--resume` gives the same bits; Ctrl-C leaves status `interrupted`. No process outlives a test.
final class MPIEndToEndTests: XCTestCase {
    private func experiment(_ name: String) -> String {
        CLI.repositoryRoot.appendingPathComponent("experiments/\(name).yaml").path
    }

    private func arguments(_ name: String, _ sets: [String]) -> [String] {
        [experiment(name), "--quiet", "--out", "out"] + sets.flatMap { ["--set", $0] }
    }

    /// Runs `name` with `sets` once with the shm backend and once under `mpirun -np` each of
    /// `ranks`; asserts that every model in run.h5 has the same bits; returns the MPI runs' logs.
    @discardableResult
    private func assertSameBits(_ name: String, ranks: [Int], _ sets: [String],
                                file: StaticString = #filePath, line: UInt = #line) throws -> [String] {
        try MPI.requireMPI()
        let reference = try CLI.workspace("")
        let shm = try CLI.run(arguments(name, sets), in: reference)
        XCTAssertEqual(shm.status, 0, shm.stderr, file: file, line: line)
        let expected = try MPI.allModelBits(try MPI.runDirectory(reference, name))
        XCTAssertFalse(expected.isEmpty, file: file, line: line)
        var logs: [String] = []
        for n in ranks {
            let dir = try CLI.workspace("")
            let r = try MPI.run(ranks: n, arguments(name, sets), in: dir)
            XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
            let runDir = try MPI.runDirectory(dir, name)
            XCTAssertEqual(r.lastLine, "out/\(name)/" + (runDir as NSString).lastPathComponent, "rank 0 prints the run directory last", file: file, line: line)
            XCTAssertEqual(try MPI.allModelBits(runDir), expected, "\(name) over \(n) MPI ranks: the bits of the shm backend", file: file, line: line)
            XCTAssertEqual(try MPI.status(runDir), "complete", file: file, line: line)
            logs.append(try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8))
            CLI.assertNoProcesses(in: dir, file: file, line: line)
        }
        return logs
    }

    func testDataParallelOverTwoAndFourRanksGivesTheBitsOfTheSharedMemoryBackend() throws {
        let log = try assertSameBits("data-parallel", ranks: [2], ["data.samples=2000", "train.epochs=2"])[0]
        XCTAssertTrue(log.contains("train: started on rank 0 (host "), log)
        XCTAssertTrue(log.contains(", rank 1 (host "), log)
        let four = try assertSameBits("data-parallel", ranks: [4], ["data.samples=2000", "train.epochs=1", "parallelism.workers=4"])[0]
        XCTAssertTrue(four.contains(", rank 3 (host "), four)
    }

    func testExpertParallelOverTwoRanksGivesTheBitsOfTheSharedMemoryBackend() throws {
        try assertSameBits("expert-parallel", ranks: [2], ["data.samples=2000", "train.epochs=2"])
    }

    /// Issue 15: the shipped transformer LMs, data- and expert-parallel over 2 MPI ranks, shortened
    /// (20 steps; 0.25 % val and test splits, as check-golden runs them).
    func testLMDataAndExpertParallelOverTwoRanksGiveTheBitsOfTheSharedMemoryBackend() throws {
        let short = ["train.steps=20", "data.split={train: 0.995, val: 0.0025, test: 0.0025}"]
        let log = try assertSameBits("lm-data-parallel", ranks: [2], short)[0]
        XCTAssertTrue(log.contains("over 2 data-parallel workers"), log)
        try assertSameBits("lm-expert-parallel", ranks: [2], short)
    }

    func testPipelineOverFourRanksGivesTheBitsOfTheSharedMemoryBackend() throws {
        try assertSameBits("layerwise-pipeline", ranks: [4], ["data.samples=1000", "train.epochs=2"])
    }

    /// The four experts are independent tasks: over 2 ranks two waves of two, over 4 one wave.
    func testBranchExpertsOnFreeRanksGiveTheBitsOfTheSharedMemoryBackend() throws {
        let logs = try assertSameBits("branch-domains", ranks: [2, 4], ["data.samples=2000", "train.epochs=1", "split.pretrain_epochs=1"])
        XCTAssertTrue(logs[0].contains("expert-1: started on rank 1 ("), logs[0])
        XCTAssertTrue(logs[0].contains("expert-2: started on rank 0 ("), logs[0])
        XCTAssertTrue(logs[1].contains("expert-3: started on rank 3 ("), logs[1])
    }

    /// Retries of independent tasks under MPI, as on one machine: branch expert 1 fails with a
    /// transient error the first time it starts on its rank (`MOE_RUN_FAIL_ONCE`, the tests' fault
    /// injection: a task's process dying would end the whole MPI job, §5.5). Rank 0 retries it in
    /// a later wave (`parallelism.retries`, default 1) and the run ends with the bits of an
    /// undisturbed one. With `parallelism.retries=0` the same failure is not retried: exit 1,
    /// one line naming the task, its rank and the cause, status `failed`.
    func testTransientlyFailingBranchExpertIsRetriedOnAFreeRank() throws {
        try MPI.requireMPI()
        let sets = ["data.samples=2000", "train.epochs=1", "split.pretrain_epochs=1"]
        let reference = try CLI.workspace("")
        let shm = try CLI.run(arguments("branch-domains", sets), in: reference)
        XCTAssertEqual(shm.status, 0, shm.stderr)
        let expected = try MPI.allModelBits(try MPI.runDirectory(reference, "branch-domains"))

        let dir = try CLI.workspace("")
        let marker = dir + "/expert-1-failed"
        let injected = "\(marker): expert-1: failure injected by MOE_RUN_FAIL_ONCE (first attempt only)"
        let r = try MPI.run(ranks: 2, arguments("branch-domains", sets), in: dir, environment: ["MOE_RUN_FAIL_ONCE": "expert-1:" + marker])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: marker), "the failure was injected")
        let runDir = try MPI.runDirectory(dir, "branch-domains")
        let log = try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("expert-1: started on rank 1 (host "), log)
        XCTAssertTrue(log.contains("): \(injected); retry 1 of 1\n"), log)
        XCTAssertTrue(log.contains(") (attempt 2)\n") && log.split(separator: "\n").contains { $0.contains("expert-1: started on") && $0.hasSuffix("(attempt 2)") }, log)
        XCTAssertEqual(try MPI.allModelBits(runDir), expected, "the retried expert: the bits of an undisturbed run")
        XCTAssertEqual(try MPI.status(runDir), "complete")
        CLI.assertNoProcesses(in: dir)

        let once = try CLI.workspace("")
        let f = try MPI.run(ranks: 2, arguments("branch-domains", sets + ["parallelism.retries=0"]), in: once,
                            environment: ["MOE_RUN_FAIL_ONCE": "expert-1:\(once)/expert-1-failed"])
        XCTAssertEqual(f.status, 1, f.stderr)
        let line = try XCTUnwrap(f.stderr.split(separator: "\n").first { $0.hasPrefix("moe-run: error: ") }, f.stderr)
        XCTAssertTrue(line.hasPrefix("moe-run: error: \(once)/expert-1-failed: expert-1: failure injected by MOE_RUN_FAIL_ONCE (first attempt only); task expert-1 (rank 1 (host "), String(line))
        XCTAssertTrue(line.contains(")) failed: its worker ended with an error (1 attempt); see "), String(line))
        let failedRun = try MPI.runDirectory(once, "branch-domains")
        XCTAssertEqual(try MPI.status(failedRun), "failed")
        XCTAssertFalse(try String(contentsOfFile: failedRun + "/log.txt", encoding: .utf8).contains("retry"), "retries 0: not retried")
        CLI.assertNoProcesses(in: once)
    }

    /// `mpirun -np 2 moe-run sweep`: 4 trials dealt over 2 ranks, each the bits of the same
    /// trial of a plain sweep, and one summary with every trial complete.
    func testSweepOfFourTrialsOverTwoRanksGivesTheBitsOfAPlainSweep() throws {
        try MPI.requireMPI()
        let args = ["sweep", experiment("quickstart"), "--grid", "seed=0,1,2,3", "--set", "data.samples=1000",
                    "--set", "train.epochs=1", "--out", "out", "--quiet"]
        let plain = try CLI.workspace("")
        let p = try CLI.run(args, in: plain)
        XCTAssertEqual(p.status, 0, p.stderr)
        let dir = try CLI.workspace("")
        let r = try MPI.run(ranks: 2, args, in: dir)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.lastLine, p.lastLine, "rank 0 prints the sweep directory last")
        let summary = try String(contentsOfFile: dir + "/" + r.lastLine + "/summary.csv", encoding: .utf8)
        let rows = summary.split(separator: "\n").dropFirst()
        XCTAssertEqual(rows.count, 4, summary)
        XCTAssertTrue(rows.allSatisfy { $0.contains(",complete,") }, summary)
        let runs = try FileManager.default.contentsOfDirectory(atPath: plain + "/out/quickstart").filter { !$0.hasPrefix("sweep-") }
        XCTAssertEqual(runs.count, 4, "\(runs)")
        for run in runs {
            XCTAssertEqual(try MPI.allModelBits(dir + "/out/quickstart/" + run), try MPI.allModelBits(plain + "/out/quickstart/" + run), run)
        }
        CLI.assertNoProcesses(in: dir)
    }

    func testBadLaunchesAreOneLineAndExit2BeforeAnythingIsWritten() throws {
        try MPI.requireMPI()
        let dir = try CLI.workspace("")
        let noLaunch = try CLI.run(arguments("data-parallel", ["parallelism.backend=mpi"]), in: dir)
        XCTAssertEqual(noLaunch.status, 2)
        XCTAssertEqual(noLaunch.stderr, "moe-run: error: parallelism.backend: mpi, but this moe-run was not started by mpirun or srun; run `mpirun -np N moe-run SPEC.yaml` (or `srun -n N moe-run SPEC.yaml`), or set parallelism.backend: auto\n")

        let tooFew = try MPI.run(ranks: 1, arguments("data-parallel", []), in: dir)
        XCTAssertEqual(tooFew.status, 2)
        XCTAssertTrue(tooFew.stderr.hasPrefix("moe-run: error: parallelism.workers: 2 workers need 2 MPI ranks, but mpirun started 1; start 2 or more ranks (mpirun -np 2) or lower parallelism.workers\n"), tooFew.stderr)

        let shm = try MPI.run(ranks: 2, arguments("data-parallel", ["parallelism.backend=shm"]), in: dir)
        XCTAssertEqual(shm.status, 2)
        XCTAssertEqual(shm.stderr.components(separatedBy: "moe-run: error: ").count, 2, "one line, from rank 0 only: \(shm.stderr)")
        XCTAssertTrue(shm.stderr.contains("moe-run: error: parallelism.backend: shm, but mpirun started 2 processes of moe-run (each would run the whole plan); run moe-run without mpirun, or set parallelism.backend: auto or mpi\n"), shm.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing written")
        CLI.assertNoProcesses(in: dir)
    }

    /// Rank 1 sees a private empty tmpfs over the results root (as a node with a local disk
    /// would): rank 0 refuses the run in one line. Needs root for the mount namespace.
    func testResultsDirectoryEveryRankCannotSeeIsRefused() throws {
        try MPI.requireMPI()
        let dir = try CLI.workspace("")
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
        let probe = try CLI.tool("/usr/bin/unshare", ["-m", "/bin/sh", "-c", "mount -t tmpfs none '\(dir)/out'"])
        guard probe.status == 0 else { throw XCTSkip("no mount namespace here (needs root): \(probe.stderr)") }
        let wrapper = try MPI.rankOneWrapper(dir + "/rank1-private.sh",
                                             "unshare -m /bin/sh -c 'mount -t tmpfs none \"\(dir)/out\" && exec \"$@\"' sh")
        let r = try MPI.run(ranks: 2, arguments("data-parallel", []), in: dir, wrapper: [wrapper])
        XCTAssertEqual(r.status, 2, r.stderr)
        let line = try XCTUnwrap(r.stderr.split(separator: "\n").first { $0.hasPrefix("moe-run: error: ") }, r.stderr)
        XCTAssertTrue(line.hasPrefix("moe-run: error: \(dir)/out: not shared by every MPI rank (rank 1 (host "), String(line))
        XCTAssertTrue(line.hasSuffix("the results directory must be on a filesystem every rank sees: put output.dir (or --out) on a shared filesystem such as NFS or Lustre"), String(line))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/out"), [], "nothing left in the results root")
        CLI.assertNoProcesses(in: dir)
    }

    /// Item 4: rank 1 killed mid-training (after a checkpoint) ends the job within seconds; rank
    /// 0 names task, rank and host, records status `failed` (with that line as run.h5's `error`)
    /// and exits 1; `--resume` gives the bits of an undisturbed run.
    func testKilledRankEndsTheJobAndResumeGivesTheSameBits() throws {
        let sets = Self.stoppableRun
        let expected = try referenceBits(sets)
        let dir = try CLI.workspace("")
        let err = Pipe()
        let p = try MPI.start(ranks: 2, arguments("data-parallel", sets), in: dir, stderr: err)
        let rank1 = try waitForCheckpoint(p, dir: dir)
        XCTAssertEqual(kill(rank1, SIGKILL), 0)
        let killed = Date()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertLessThan(Date().timeIntervalSince(killed), 10, "the job ends within seconds")
        XCTAssertNotEqual(p.terminationStatus, 0)
        XCTAssertTrue(stderr.contains("moe-run: error: task train: rank 1 (host "), stderr)
        XCTAssertTrue(stderr.contains(", pid \(rank1)) died; MPI ended the job. Every finished task and checkpoint is kept: rerun the same command with --resume to continue\n"), stderr)
        CLI.assertNoProcesses(in: dir)
        let runDir = try MPI.runDirectory(dir, "data-parallel")
        // Rank 0's fault watch records the failure in run.h5 before it exits 1; still resumable.
        XCTAssertEqual(try MPI.status(runDir), "failed")
        let error = try H5File.open(runDir + "/run.h5").stringAttribute("error")
        XCTAssertTrue(error.hasPrefix("task train: rank 1 (host ") && error.contains(", pid \(rank1)) died; MPI ended the job."), error)
        try assertResumes(dir, sets, expected)
        XCTAssertEqual(try MPI.status(runDir), "complete")
    }

    /// Item 4 across machines: rank 1 runs under another host name (a UTS namespace: to rank 0 it
    /// is on another host, whose processes it cannot see). Killed, it ends the job; rank 0 names
    /// the task that ran and its ranks and hosts, exits 1, and `--resume` gives the same bits.
    func testRankDyingOnAnotherHostEndsTheJobNamingTheTaskAndItsRanks() throws {
        try MPI.requireMPI()
        let probe = try CLI.tool("/usr/bin/unshare", ["-u", "/bin/sh", "-c", "hostname other-node"])
        guard probe.status == 0 else { throw XCTSkip("no UTS namespace here (needs root): \(probe.stderr)") }
        let sets = Self.stoppableRun
        let expected = try referenceBits(sets)
        let dir = try CLI.workspace("")
        let wrapper = try MPI.rankOneWrapper(dir + "/rank1-other-host.sh", "unshare -u /bin/sh -c 'hostname other-node && exec \"$@\"' sh")
        let err = Pipe()
        let p = try MPI.start(ranks: 2, arguments("data-parallel", sets), in: dir, wrapper: [wrapper], stderr: err)
        XCTAssertEqual(kill(try waitForCheckpoint(p, dir: dir), SIGKILL), 0)
        let killed = Date()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertLessThan(Date().timeIntervalSince(killed), 10, "the job ends within seconds")
        let line = try XCTUnwrap(stderr.split(separator: "\n").first { $0.hasPrefix("moe-run: error: ") }, stderr)
        XCTAssertTrue(line.hasPrefix("moe-run: error: MPI ended the job (a rank on another host died, or mpirun was stopped) while task train on rank 0 (host "), String(line))
        XCTAssertTrue(line.hasSuffix("), rank 1 (host other-node) ran. Every finished task and checkpoint is kept: rerun the same command with --resume to continue"), String(line))
        CLI.assertNoProcesses(in: dir)
        let runDir = try MPI.runDirectory(dir, "data-parallel")
        XCTAssertEqual(try MPI.status(runDir), "failed", "rank 0's fault watch records the failure; still resumable")
        XCTAssertEqual(try H5File.open(runDir + "/run.h5").stringAttribute("error"), String(line.dropFirst("moe-run: error: ".count)))
        try assertResumes(dir, sets, expected)
    }

    /// Item 4: SIGINT to mpirun (Ctrl-C) leaves status `interrupted`; `--resume` then gives the
    /// bits of an undisturbed run. (mpirun sends the ranks SIGCONT, SIGTERM a second later, and
    /// SIGKILL a second after that (`odls_base_sigkill_timeout`): the ranks stop at their next
    /// step, save a checkpoint and report within that second.)
    func testInterruptedJobIsResumableToTheSameBits() throws {
        let sets = Self.stoppableRun
        let expected = try referenceBits(sets)
        let dir = try CLI.workspace("")
        let err = Pipe()
        let p = try MPI.start(ranks: 2, arguments("data-parallel", sets), in: dir, stderr: err)
        _ = try waitForCheckpoint(p, dir: dir)
        XCTAssertEqual(kill(p.processIdentifier, SIGINT), 0)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        CLI.assertNoProcesses(in: dir)
        XCTAssertEqual(try MPI.status(try MPI.runDirectory(dir, "data-parallel")), "interrupted")
        // Rank 0 ends with the run's own interrupt line, not as if a rank had been lost.
        XCTAssertTrue(stderr.contains("moe-run: error: interrupted"), stderr)
        XCTAssertFalse(stderr.contains("MPI ended the job"), stderr)
        XCTAssertFalse(stderr.contains("died"), stderr)
        try assertResumes(dir, sets, expected)
    }

    /// A data-parallel run long enough (about 5 s alone on 2 cores, 3000 steps) to be killed or
    /// interrupted after its first checkpoint and before its end on a quiet machine: at 4 epochs
    /// (0.3 s of training) a quiet CI machine finished the run before the signal arrived.
    static let stoppableRun = ["data.samples=8000", "train.epochs=60"]

    private func referenceBits(_ sets: [String]) throws -> [String: [UInt32]] {
        try MPI.requireMPI()
        let reference = try CLI.workspace("")
        let r = try CLI.run(arguments("data-parallel", sets), in: reference)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try MPI.allModelBits(try MPI.runDirectory(reference, "data-parallel"))
    }

    /// Waits until both ranks run and the training task has a checkpoint; returns rank 1's pid.
    private func waitForCheckpoint(_ p: Process, dir: String) throws -> Int32 {
        let deadline = Date().addingTimeInterval(120)
        while p.isRunning && Date() < deadline && !(MPI.ranks(of: p).count == 2 && CLI.hasCheckpoint(dir)) { usleep(20_000) }
        let rank1 = try XCTUnwrap(MPI.ranks(of: p)[1], "no rank 1 with a checkpoint appeared")
        usleep(100_000)  // train past the checkpoint, so work is lost and redone
        XCTAssertTrue(p.isRunning, "the run finished before it could be stopped; make it longer")
        return rank1
    }

    private func assertResumes(_ dir: String, _ sets: [String], _ expected: [String: [UInt32]],
                               file: StaticString = #filePath, line: UInt = #line) throws {
        let resumed = try MPI.run(ranks: 2, arguments("data-parallel", sets) + ["--resume"], in: dir)
        XCTAssertEqual(resumed.status, 0, resumed.stderr, file: file, line: line)
        let runDir = try MPI.runDirectory(dir, "data-parallel")
        XCTAssertEqual(try MPI.allModelBits(runDir), expected, "resumed: the bits of an undisturbed run", file: file, line: line)
        XCTAssertTrue(try String(contentsOfFile: runDir + "/log.txt", encoding: .utf8).contains("train: resuming from the checkpoint at step"),
                      file: file, line: line)
        CLI.assertNoProcesses(in: dir, file: file, line: line)
    }
}
