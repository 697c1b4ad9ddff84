import Foundation
import MoEHDF5
#if canImport(Glibc)
import Glibc
#endif

/// The lock of a run directory (ARCHITECTURE §5.2): `run.lock`, held with flock(2) by the one
/// process that runs the directory, from before it looks at what is there until the run ends.
///
/// - flock, not a pid file: the kernel drops the lock when its holder dies, even by SIGKILL, so
///   `--resume` right after a `kill -9` works and no stale lock needs clearing by hand.
/// - The descriptor is opened `O_CLOEXEC`: the exec'd workers do not inherit it, so the lock is
///   the scheduler's alone (the workers die with it: `Worker.watchParent`).
/// - The file holds `<pid> <host>` of the holder, for the message of the process turned away;
///   it is never deleted (deleting a lock file lets two processes lock two different files).
final class RunLock {
    private var fd: Int32

    private init(fd: Int32) { self.fd = fd }

    /// Takes the lock of `layout`'s directory (created if missing), or throws
    /// `RuntimeError.runLocked` naming the holder when another process has it.
    static func acquire(_ layout: RunLayout) throws -> RunLock {
        try RunLayout.makeDirectory(layout.directory, reportedAs: layout.directory)
        let fd = open(layout.lockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw RuntimeError.io(path: layout.lockFile, message: "cannot open the run's lock file: \(systemErrorText(errno))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno
            let holder = readHolder(fd)
            close(fd)
            guard reason == EWOULDBLOCK else {
                throw RuntimeError.io(path: layout.lockFile, message: "cannot lock it: \(String(cString: strerror(reason)))")
            }
            throw RuntimeError.runLocked(dir: layout.directory, holder: holder)
        }
        let text = "\(getpid()) \(hostName())\n"
        _ = ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        return RunLock(fd: fd)
    }

    /// Gives the lock up (closing the descriptor releases it); also done by `deinit`.
    func release() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
    }

    deinit { release() }

    /// `pid 123 on host h` from the holder's lock file, or nil when it cannot be read (the holder
    /// has locked it but not written it yet).
    private static func readHolder(_ fd: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 512)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        let text = String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let parts = text.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, let pid = Int32(parts[0]) else { return nil }
        return "pid \(pid) on host \(parts[1])"
    }

    private static func hostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "unknown" }
        return String(cString: name)
    }
}
