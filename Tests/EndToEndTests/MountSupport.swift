import Foundation
import XCTest

/// A file system mounted for one test: a small tmpfs (a disk that fills up for real) or a
/// read-only bind mount (writes fail with EROFS). Mounting needs root, as CI has; elsewhere the
/// test is skipped and says why in its output. `unmount()` belongs in `tearDown` (it is safe to
/// call twice), so a failing test never leaves a mount behind.
final class TestMount {
    let path: String
    private var mounted = false
    /// Whether `path` was made for this mount (a tmpfs), so `unmount()` removes it.
    private var ownsPath = false

    private init(path: String) { self.path = path }

    /// A tmpfs of `kilobytes` at a fresh directory under the system's temporary directory.
    static func tmpfs(kilobytes: Int) throws -> TestMount {
        let mount = TestMount(path: try freshDirectory("moe-run-tmpfs"))
        mount.ownsPath = true
        defer { if !mount.mounted { try? FileManager.default.removeItem(atPath: mount.path) } }
        try mount.run(["-t", "tmpfs", "-o", "size=\(kilobytes)k", "tmpfs", mount.path], what: "mount a \(kilobytes) KB tmpfs")
        mount.mounted = true
        return mount
    }

    /// Makes `directory` read-only in place: a bind mount of itself, read-only from the start
    /// (util-linux sets the flag before attaching it, so a process writing there at that moment
    /// cannot make it busy); files already open for writing are not affected.
    static func readOnly(_ directory: String) throws -> TestMount {
        let mount = TestMount(path: directory)
        try mount.run(["--bind", "-o", "ro", directory, directory], what: "bind-mount \(directory) read-only")
        mount.mounted = true
        return mount
    }

    /// Changes the tmpfs's size (e.g. to free space: everything on it stays).
    func resize(kilobytes: Int) throws {
        try remount("size=\(kilobytes)k")
    }

    /// Remounts with `options` (`ro`, `rw`, `size=…`).
    func remount(_ options: String) throws {
        try run(["-o", "remount,\(options)", path], what: "remount \(path) with \(options)")
    }

    /// Unmounts (lazily, should a process still use it) and removes the mount point it created.
    func unmount() {
        guard mounted else { return }
        mounted = false
        _ = try? CLI.tool("/bin/umount", ["-l", path])
        if ownsPath { rmdir(path) }
    }

    /// Bytes used on the mounted file system (whole blocks, as the kernel counts them).
    var usedBytes: Int {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return -1 }
        return Int(s.f_blocks - s.f_bfree) * Int(s.f_frsize)
    }

    private func run(_ arguments: [String], what: String) throws {
        guard getuid() == 0 else {
            throw XCTSkip("needs root to \(what) (CI runs the tests as root); this test did not run")
        }
        let r = try CLI.tool("/bin/mount", arguments)
        guard r.status == 0 else {
            throw XCTSkip("cannot \(what) (\(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))); this test did not run")
        }
    }

    private static func freshDirectory(_ prefix: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }
}
