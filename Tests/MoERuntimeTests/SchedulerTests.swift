import Foundation
@testable import MoEPlan
@testable import MoERuntime
import XCTest

/// The scheduler on synthetic DAGs whose tasks are small shell scripts: dependency order, the
/// concurrency limit, retries after a crash, and failure of one branch while the others finish.
final class SchedulerTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-run-scheduler-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    private func task(_ id: String, _ deps: [String] = [], workers: Int = 1) -> PlanTask {
        PlanTask(id: id, kind: .train, dependsOn: deps, workers: workers, inputs: [], output: "tasks/\(id).h5", summary: id)
    }

    /// A scheduler whose task `id` runs `scripts[id]` (default: record start/end around a short
    /// sleep) and is complete once `<id>.done` exists.
    private func scheduler(_ tasks: [PlanTask], workers: Int, retries: Int = 1, scripts: [String: String] = [:]) -> Scheduler {
        let dir = self.dir
        return Scheduler(tasks: tasks, workers: workers, retries: retries, log: RunLog(path: dir + "/log.txt", quiet: true),
                         logPath: dir + "/log.txt",
                         isComplete: { FileManager.default.fileExists(atPath: "\(dir)/\($0).done") },
                         command: { t in
                             let body = scripts[t.id] ?? "echo start \(t.id) >> events; sleep 0.2; echo end \(t.id) >> events; touch \(t.id).done"
                             return .init(executable: "/bin/sh", arguments: ["sh", "-c", "cd '\(dir)' && " + body],
                                          environment: ["PATH": "/usr/bin:/bin"])
                         })
    }

    /// The same with the stop grace period set.
    private func scheduler(_ tasks: [PlanTask], workers: Int, grace: Double, scripts: [String: String]) -> Scheduler {
        var s = scheduler(tasks, workers: workers, scripts: scripts)
        s.stopGrace = grace
        return s
    }

    private func events() throws -> [(String, String)] {
        try String(contentsOfFile: dir + "/events", encoding: .utf8).split(separator: "\n").map {
            let parts = $0.split(separator: " ")
            return (String(parts[0]), String(parts[1]))
        }
    }

    func testDiamondRunsInDependencyOrderWithinTheWorkerLimit() throws {
        let tasks = [task("a"), task("b", ["a"]), task("c", ["a"]), task("e", ["a"]), task("d", ["b", "c", "e"])]
        try scheduler(tasks, workers: 2).run()
        let ev = try events()
        var ended: Set<String> = [], running = 0, maxRunning = 0
        for (what, id) in ev {
            if what == "start" {
                for dep in tasks.first(where: { $0.id == id })!.dependsOn {
                    XCTAssertTrue(ended.contains(dep), "\(id) started before \(dep) ended: \(ev)")
                }
                running += 1
                maxRunning = max(maxRunning, running)
            } else {
                ended.insert(id)
                running -= 1
            }
        }
        XCTAssertEqual(ended, ["a", "b", "c", "d", "e"])
        XCTAssertEqual(maxRunning, 2, "b, c and e are independent: two at a time with workers: 2")
    }

    func testCompleteTasksAreNotStartedAgain() throws {
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/a.done", contents: nil))
        try scheduler([task("a"), task("b", ["a"])], workers: 1).run()
        XCTAssertEqual(try events().map(\.1), ["b", "b"])
    }

    func testCrashedTaskIsRetried() throws {
        // First attempt: SIGKILL itself; second attempt: succeed.
        let script = "if [ -e tried ]; then touch a.done; else touch tried; kill -9 $$; fi"
        try scheduler([task("a")], workers: 1, retries: 1, scripts: ["a": script]).run()
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/a.done"))
        let log = try String(contentsOfFile: dir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("a: the worker ended with signal 9 (SIGKILL); retry 1 of 1"), log)
    }

    func testFailedTaskStopsItsDependentsButNotIndependentTasks() throws {
        let failing = "echo attempt >> attempts; echo 'moe-run: error: a: boom' >&2; exit 1"
        let tasks = [task("a"), task("b"), task("c", ["a"]), task("d", ["b"])]
        XCTAssertThrowsError(try scheduler(tasks, workers: 1, retries: 2, scripts: ["a": failing]).run()) { error in
            guard case let RuntimeError.taskFailed(id, status, attempts, reason, log) = error else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(id, "a")
            XCTAssertEqual(status, "exit status 1")
            XCTAssertEqual(attempts, 3, "one run and two retries")
            XCTAssertEqual(reason, "a: boom")
            XCTAssertEqual(log, dir + "/log.txt")
            XCTAssertEqual((error as? RuntimeError)?.exitCode, 1)
            XCTAssertTrue("\(error)".hasPrefix("a: boom; task a failed: its worker ended with exit status 1 (3 attempts); see "), "\(error)")
        }
        XCTAssertEqual(try String(contentsOfFile: dir + "/attempts", encoding: .utf8), "attempt\nattempt\nattempt\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/c.done"), "c depends on the failed task")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/d.done"), "b and d do not depend on a")
    }

    /// A worker exiting with `Failure.permanentExitStatus` is not retried (though `retries`
    /// allows it): the running task is stopped as on SIGINT, no new task starts, and the run
    /// ends with the worker's own line.
    func testPermanentFailureIsNotRetriedAndStopsTheRun() throws {
        let scripts = [
            "a": "echo attempt >> attempts; sleep 0.2; echo 'moe-run: error: a: no space left on device while writing a.h5' >&2; exit 3",
            "b": "trap 'echo stopped b >> events; exit 130' INT; sleep 30 & wait $!",
        ]
        let tasks = [task("a"), task("b"), task("c", ["a"])]
        XCTAssertThrowsError(try scheduler(tasks, workers: 2, retries: 2, scripts: scripts).run()) { error in
            guard case let RuntimeError.taskFailedPermanently(id, reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(id, "a")
            XCTAssertEqual(reason, "a: no space left on device while writing a.h5")
            XCTAssertEqual("\(error)", reason, "the worker's line, as it is")
            XCTAssertEqual((error as? RuntimeError)?.exitCode, 1)
        }
        XCTAssertEqual(try String(contentsOfFile: dir + "/attempts", encoding: .utf8), "attempt\n", "not retried")
        XCTAssertEqual(try events().map { "\($0.0) \($0.1)" }, ["stopped b"], "b was stopped, c never started")
        let log = try String(contentsOfFile: dir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("a: failed permanently, not retried; stopping the run: a: no space left"), log)
    }

    /// In a group, the rank that failed permanently is the cause, even when a peer (aborted with
    /// the group) ended first.
    func testPermanentFailureOfOneRankOutranksItsPeersAndIsNotRetried() throws {
        let script = "echo \"$MOE_RUN_RANK\" >> starts; "
            + "if [ \"$MOE_RUN_RANK\" = 1 ]; then echo 'moe-run: error: the group was aborted' >&2; exit 1; fi; "
            + "sleep 0.2; echo 'moe-run: error: g: no space left on device while writing g.partial.h5' >&2; exit 3"
        XCTAssertThrowsError(try scheduler([task("g", workers: 2)], workers: 2, retries: 1, scripts: ["g": script]).run()) { error in
            XCTAssertEqual("\(error)", "g: no space left on device while writing g.partial.h5")
        }
        XCTAssertEqual(try String(contentsOfFile: dir + "/starts", encoding: .utf8).split(separator: "\n").sorted(), ["0", "1"])
    }

    func testExitZeroWithoutOutputIsAFailure() throws {
        XCTAssertThrowsError(try scheduler([task("a")], workers: 1, retries: 0, scripts: ["a": "true"]).run()) { error in
            XCTAssertTrue("\(error)".contains("exited 0 without writing a.h5"), "\(error)")
        }
    }

    func testWaitStatusDecoding() {
        XCTAssertEqual(ExitStatus(waitStatus: 0), .exited(0))
        XCTAssertEqual(ExitStatus(waitStatus: 130 << 8), .exited(130))
        XCTAssertEqual(ExitStatus(waitStatus: 9), .signaled(9))
        XCTAssertEqual(ExitStatus(waitStatus: 9).description, "signal 9 (SIGKILL)")
    }

    /// A task of `workers: 2` starts as a group: two processes told their rank, the group size and
    /// the number of the descriptor they inherit of the group's memory, an unnamed memfd (nothing
    /// in /dev/shm while they run, so nothing to leave behind).
    func testGroupTaskStartsOneProcessPerRankSharingAnUnnamedSegment() throws {
        let script = "echo \"$MOE_RUN_RANK/$MOE_RUN_WORLD_SIZE $MOE_RUN_GROUP_FD\" >> ranks; "
            + "readlink /proc/$$/fd/$MOE_RUN_GROUP_FD >> ranks; ls /dev/shm | grep -c '^moe-run-\(getpid())-' >> ranks; "
            + "sleep 0.2; [ \"$MOE_RUN_RANK\" = 0 ] && touch g.done; true"
        try scheduler([task("g", workers: 2)], workers: 2, scripts: ["g": script]).run()
        let lines = try String(contentsOfFile: dir + "/ranks", encoding: .utf8).split(separator: "\n").map(String.init)
        let ranks = lines.filter { $0.contains("/") && !$0.hasPrefix("/") }.sorted()
        XCTAssertEqual(ranks.map { String($0.prefix(3)) }, ["0/2", "1/2"])
        XCTAssertNotNil(Int32(ranks[0].split(separator: " ").last ?? ""), ranks[0])
        XCTAssertEqual(lines.filter { $0 == "/memfd:moe-run-g-1 (deleted)" }.count, 2, "each rank inherited the group's memfd: \(lines)")
        XCTAssertEqual(lines.filter { $0 == "0" }.count, 2, "no file in /dev/shm: \(lines)")
    }

    /// The stale files of older versions' schedulers (named `/dev/shm/moe-run-<pid>-…`) are
    /// removed when their scheduler is gone, and kept while it lives.
    func testStaleGroupFilesOfDeadSchedulersAreRemoved() throws {
        var dead: pid_t = 0
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { free(argv[0]) }
        XCTAssertEqual(posix_spawn(&dead, "/bin/true", nil, nil, &argv, environ), 0)
        var status: Int32 = 0
        waitpid(dead, &status, 0)
        let stale = "/dev/shm/moe-run-\(dead)-train-1", live = "/dev/shm/moe-run-\(getppid())-train-1"
        for path in [stale, live] { XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data([1]))) }
        defer { unlink(stale); unlink(live) }
        try scheduler([task("a")], workers: 1, scripts: ["a": "touch a.done"]).run()
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale), "left by a dead scheduler")
        XCTAssertTrue(FileManager.default.fileExists(atPath: live), "its scheduler (this test's parent) lives")
        let log = try String(contentsOfFile: dir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("removed \(stale), left by scheduler process \(dead), which is gone"), log)
    }

    /// One rank failing fails the attempt of the whole group: its peer is told (the group is
    /// aborted), and the group is started again as a whole.
    func testFailingRankRetriesTheWholeGroup() throws {
        let script = "echo \"$MOE_RUN_RANK\" >> starts; "
            + "if [ \"$MOE_RUN_RANK\" = 1 ] && [ ! -e failed ]; then touch failed; echo 'moe-run: error: rank 1 broke' >&2; exit 1; fi; "
            + "sleep 0.2; [ \"$MOE_RUN_RANK\" = 0 ] && touch g.done; true"
        try scheduler([task("g", workers: 2)], workers: 2, retries: 1, scripts: ["g": script]).run()
        XCTAssertEqual(try String(contentsOfFile: dir + "/starts", encoding: .utf8).split(separator: "\n").sorted(), ["0", "0", "1", "1"])
        let log = try String(contentsOfFile: dir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("g: g[rank 1] ended with exit status 1 (rank 1 broke); retry 1 of 1"), log)
    }

    /// A worker that ignores the forwarded SIGINT/SIGTERM is killed after the grace period, so a
    /// stopping run always ends.
    func testWorkerIgnoringTheStopSignalIsKilledAfterTheGracePeriod() throws {
        let scripts = ["a": "sleep 0.3; exit 130", "b": "trap '' INT TERM; sleep 30; touch b.done"]
        let start = Date()
        XCTAssertThrowsError(try scheduler([task("a"), task("b")], workers: 2, grace: 0.5, scripts: scripts).run()) { error in
            XCTAssertEqual((error as? RuntimeError)?.exitCode, 130, "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 20, "b was killed, not waited for")
        let log = try String(contentsOfFile: dir + "/log.txt", encoding: .utf8)
        XCTAssertTrue(log.contains("did not stop within 0.5 s of the signal; killing it (SIGKILL)"), log)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/b.done"))
    }
}
