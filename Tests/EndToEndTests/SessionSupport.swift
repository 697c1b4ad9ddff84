import Foundation
import XCTest

/// A `moe-run` started in a session of its own (setsid), so that a test can kill exactly its
/// whole process group, scheduler and workers at once, as `kill -9 -PGID` or a lost terminal
/// does. Output goes to `stdout.txt` and `stderr.txt` in the working directory.
final class Session {
    /// The scheduler: leader of the session and of its process group (pid = sid = pgid).
    let pid: pid_t
    private(set) var status: Int32?

    init(_ args: [String], in directory: String) throws {
        let quoted = ([CLI.binary] + args).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        // The shell execs moe-run, so the pid (and the session) are moe-run's.
        let command = "cd '\(directory)' && exec \(quoted) > stdout.txt 2> stderr.txt"
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, 0x80) // POSIX_SPAWN_SETSID (glibc ≥ 2.26, a GNU extension Swift does not import)
        let shell: [String] = ["/bin/sh", "-c", command]
        let argv = shell.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, "/bin/sh", nil, &attr, argv, environ)
        guard rc == 0 else { throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "posix_spawn: \(String(cString: strerror(rc)))"]) }
        pid = child
    }

    /// Whether the scheduler still runs (reaps it once it has ended).
    var isRunning: Bool {
        guard status == nil else { return false }
        var s: Int32 = 0
        let r = waitpid(pid, &s, WNOHANG)
        guard r == pid else { return r == 0 || (r == -1 && errno == EINTR) }
        status = s
        return false
    }

    /// Waits for the scheduler's end; its raw wait status.
    @discardableResult
    func wait() -> Int32 {
        while isRunning { usleep(2_000) }
        return status ?? -1
    }

    /// SIGKILL to every process of the group.
    func killGroup() -> Int32 { kill(-pid, SIGKILL) }

    /// Live (not zombie) processes of this session, from /proc/<pid>/stat field 6.
    var members: [Int32] {
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
        return pids.filter { p in
            guard let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 4 && fields[0] != "Z" && fields[0] != "X" && Int32(fields[3]) == pid
        }
    }

    /// The children of the scheduler that are ranks of a group (their environment has
    /// `MOE_RUN_RANK`), and the ones that are not.
    func workers() -> (ranks: [Int32], others: [Int32]) {
        var ranks: [Int32] = [], others: [Int32] = []
        for child in CLI.children(of: pid) {
            guard let environ = FileManager.default.contents(atPath: "/proc/\(child)/environ") else { continue }
            // A child just spawned may still show the scheduler's image for an instant.
            guard let cmdline = FileManager.default.contents(atPath: "/proc/\(child)/cmdline"),
                  String(decoding: cmdline, as: UTF8.self).contains("\0worker\0") else { continue }
            if environ.split(separator: 0).contains(where: { $0.starts(with: Array("MOE_RUN_RANK=".utf8)) }) {
                ranks.append(child)
            } else {
                others.append(child)
            }
        }
        return (ranks, others)
    }
}

extension CLI {
    /// The entries of /dev/shm that look like moe-run's (any version: `moe-run-<pid>-…`,
    /// `moe-run-test-<pid>-…`).
    static func sharedMemoryEntries() -> Set<String> {
        Set(((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).filter { $0.hasPrefix("moe-run") })
    }

    /// The moe-run entries of /dev/shm that are not in `before` and whose process is gone: what a
    /// killed run left behind. (Other people's runs on the machine keep theirs while they live.)
    static func leakedSharedMemory(since before: Set<String>) -> [String] {
        sharedMemoryEntries().subtracting(before).filter { name in
            guard let pid = name.split(separator: "-").lazy.compactMap({ Int32($0) }).first else { return true }
            return kill(pid, 0) != 0 && errno == ESRCH
        }.sorted()
    }
}
