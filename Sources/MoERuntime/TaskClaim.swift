import Foundation
import MoECore
#if canImport(Glibc)
import Glibc
#endif

/// A claim on computing one task identity in an experiment folder, so that two runs started
/// together (the trials of `moe-run sweep --jobs N`, or two terminals) that need the same task
/// compute it once: the first to claim it computes it, the others wait and then reuse its file
/// through the task cache (`TaskCache`).
///
/// A claim is an exclusive `flock(2)`, taken without blocking, on a file outside the results
/// (`$TMPDIR/moe-run-claims-<uid>/<SHA-256 of the folder's path and the identity>`), so a results
/// folder only ever holds runs, even after a kill -9. The kernel drops the lock when the process
/// that holds it ends, however it ends, so a claim can never outlive its run: a waiting run then
/// claims the task itself and computes it. The file holds the claiming run's id (for the waiting
/// run's log line) and is removed on release (a kill -9 leaves an empty, unlocked file, which the
/// next claim of that identity reuses); a claimer that locked a file another process removed in
/// between (the classic unlink race) sees a different inode at the path and tries again.
final class TaskClaim {
    /// What trying to claim gave.
    enum Attempt {
        /// This process holds the claim: compute the task, then `release()` it.
        case claimed(TaskClaim)
        /// Another process holds it; the id of its run (empty when it has not written it yet).
        case busy(holder: String)
    }

    /// The folder of the claim files of this user.
    static var directory: String {
        (NSTemporaryDirectory() as NSString).appendingPathComponent("moe-run-claims-\(getuid())")
    }

    /// The claim file of `identity` in the experiment folder `folder`.
    static func path(folder: String, identity: String) -> String {
        let folder = URL(fileURLWithPath: folder).resolvingSymlinksInPath().standardizedFileURL.path
        return directory + "/" + SHA256.hex(folder + "\n" + identity)
    }

    let path: String
    private var fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { release() }

    /// Claims `identity` in `folder` for the run `holder`, without waiting. Errors creating the
    /// claim (a read-only folder) count as claimed by nobody else: the task is computed as it
    /// would be without claims.
    static func attempt(folder: String, identity: String, holder: String) -> Attempt? {
        let path = path(folder: folder, identity: identity)
        mkdir(directory, 0o700)
        for _ in 0..<8 {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { return nil }
            if flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let holder = Self.read(fd)
                close(fd)
                return .busy(holder: holder)
            }
            // Locked; but if the holder before us removed the file after we opened it, our lock
            // is on a file nobody else can find: start again.
            var mine = stat(), there = stat()
            guard fstat(fd, &mine) == 0, stat(path, &there) == 0, mine.st_ino == there.st_ino, mine.st_dev == there.st_dev else {
                close(fd)
                continue
            }
            _ = ftruncate(fd, 0)
            let bytes = Array(holder.utf8)
            _ = bytes.withUnsafeBufferPointer { pwrite(fd, $0.baseAddress, $0.count, 0) }
            return .claimed(TaskClaim(path: path, fd: fd))
        }
        return nil
    }

    /// Gives the claim up: removes the file, then unlocks it (in that order, so a waiting run
    /// never locks a file that is about to vanish without noticing). Idempotent.
    func release() {
        guard fd >= 0 else { return }
        unlink(path)
        close(fd)
        fd = -1
    }

    /// The text of a claim file (the holder's run id), at most 256 bytes.
    private static func read(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBufferPointer { pread(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : ""
    }
}
