import Foundation
import XCTest
@testable import MoERuntime

/// `TaskClaim`: one holder per identity and folder; released by `release()`, by deinit, and by
/// the death of the holding process (the kernel drops a flock with its last descriptor).
final class TaskClaimTests: XCTestCase {
    private func folder() throws -> String {
        let path = NSTemporaryDirectory() + "task-claim-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private func claimed(_ a: TaskClaim.Attempt?) -> TaskClaim? {
        if case .claimed(let c)? = a { return c }
        return nil
    }

    func testOneHolderAtATimeAndReleaseLetsTheNextOneIn() throws {
        let f = try folder()
        let first = try XCTUnwrap(claimed(TaskClaim.attempt(folder: f, identity: "abc", holder: "run-a")))
        guard case .busy(let holder)? = TaskClaim.attempt(folder: f, identity: "abc", holder: "run-b") else {
            return XCTFail("a held claim must be busy for everybody else")
        }
        XCTAssertEqual(holder, "run-a")
        let other = try XCTUnwrap(claimed(TaskClaim.attempt(folder: f, identity: "other", holder: "run-b")), "another identity is free")
        XCTAssertTrue(FileManager.default.fileExists(atPath: TaskClaim.path(folder: f, identity: "abc")))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: f), [], "nothing in the results folder")
        first.release()
        XCTAssertFalse(FileManager.default.fileExists(atPath: TaskClaim.path(folder: f, identity: "abc")), "a released claim leaves no file")
        let again = try XCTUnwrap(claimed(TaskClaim.attempt(folder: f, identity: "abc", holder: "run-b")))
        again.release()
        other.release()
        XCTAssertNotEqual(TaskClaim.path(folder: f, identity: "abc"), TaskClaim.path(folder: f + "/x", identity: "abc"),
                          "the same identity in another results folder is another claim")
    }

    func testAClaimDiesWithItsProcess() throws {
        let f = try folder()
        let path = TaskClaim.path(folder: f, identity: "abc")
        try FileManager.default.createDirectory(atPath: TaskClaim.directory, withIntermediateDirectories: true)
        // A shell locks the file with flock(1) on its own descriptor and becomes `sleep` (one
        // process holds the lock, as a moe-run process does), then is killed.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/bin/sh")
        holder.arguments = ["-c", "exec 9>>\"$0\"; flock 9; exec sleep 60", path]
        try holder.run()
        // Wait until flock(1) holds it (probing with a plain flock, which never removes the file).
        for _ in 0..<500 {
            let fd = open(path, O_RDWR | O_CREAT, 0o644)
            let free = flock(fd, LOCK_EX | LOCK_NB) == 0
            close(fd)
            if !free { break }
            usleep(10_000)
        }
        guard case .busy? = TaskClaim.attempt(folder: f, identity: "abc", holder: "run-b") else {
            return XCTFail("the other process's lock is seen")
        }
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        XCTAssertNotNil(claimed(TaskClaim.attempt(folder: f, identity: "abc", holder: "run-b")), "a dead holder's claim is free")
    }
}
