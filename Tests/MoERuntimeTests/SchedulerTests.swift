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

    private func task(_ id: String, _ deps: [String] = []) -> PlanTask {
        PlanTask(id: id, kind: .train, dependsOn: deps, workers: 1, inputs: [], output: "tasks/\(id).h5", summary: id)
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
        let failing = "echo attempt >> attempts; echo 'moe-run: error: a: boom' >&2; exit 3"
        let tasks = [task("a"), task("b"), task("c", ["a"]), task("d", ["b"])]
        XCTAssertThrowsError(try scheduler(tasks, workers: 1, retries: 2, scripts: ["a": failing]).run()) { error in
            guard case let RuntimeError.taskFailed(id, status, attempts, reason, log) = error else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(id, "a")
            XCTAssertEqual(status, "exit status 3")
            XCTAssertEqual(attempts, 3, "one run and two retries")
            XCTAssertEqual(reason, "a: boom")
            XCTAssertEqual(log, dir + "/log.txt")
            XCTAssertEqual((error as? RuntimeError)?.exitCode, 1)
            XCTAssertTrue("\(error)".hasPrefix("a: boom; task a failed: its worker ended with exit status 3 (3 attempts); see "), "\(error)")
        }
        XCTAssertEqual(try String(contentsOfFile: dir + "/attempts", encoding: .utf8), "attempt\nattempt\nattempt\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/c.done"), "c depends on the failed task")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/d.done"), "b and d do not depend on a")
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
}
