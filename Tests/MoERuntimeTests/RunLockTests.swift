import Foundation
@testable import MoERuntime
import XCTest

/// `RunLock` in one process (flock locks belong to an open file description, so a second
/// `acquire` here is turned away as another process would be); the end-to-end tests cover
/// separate processes, SIGKILL and sweeps.
final class RunLockTests: XCTestCase {
    private var layout = RunLayout(directory: "")

    override func setUpWithError() throws {
        layout = RunLayout(directory: FileManager.default.temporaryDirectory
            .appendingPathComponent("moe-run-lock-\(UUID().uuidString)/x/abc").path)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: (layout.directory as NSString).deletingLastPathComponent)
    }

    private var host: String {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, 255)
        return String(cString: name)
    }

    func testASecondAcquireNamesTheHolderUntilTheFirstIsReleased() throws {
        let first = try RunLock.acquire(layout)
        XCTAssertEqual(try String(contentsOfFile: layout.lockFile, encoding: .utf8), "\(getpid()) \(host)\n")
        XCTAssertThrowsError(try RunLock.acquire(layout)) { error in
            XCTAssertEqual("\(error)", "\(layout.directory): in use by moe-run (pid \(getpid()) on host \(host)); wait for it or stop it")
            XCTAssertEqual((error as? RuntimeError)?.exitCode, 2)
        }
        first.release()
        let second = try RunLock.acquire(layout)
        second.release()
    }

    /// A holder that has locked but not yet written its pid is still a holder.
    func testAnUnwrittenLockFileStillTurnsAway() throws {
        try FileManager.default.createDirectory(atPath: layout.directory, withIntermediateDirectories: true)
        let fd = open(layout.lockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        XCTAssertEqual(flock(fd, LOCK_EX), 0)
        defer { close(fd) }
        XCTAssertThrowsError(try RunLock.acquire(layout)) { error in
            XCTAssertEqual("\(error)", "\(layout.directory): in use by another moe-run; wait for it or stop it")
        }
    }

    /// `--force` deletes the run but keeps the lock file (whose inode other processes lock).
    func testRemoveAllButLockKeepsTheLockFile() throws {
        let lock = try RunLock.acquire(layout)
        defer { lock.release() }
        try layout.create()
        FileManager.default.createFile(atPath: layout.runFile, contents: Data("x".utf8))
        FileManager.default.createFile(atPath: layout.taskFile("train"), contents: Data("x".utf8))
        XCTAssertTrue(layout.holdsRun())
        try layout.removeAllButLock()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: layout.directory), ["run.lock"])
        XCTAssertFalse(layout.holdsRun())
    }
}
