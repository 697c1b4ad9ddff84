import CShm
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Whether a process is alive, from `/proc/<pid>/stat` (Linux). A dead child stays a zombie
/// until its parent reaps it, so `kill(pid, 0)` alone would call it alive: the state letter
/// (Z zombie, X dead) is what counts. The start time (field 22, clock ticks since boot) guards
/// against a recycled pid.
enum ProcessLiveness {
    /// The state letter and start time of `pid`, or nil if it has no `/proc` entry.
    static func stat(pid: Int32) -> (state: UInt8, startTime: UInt64)? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        // "pid (comm) S ppid …": comm may hold spaces and parentheses, so split after the last ')'.
        guard let close = buffer[0..<n].lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = buffer[(close + 1)..<n].split(separator: UInt8(ascii: " "))
        guard fields.count > 19, let state = fields[0].first else { return nil }
        // fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
        let startTime = UInt64(String(decoding: fields[19], as: UTF8.self)) ?? 0
        return (state, startTime)
    }

    static func startTime(pid: Int32) -> UInt64? { stat(pid: pid)?.startTime }

    /// Alive: a `/proc` entry whose state is not Z or X and whose start time is `startTime`
    /// (0 = unknown, not compared).
    static func isAlive(pid: Int32, startTime: UInt64) -> Bool {
        guard let s = stat(pid: pid) else { return false }
        if s.state == UInt8(ascii: "Z") || s.state == UInt8(ascii: "X") || s.state == UInt8(ascii: "x") { return false }
        return startTime == 0 || s.startTime == startTime
    }
}

extension SharedMemoryGroup {
    /// Spin iterations (with a pause each, a few µs in all) before sleeping on a futex.
    static let spinIterations = 200
    /// The futex sleep slice; abort, liveness and time-out are checked between slices.
    static let sliceMilliseconds: Int32 = 100

    /// Blocks until every rank has called `barrier`.
    public func barrier() throws {
        try beginCollective()
        try barrierWait("barrier")
    }

    /// Counts a collective call and fails fast if the group was aborted.
    func beginCollective() throws {
        statistics.calls += 1
        try checkAbort()
    }

    /// The barrier building block: a central counter and a generation word. Each rank records the
    /// generation it waits for (so a time-out can name the ranks missing); the last to arrive
    /// resets the counter, then publishes the new generation and wakes the others.
    func barrierWait(_ operation: String) throws {
        if worldSize == 1 { return }
        let target = barrierEpoch &+ 1
        moe_atomic_store_u32(word(layout.arrivedOffset(rank)), target)
        let arrived = moe_atomic_fetch_add_u32(word(SharedMemoryLayout.barrierCountOffset), 1) &+ 1
        let generation = word(SharedMemoryLayout.barrierGenerationOffset)
        if Int(arrived) == worldSize {
            moe_atomic_store_u32(word(SharedMemoryLayout.barrierCountOffset), 0)
            moe_atomic_store_u32(generation, target)
            _ = moe_futex_wake(generation)
        } else {
            let epoch = barrierEpoch
            try waitUntil(operation, word: generation, waitingFor: { [self] in
                (0..<worldSize).filter { moe_atomic_load_u32(word(layout.arrivedOffset($0))) != target }
            }) { moe_atomic_load_u32(generation) != epoch }
        }
        barrierEpoch = target
    }

    /// Waits until `ready()` holds: spins briefly, then sleeps on the futex word at `futexWord`
    /// in slices of 100 ms, checking the abort flag, the peers' liveness and the time-out between
    /// slices. Whoever makes `ready()` true changes the word after doing so and wakes it.
    func waitUntil(_ operation: String, word futexWord: UnsafeMutableRawPointer,
                   waitingFor: () -> [Int], _ ready: () -> Bool) throws {
        if ready() { return }
        let start = Self.now()
        defer { statistics.waitSeconds += Self.now() - start }
        for _ in 0..<Self.spinIterations {
            moe_cpu_relax()
            if ready() { return }
        }
        var lastPeerCheck = start
        while true {
            let seen = moe_atomic_load_u32(futexWord)
            if ready() { return }
            try checkAbort()
            let t = Self.now()
            if t - lastPeerCheck >= Double(Self.sliceMilliseconds) / 1000 {
                try checkPeers()
                lastPeerCheck = t
            }
            if t - start > timeout {
                throw fail(CollectiveError.timedOut(operation: operation, seconds: timeout, waitingFor: waitingFor()))
            }
            _ = moe_futex_wait(futexWord, seen, Self.sliceMilliseconds)
        }
    }

    /// Throws the group's abort as this rank sees it: `.peerDied` if a dead peer caused it,
    /// otherwise `.aborted(byRank:)` (nil: the scheduler).
    func checkAbort() throws {
        guard moe_atomic_load_u32(word(SharedMemoryLayout.abortFlagOffset)) != 0 else { return }
        let kind = moe_atomic_load_u32(word(SharedMemoryLayout.abortKindOffset))
        let who = Int(Int32(bitPattern: moe_atomic_load_u32(word(SharedMemoryLayout.abortRankOffset))))
        switch kind {
        case SharedMemoryLayout.abortPeerDied:
            throw CollectiveError.peerDied(rank: who, pid: Int32(bitPattern: moe_atomic_load_u32(word(SharedMemoryLayout.abortPidOffset))))
        case SharedMemoryLayout.abortRankFailed: throw CollectiveError.aborted(byRank: who)
        default: throw CollectiveError.aborted(byRank: nil)
        }
    }

    /// Throws `.peerDied` (and aborts the group) if an attached peer is no longer alive.
    func checkPeers() throws {
        for r in 0..<worldSize where r != rank {
            let pid = Int32(bitPattern: moe_atomic_load_u32(word(layout.pidOffset(r))))
            guard pid != 0 else { continue } // not attached yet: only the time-out applies
            let start = moe_atomic_load_u64(word(layout.startTimeOffset(r)))
            if !ProcessLiveness.isAlive(pid: pid, startTime: start) {
                throw fail(CollectiveError.peerDied(rank: r, pid: pid))
            }
        }
    }

    /// Aborts the group because of `error` (so the other ranks stop waiting) and returns it to
    /// throw. An error caused by the group's abort itself is returned unchanged.
    func fail(_ error: Error) -> Error {
        if moe_atomic_load_u32(word(SharedMemoryLayout.abortFlagOffset)) != 0 {
            return error
        }
        if case CollectiveError.peerDied(let r, let pid) = error {
            Self.raiseAbort(base, layout: layout, kind: SharedMemoryLayout.abortPeerDied, rank: r, pid: pid)
        } else {
            Self.raiseAbort(base, layout: layout, kind: SharedMemoryLayout.abortRankFailed, rank: rank, pid: getpid())
        }
        return error
    }

    /// Runs `body`, aborting the group if it throws (for code past a collective's first write).
    func failing<R>(_ body: () throws -> R) throws -> R {
        do { return try body() } catch { throw fail(error) }
    }
}
