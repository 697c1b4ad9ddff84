import CProcess
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How a child process ended, from `waitpid`'s status.
public enum ExitStatus: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    /// Decodes a `waitpid` status (the W* macros are not imported into Swift).
    init(waitStatus s: Int32) {
        if s & 0x7f == 0 { self = .exited((s >> 8) & 0xff) } else { self = .signaled(s & 0x7f) }
    }

    public var description: String {
        switch self {
        case .exited(let code): return "exit status \(code)"
        case .signaled(let sig):
            let name = [SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGINT: "SIGINT", SIGSEGV: "SIGSEGV",
                        SIGABRT: "SIGABRT", SIGILL: "SIGILL", SIGBUS: "SIGBUS", SIGTRAP: "SIGTRAP"][sig]
            return "signal \(sig)" + (name.map { " (\($0))" } ?? "")
        }
    }
}

/// A child process started with `posix_spawn` (fork+exec: a fresh process that inherits no
/// threads, locks or HDF5 handles), its stdout and stderr read through pipes by the parent.
final class ChildProcess {
    let pid: pid_t
    /// Read ends of the child's stdout (index 0) and stderr (index 1); -1 once closed.
    private(set) var fds: [Int32]
    /// A pidfd of the child (readable once it has ended); -1 once reaped or where there is none.
    private var exitFD: Int32 = -1
    private var partial: [[UInt8]] = [[], []]

    /// Starts `executable` with `arguments` (argv[0] included) and exactly `environment`, passing
    /// on `inheriting` (open descriptors of this process, at the same numbers; every other
    /// descriptor is close-on-exec). Flushes this process's stdio first so buffered text is not
    /// duplicated or reordered.
    init(executable: String, arguments: [String], environment: [String: String], inheriting: [Int32] = []) throws {
        fflush(stdout)
        fflush(stderr)
        var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1]
        guard pipe(&out) == 0 else { throw ChildProcess.failure("pipe") }
        guard pipe(&err) == 0 else {
            close(out[0]); close(out[1])
            throw ChildProcess.failure("pipe")
        }
        // Close-on-exec: other children must not hold these pipes open (dup2 clears it on 1, 2).
        for fd in out + err { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_adddup2(&actions, err[1], 2)
        // dup2 onto itself clears close-on-exec in the child only (POSIX 2024, glibc ≥ 2.29).
        for fd in inheriting { posix_spawn_file_actions_adddup2(&actions, fd, fd) }
        // Children start with default signal handling whatever this process installed or ignored.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGINT, SIGTERM, SIGPIPE] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF))

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attr, argv, envp)
        close(out[1])
        close(err[1])
        guard rc == 0 else {
            close(out[0]); close(err[0])
            throw ChildProcess.failure("posix_spawn \(executable)", errno: rc)
        }
        pid = child
        fds = [out[0], err[0]]
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        exitFD = moe_run_pidfd_open(child)
    }

    deinit { for fd in fds + [exitFD] where fd >= 0 { close(fd) } }

    /// What to `poll(2)` for this child's next event: its open pipes; once both are drained, its
    /// pidfd (the pipes close during exit a moment before the child can be reaped, and a poll
    /// with nothing to watch would sleep the whole time-out; with the pidfd the parent wakes the
    /// moment the child ends).
    var waitFDs: [Int32] {
        drained ? (exitFD >= 0 ? [exitFD] : []) : fds.filter { $0 >= 0 }
    }

    /// Whether both pipes reached end of file (the child and any of its children closed them).
    var drained: Bool { fds.allSatisfy { $0 < 0 } }

    /// Reads what is available on pipe `index` (0 stdout, 1 stderr) and returns the complete
    /// lines; at end of file the unterminated rest is returned as a line and the pipe closed.
    func readLines(_ index: Int) -> [String] {
        let fd = fds[index]
        guard fd >= 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: 65536)
        var eof = false
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n > 0 { partial[index].append(contentsOf: buffer[0..<n]); continue }
            if n == 0 { eof = true }
            else if errno == EINTR { continue }
            else if errno != EAGAIN && errno != EWOULDBLOCK { eof = true }
            break
        }
        var lines: [String] = []
        while let nl = partial[index].firstIndex(of: 0x0A) {
            lines.append(String(decoding: partial[index][..<nl], as: UTF8.self))
            partial[index].removeSubrange(...nl)
        }
        if eof {
            if !partial[index].isEmpty { lines.append(String(decoding: partial[index], as: UTF8.self)) }
            partial[index] = []
            close(fd)
            fds[index] = -1
        }
        return lines
    }

    /// Sends `signal` to the child.
    func signal(_ sig: Int32) { _ = kill(pid, sig) }

    /// The child's exit status if it has ended (reaping it), else nil.
    func poll() -> ExitStatus? {
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                if exitFD >= 0 { close(exitFD) }
                exitFD = -1
                return ExitStatus(waitStatus: status)
            }
            if r == -1 && errno == EINTR { continue }
            return nil
        }
    }

    private static func failure(_ what: String, errno code: Int32 = errno) -> RuntimeError {
        .io(path: what, message: "cannot start a worker process: " + String(cString: strerror(code)))
    }
}
