import Foundation

/// The layout of a `SharedMemoryGroup` file (one unnamed file, a `SharedMemorySegment`, mapped
/// `MAP_SHARED` by every rank of the group; the scheduler keeps the header mapped for `abort`). All integers are little-endian
/// native words, naturally aligned; every area starts on a 64-byte boundary.
///
/// ```
/// offset                     size            contents
/// ── header ──────────────────────────────────────────────────────────────────────────────────
/// 0                          8               magic "MOECOMM1" (written last by the segment)
/// 8                          4               version (1)
/// 12                         4               worldSize N (1 … 64)
/// 16                         8               slotBytes S (multiple of 64, ≥ 4096)
/// 24                         8               mailboxBytes M (ring bytes per ordered pair)
/// 32                         8               total file size
/// 64                         4               abort flag (0 = running, 1 = aborted)
/// 68                         4               abort claim (the first aborter wins, CAS 0 → 1)
/// 72                         4               abort kind (1 scheduler, 2 peer died, 3 rank failed)
/// 76                         4               abort rank (Int32; the dead or failing rank)
/// 80                         4               abort pid  (Int32; the dead rank's process)
/// 128                        4               barrier arrival counter
/// 192                        4               barrier generation (futex word)
/// 256 + 16·r                 16              rank r: pid (Int32, 0 = not attached),
///                                            arrived (UInt32, the barrier generation it waits for),
///                                            start time (UInt64, /proc/<pid>/stat field 22)
/// ctl + 128·(s·N + d)        128             mailbox s → d: head UInt64 @0 and seq (futex) @8,
///                                            written by the sender; tail UInt64 @64 and
///                                            ack (futex) @72, written by the receiver
/// ── data ────────────────────────────────────────────────────────────────────────────────────
/// H                          S               result area (allReduce's reduced chunk)
/// H + S·(1 + r)              S               slot of rank r (written only by rank r)
/// H + S·(1 + N) + M·(s·N+d)  M               ring of mailbox s → d (a byte stream of messages,
///                                            each an 8-byte length then its bytes)
/// ```
/// H (the header size) is `256 + 16·N + 128·N²` rounded up to 4096.
///
/// Slot contents per collective: allReduce and broadcast use the whole slot for data;
/// allToAllV starts with N UInt64 send counts (rounded up to 64 bytes), then floats; allGatherV
/// starts with one UInt64 length (64 bytes), then bytes.
struct SharedMemoryLayout {
    static let magic: UInt64 = 0x314D_4D4F_4345_4F4D // "MOECOMM1" little-endian
    static let version: UInt32 = 1
    static let maxWorldSize = 64
    static let minSlotBytes = 4096
    static let defaultMailboxBytes = 256 << 10

    // Header field offsets.
    static let magicOffset = 0, versionOffset = 8, worldSizeOffset = 12, slotBytesOffset = 16
    static let mailboxBytesOffset = 24, totalBytesOffset = 32
    static let abortFlagOffset = 64, abortClaimOffset = 68, abortKindOffset = 72
    static let abortRankOffset = 76, abortPidOffset = 80
    static let barrierCountOffset = 128, barrierGenerationOffset = 192
    static let ranksOffset = 256, rankEntryBytes = 16, mailboxControlBytes = 128

    /// Abort kinds stored at `abortKindOffset`.
    static let abortByScheduler: UInt32 = 1, abortPeerDied: UInt32 = 2, abortRankFailed: UInt32 = 3

    let worldSize: Int
    let slotBytes: Int
    let mailboxBytes: Int

    init(worldSize: Int, slotBytes: Int, mailboxBytes: Int = SharedMemoryLayout.defaultMailboxBytes) {
        self.worldSize = worldSize
        self.slotBytes = slotBytes
        self.mailboxBytes = mailboxBytes
    }

    /// `slotBytes` as `create` stores it: at least 4096, rounded up to a multiple of 64.
    static func normalisedSlotBytes(_ requested: Int) -> Int {
        (max(requested, minSlotBytes) + 63) & ~63
    }

    var mailboxControlOffset: Int { Self.ranksOffset + Self.rankEntryBytes * worldSize }
    var headerBytes: Int {
        let raw = mailboxControlOffset + Self.mailboxControlBytes * worldSize * worldSize
        return (raw + 4095) & ~4095
    }
    var resultOffset: Int { headerBytes }
    func slotOffset(_ rank: Int) -> Int { headerBytes + slotBytes * (1 + rank) }
    var ringsOffset: Int { headerBytes + slotBytes * (1 + worldSize) }
    func ringOffset(from source: Int, to destination: Int) -> Int {
        ringsOffset + mailboxBytes * (source * worldSize + destination)
    }
    var totalBytes: Int { ringsOffset + mailboxBytes * worldSize * worldSize }

    // Rank table.
    func pidOffset(_ rank: Int) -> Int { Self.ranksOffset + Self.rankEntryBytes * rank }
    func arrivedOffset(_ rank: Int) -> Int { pidOffset(rank) + 4 }
    func startTimeOffset(_ rank: Int) -> Int { pidOffset(rank) + 8 }

    // Mailbox control of the ordered pair source → destination.
    func mailboxOffset(from source: Int, to destination: Int) -> Int {
        mailboxControlOffset + Self.mailboxControlBytes * (source * worldSize + destination)
    }
    func headOffset(from s: Int, to d: Int) -> Int { mailboxOffset(from: s, to: d) }
    func seqOffset(from s: Int, to d: Int) -> Int { mailboxOffset(from: s, to: d) + 8 }
    func tailOffset(from s: Int, to d: Int) -> Int { mailboxOffset(from: s, to: d) + 64 }
    func ackOffset(from s: Int, to d: Int) -> Int { mailboxOffset(from: s, to: d) + 72 }

    /// Every futex word a rank may sleep on (the barrier generation, every mailbox's seq and ack):
    /// `abort` wakes them all.
    var futexWordOffsets: [Int] {
        var words = [Self.barrierGenerationOffset]
        for s in 0..<worldSize {
            for d in 0..<worldSize { words.append(seqOffset(from: s, to: d)); words.append(ackOffset(from: s, to: d)) }
        }
        return words
    }
}
