import CShm
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The shared-memory backend of `Communicator`: the ranks of one coupled task on one machine,
/// cooperating through ONE unnamed shared-memory file that every rank maps `MAP_SHARED` (the
/// layout is documented on `SharedMemoryLayout`).
///
/// Life cycle: the scheduler (which does not join the group) makes a `SharedMemorySegment`
/// (memfd_create(2): the file never has a name, so no kill at any moment can leave one in
/// /dev/shm) before starting the ranks, passes its descriptor on to them, keeps it open to
/// `abort` them (at any time, even while they are blocked), and drops it when the task has
/// ended. Each rank attaches with `init(descriptor:rank:worldSize:timeout:)`, which maps the
/// file and registers its pid; `deinit` unmaps it. The kernel frees the memory once the last
/// descriptor and mapping are gone.
///
/// Synchronisation: futex(2) words and C11 atomics in the header (no FUTEX_PRIVATE: the words are
/// shared between processes). Waiting spins a few µs, then sleeps in slices of 100 ms; between
/// slices it checks, in this order: the awaited condition; the abort flag (→ `.aborted`, or
/// `.peerDied` when the abort was caused by a dead peer); every attached peer's liveness from
/// `/proc/<pid>/stat` (missing, zombie or dead, or a different start time → `.peerDied`, and the
/// group is aborted so every rank stops); the time spent in this wait against `timeout`
/// (→ `.timedOut` naming the ranks not arrived). A rank not attached yet has no pid: only the
/// time-out applies to it. Any error thrown once a collective has started aborts the group
/// (the others then throw `.aborted(byRank:)`, or `.peerDied` for a dead peer).
///
/// Maths and ordering: `allReduceSum` adds in rank order with the element type's own arithmetic,
/// `((b₀ + b₁) + b₂) + …` for every element (Float in Float, Double in Double, no trees, no wider
/// accumulator), so every rank gets the same bits, a rerun gets the same bits, and a serial loop
/// over the ranks' buffers reproduces them exactly. Data larger than a slot is processed in
/// chunks of `slotBytes`; chunking does not change any result.
///
/// A group object is used by one thread of one process; it is not thread-safe.
public final class SharedMemoryGroup: Communicator {
    public let rank: Int
    public let worldSize: Int
    /// The longest one wait (a barrier, a message) may last, in seconds.
    public let timeout: Double
    public internal(set) var statistics = CommStatistics()

    let layout: SharedMemoryLayout
    let base: UnsafeMutableRawPointer
    let mappedBytes: Int
    /// The barrier generation this rank has completed (the header's generation between barriers).
    var barrierEpoch: UInt32

    // MARK: - A rank's side

    /// Attaches this process as `rank` of the group whose memory is open at `descriptor` (a
    /// `SharedMemorySegment`'s descriptor, inherited from the process that started this one) for
    /// `worldSize` ranks, and registers its pid. Maps the memory and does not keep the
    /// descriptor: the caller may close it at once (the mapping keeps the memory alive).
    /// `timeout` bounds every single wait (a barrier, a message) in seconds. Throws
    /// `.sharedMemory` if the descriptor is not open or not a group of `worldSize`, or the rank
    /// is attached by another live process; `.aborted` if the group was aborted already.
    public init(descriptor fd: Int32, rank: Int, worldSize: Int, timeout: Double = 300) throws {
        guard worldSize >= 1, (0..<worldSize).contains(rank) else {
            throw CollectiveError.invalidArgument("rank \(rank) out of range 0..<\(worldSize)")
        }
        guard timeout > 0, timeout.isFinite else { throw CollectiveError.invalidArgument("time-out \(timeout) s is not positive") }
        let segment = "descriptor \(fd)"
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw CollectiveError.sharedMemory(segment: segment, message: "not an open descriptor: \(errnoText())")
        }
        guard st.st_size >= 4096 else {
            throw CollectiveError.sharedMemory(segment: segment, message: "not a collective group (\(st.st_size) bytes)")
        }
        let size = Int(st.st_size)
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw CollectiveError.sharedMemory(segment: segment, message: "cannot map: \(errnoText())")
        }
        guard let layout = Self.validLayout(p, size: size), layout.worldSize == worldSize else {
            let found = Self.validLayout(p, size: size).map { "a group of \($0.worldSize)" } ?? "not a collective group"
            munmap(p, size)
            throw CollectiveError.sharedMemory(segment: segment, message: "\(found), expected a group of \(worldSize)")
        }
        let existing = Int32(bitPattern: moe_atomic_load_u32(p + layout.pidOffset(rank)))
        if existing != 0, existing != getpid(),
           ProcessLiveness.isAlive(pid: existing, startTime: moe_atomic_load_u64(p + layout.startTimeOffset(rank))) {
            munmap(p, size)
            throw CollectiveError.sharedMemory(segment: segment, message: "rank \(rank) is already attached by process \(existing)")
        }
        self.rank = rank
        self.worldSize = worldSize
        self.timeout = timeout
        self.layout = layout
        self.base = p
        self.mappedBytes = size
        self.barrierEpoch = moe_atomic_load_u32(p + SharedMemoryLayout.barrierGenerationOffset)
        // Start time first, then the pid: a peer that sees the pid sees the start time.
        moe_atomic_store_u64(p + layout.startTimeOffset(rank), ProcessLiveness.startTime(pid: getpid()) ?? 0)
        moe_atomic_store_u32(p + layout.pidOffset(rank), UInt32(bitPattern: getpid()))
        try checkAbort()
    }

    deinit {
        munmap(base, mappedBytes)
    }

    // MARK: - Helpers shared by the extensions

    /// The layout described by a mapped header, if it is a complete group file of `size` bytes.
    static func validLayout(_ p: UnsafeMutableRawPointer, size: Int) -> SharedMemoryLayout? {
        guard moe_atomic_load_u64(p + SharedMemoryLayout.magicOffset) == SharedMemoryLayout.magic,
              p.load(fromByteOffset: SharedMemoryLayout.versionOffset, as: UInt32.self) == SharedMemoryLayout.version
        else { return nil }
        let n = Int(p.load(fromByteOffset: SharedMemoryLayout.worldSizeOffset, as: UInt32.self))
        let slot = Int(p.load(fromByteOffset: SharedMemoryLayout.slotBytesOffset, as: UInt64.self))
        let mailbox = Int(p.load(fromByteOffset: SharedMemoryLayout.mailboxBytesOffset, as: UInt64.self))
        let total = Int(p.load(fromByteOffset: SharedMemoryLayout.totalBytesOffset, as: UInt64.self))
        guard (1...SharedMemoryLayout.maxWorldSize).contains(n), slot >= SharedMemoryLayout.minSlotBytes, mailbox > 8 else { return nil }
        let layout = SharedMemoryLayout(worldSize: n, slotBytes: slot, mailboxBytes: mailbox)
        guard layout.totalBytes == total, total == size else { return nil }
        return layout
    }

    /// Sets the abort flag with its cause (the first aborter's cause wins) and wakes every waiter.
    static func raiseAbort(_ p: UnsafeMutableRawPointer, layout: SharedMemoryLayout, kind: UInt32, rank: Int, pid: Int32) {
        if moe_atomic_cas_u32(p + SharedMemoryLayout.abortClaimOffset, 0, 1) == 1 {
            moe_atomic_store_u32(p + SharedMemoryLayout.abortKindOffset, kind)
            moe_atomic_store_u32(p + SharedMemoryLayout.abortRankOffset, UInt32(bitPattern: Int32(truncatingIfNeeded: rank)))
            moe_atomic_store_u32(p + SharedMemoryLayout.abortPidOffset, UInt32(bitPattern: pid))
            moe_atomic_store_u32(p + SharedMemoryLayout.abortFlagOffset, 1)
        }
        for offset in layout.futexWordOffsets { _ = moe_futex_wake(p + offset) }
    }

    @inline(__always) func word(_ offset: Int) -> UnsafeMutableRawPointer { base + offset }
    @inline(__always) func slot(_ rank: Int) -> UnsafeMutableRawPointer { base + layout.slotOffset(rank) }
    @inline(__always) var resultArea: UnsafeMutableRawPointer { base + layout.resultOffset }
    @inline(__always) static func now() -> Double { moe_monotonic_seconds() }
}

func errnoText() -> String { String(cString: strerror(errno)) }
