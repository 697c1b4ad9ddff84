import CShm
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The memory of one `SharedMemoryGroup`, as the process that starts the group holds it (the
/// scheduler, or a test; it does not join the group): an UNNAMED shared-memory file made with
/// memfd_create(2), sized, sealed against resizing and initialised here. The ranks are started
/// as child processes that inherit `descriptor` (pass its number, e.g. in an environment
/// variable) and attach with `SharedMemoryGroup(descriptor:rank:worldSize:timeout:)`.
///
/// Why unnamed: the file never has a name in /dev/shm or anywhere else, so there is nothing a
/// `kill -9` of the scheduler, of a rank or of all of them at once can leave behind, at any
/// moment. The kernel frees the memory when the last descriptor and the last mapping are gone
/// (the ranks die with their scheduler, see `Worker.watchParent`). That is strictly better than
/// a named file in /dev/shm unlinked once every rank has mapped it, which leaks if the scheduler
/// dies between creating it and the last rank's attach (a rank that is slow to start, or never
/// starts, keeps that window open up to the group's time-out). It also does not count against
/// the size of /dev/shm (64 MB in a default Docker container). The memory belongs to the
/// processes that hold it: another user cannot open it, and `ps`/`ls /dev/shm` show nothing.
///
/// `abort()` works through the descriptor and a mapping of the header this object keeps for its
/// whole life, so aborting can neither fail nor find the file gone. Dropping the object closes
/// the descriptor: the ranks' inherited descriptors and mappings stay valid.
///
/// Linux only (memfd_create(2), file seals); the collectives already need futex(2) and /proc.
public final class SharedMemorySegment {
    /// The memfd, close-on-exec in this process: a child inherits it only when it is passed on
    /// explicitly (posix_spawn_file_actions_adddup2(fd, fd) clears the flag in the child).
    public let descriptor: Int32
    public let worldSize: Int
    /// The size of the file in bytes (the data slots, the mailboxes and the header).
    public let bytes: Int
    let layout: SharedMemoryLayout
    private let header: UnsafeMutableRawPointer

    /// Creates the memory of a group of `worldSize` ranks with data slots of `slotBytes` (rounded
    /// up to a multiple of 64, at least 4096) and initialises its header. `name` only labels the
    /// file in /proc/<pid>/fd (`/memfd:<name> (deleted)`), for debugging. Call before starting
    /// the ranks.
    public init(worldSize: Int, slotBytes: Int = 8 << 20, name: String = "moe-run-group") throws {
        guard (1...SharedMemoryLayout.maxWorldSize).contains(worldSize) else {
            throw CollectiveError.invalidArgument("world size \(worldSize) out of range 1...\(SharedMemoryLayout.maxWorldSize)")
        }
        guard slotBytes > 0, slotBytes <= 1 << 40 else {
            throw CollectiveError.invalidArgument("slot size \(slotBytes) bytes out of range")
        }
        let layout = SharedMemoryLayout(worldSize: worldSize, slotBytes: SharedMemoryLayout.normalisedSlotBytes(slotBytes))
        let fd = moe_memfd_create(name)
        guard fd >= 0 else { throw CollectiveError.sharedMemory(segment: name, message: "cannot create: \(errnoText())") }
        // A fresh memfd is empty: ftruncate gives zeros, then the size is sealed so no process
        // can shrink the file under a mapping (a later access would be SIGBUS).
        guard ftruncate(fd, off_t(layout.totalBytes)) == 0 else {
            let message = "cannot size to \(layout.totalBytes) bytes: \(errnoText())"
            close(fd)
            throw CollectiveError.sharedMemory(segment: name, message: message)
        }
        guard moe_seal_size(fd) == 0 else {
            let message = "cannot seal its size: \(errnoText())"
            close(fd)
            throw CollectiveError.sharedMemory(segment: name, message: message)
        }
        guard let p = mmap(nil, layout.headerBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            let message = "cannot map: \(errnoText())"
            close(fd)
            throw CollectiveError.sharedMemory(segment: name, message: message)
        }
        // Write the constants, then the magic (a rank checks the magic first).
        p.storeBytes(of: SharedMemoryLayout.version, toByteOffset: SharedMemoryLayout.versionOffset, as: UInt32.self)
        p.storeBytes(of: UInt32(worldSize), toByteOffset: SharedMemoryLayout.worldSizeOffset, as: UInt32.self)
        p.storeBytes(of: UInt64(layout.slotBytes), toByteOffset: SharedMemoryLayout.slotBytesOffset, as: UInt64.self)
        p.storeBytes(of: UInt64(layout.mailboxBytes), toByteOffset: SharedMemoryLayout.mailboxBytesOffset, as: UInt64.self)
        p.storeBytes(of: UInt64(layout.totalBytes), toByteOffset: SharedMemoryLayout.totalBytesOffset, as: UInt64.self)
        moe_atomic_store_u64(p + SharedMemoryLayout.magicOffset, SharedMemoryLayout.magic)
        self.descriptor = fd
        self.worldSize = worldSize
        self.bytes = layout.totalBytes
        self.layout = layout
        self.header = p
    }

    deinit {
        munmap(header, layout.headerBytes)
        close(descriptor)
    }

    /// Aborts the group: sets the abort flag (unless a rank already did) and wakes every waiter,
    /// so every rank's current and later collectives throw `.aborted(byRank: nil)` (or
    /// `.peerDied` when a rank had already noticed a dead peer). Never fails; safe to call at any
    /// time, while ranks are blocked, and more than once.
    public func abort() {
        SharedMemoryGroup.raiseAbort(header, layout: layout, kind: SharedMemoryLayout.abortByScheduler, rank: -1, pid: 0)
    }
}
