import Foundation

/// The collective protocol of a group of cooperating processes (ARCHITECTURE §3, "Collectives"):
/// the ranks `0 ..< worldSize` of one coupled task (data, expert or pipeline parallel training).
///
/// Every collective is called by every rank of the group, in the same order, with matching
/// arguments (the same `count` for `allReduce`, the same root for `broadcast`); a rank that calls
/// a different collective is a programming error the implementation may detect. Results never
/// depend on timing: reductions add the ranks' contributions in rank order 0, 1, …, N−1, so
/// every rank gets the same bits and a rerun gets the same bits.
///
/// A peer that dies, or that does not arrive within the group's time-out, makes every
/// collective of the surviving ranks throw `CollectiveError` (never hang forever): the task then
/// fails and the scheduler retries the whole group from its last checkpoint.
public protocol Communicator: AnyObject {
    /// This process's rank, 0 ..< worldSize.
    var rank: Int { get }
    /// Number of processes in the group.
    var worldSize: Int { get }

    /// Blocks until every rank has called `barrier`.
    func barrier() throws

    /// Element-wise sum of `count` floats over all ranks, in place on every rank:
    /// `buffer ← Σ_{r=0}^{N−1} buffer_r`, added in rank order (so `((b₀ + b₁) + b₂) + …`).
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws

    /// The same for a few Float64 values (losses, counts, norms), in rank order.
    func allReduceSum(_ values: inout [Double]) throws

    /// Copies `bytes` bytes at `buffer` from rank `root` into `buffer` on every other rank.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws

    /// Personalised all-to-all with variable counts (MPI_Alltoallv over floats): this rank's
    /// `send` holds `sendCounts[d]` floats for each destination rank d, back to back in rank order;
    /// on return `receive` holds the floats every source rank s sent to this rank, back to back in
    /// rank order, and the result is the count received from each source. `receive` must have room
    /// for their sum (`receiveCapacity` floats; more is an error).
    @discardableResult
    func allToAllV(send: UnsafePointer<Float>, sendCounts: [Int],
                   receive: UnsafeMutablePointer<Float>, receiveCapacity: Int) throws -> [Int]

    /// Every rank publishes a byte string (of any length, possibly different per rank); `visit`
    /// is then called on every rank with each rank's bytes, in rank order 0 … N−1 (the bytes are
    /// valid only during the call). Used for compressed gradients: each rank decodes and sums
    /// every contribution in the same order.
    func allGatherV(_ bytes: UnsafeRawBufferPointer, visit: (_ rank: Int, _ bytes: UnsafeRawBufferPointer) throws -> Void) throws

    /// Point-to-point: sends `bytes` to rank `destination` (blocks until the receiver has taken
    /// it or there is room for it; messages between one pair arrive in the order sent).
    func send(_ bytes: UnsafeRawBufferPointer, to destination: Int) throws
    /// Receives the next message from rank `source` into `buffer`; returns its length in bytes
    /// (a message longer than the buffer is an error).
    func receive(into buffer: UnsafeMutableRawBufferPointer, from source: Int) throws -> Int

    /// Time and bytes spent in collectives since the group started (see `CommStatistics`).
    var statistics: CommStatistics { get }
}

/// What communication cost: measured by the communicator around every collective.
public struct CommStatistics: Equatable, Sendable {
    /// Seconds spent moving and reducing data (copying into and out of the shared region, summing).
    public var communicationSeconds: Double = 0
    /// Seconds spent waiting for peers (at a barrier or for a message).
    public var waitSeconds: Double = 0
    /// Bytes this rank wrote for others to read (its contributions and messages).
    public var bytesSent: Int = 0
    /// Bytes this rank read from others' contributions and messages.
    public var bytesReceived: Int = 0
    /// Number of collective calls (point-to-point counts one per send or receive).
    public var calls: Int = 0
    public init() {}

    /// The difference `self − earlier` (per-step figures from two snapshots).
    public func since(_ earlier: CommStatistics) -> CommStatistics {
        var d = CommStatistics()
        d.communicationSeconds = communicationSeconds - earlier.communicationSeconds
        d.waitSeconds = waitSeconds - earlier.waitSeconds
        d.bytesSent = bytesSent - earlier.bytesSent
        d.bytesReceived = bytesReceived - earlier.bytesReceived
        d.calls = calls - earlier.calls
        return d
    }
}

/// Why a collective failed. The messages are one line, for the task's error output.
public enum CollectiveError: Error, Equatable, CustomStringConvertible {
    /// A peer process ended while the group was still running.
    case peerDied(rank: Int, pid: Int32)
    /// A peer did not arrive within the time-out.
    case timedOut(operation: String, seconds: Double, waitingFor: [Int])
    /// The group was aborted (by the scheduler, or by a rank that failed).
    case aborted(byRank: Int?)
    /// The shared region (named by `segment`: its label, or the descriptor a rank was given)
    /// could not be created, opened or mapped.
    case sharedMemory(segment: String, message: String)
    /// Arguments that cannot work (a message larger than the buffer, a rank out of range, ...).
    case invalidArgument(String)
    /// The transport under the group failed (an MPI call returned an error: its function and
    /// MPI's own text).
    case transport(operation: String, message: String)

    public var description: String {
        switch self {
        case .peerDied(let rank, let pid): return "collective group: rank \(rank) (process \(pid)) died"
        case .timedOut(let op, let s, let ranks):
            return "collective group: \(op) timed out after \(String(format: "%.0f", s)) s waiting for rank\(ranks.count == 1 ? "" : "s") \(ranks.map(String.init).joined(separator: ", "))"
        case .aborted(let r): return "collective group aborted" + (r.map { " by rank \($0)" } ?? " by the scheduler")
        case .sharedMemory(let segment, let message): return "collective group: \(segment): \(message)"
        case .invalidArgument(let message): return "collective group: \(message)"
        case .transport(let operation, let message): return "collective group: \(operation) failed: \(message)"
        }
    }
}

/// The group of one: every collective is the identity (a task run without parallelism uses the
/// same code path as a group of N).
public final class SoloCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var worldSize: Int { 1 }
    public private(set) var statistics = CommStatistics()
    public func barrier() throws {}
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func allReduceSum(_ values: inout [Double]) throws {}
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {
        guard root == 0 else { throw CollectiveError.invalidArgument("broadcast root \(root) out of range 0..<1") }
    }
    public func allToAllV(send: UnsafePointer<Float>, sendCounts: [Int], receive: UnsafeMutablePointer<Float>, receiveCapacity: Int) throws -> [Int] {
        try CollectiveArguments.checkAllToAllV(sendCounts: sendCounts, worldSize: 1)
        return try CollectiveArguments.allToAllVAlone(send: send, count: sendCounts[0], receive: receive, receiveCapacity: receiveCapacity)
    }
    public func allGatherV(_ bytes: UnsafeRawBufferPointer, visit: (Int, UnsafeRawBufferPointer) throws -> Void) throws {
        try visit(0, bytes)
    }
    private var mailbox: [[UInt8]] = []
    public func send(_ bytes: UnsafeRawBufferPointer, to destination: Int) throws {
        guard destination == 0 else { throw CollectiveError.invalidArgument("send to rank \(destination) out of range 0..<1") }
        mailbox.append(Array(bytes))
    }
    public func receive(into buffer: UnsafeMutableRawBufferPointer, from source: Int) throws -> Int {
        guard source == 0 else { throw CollectiveError.invalidArgument("receive from rank \(source) out of range 0..<1") }
        guard !mailbox.isEmpty else { throw CollectiveError.invalidArgument("receive from rank 0 with no message sent (a group of one would wait forever)") }
        let m = mailbox.removeFirst()
        guard m.count <= buffer.count else { throw CollectiveError.invalidArgument("message of \(m.count) bytes for a \(buffer.count)-byte buffer") }
        m.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: m.count) }
        return m.count
    }
}

/// The argument checks every backend makes alike (the same one-line messages), and allToAllV in
/// a group of one.
public enum CollectiveArguments {
    /// A broadcast's root must be a rank of the group and its size not negative.
    public static func checkBroadcast(root: Int, bytes: Int, worldSize: Int) throws {
        guard (0..<worldSize).contains(root) else {
            throw CollectiveError.invalidArgument("broadcast root \(root) out of range 0..<\(worldSize)")
        }
        guard bytes >= 0 else { throw CollectiveError.invalidArgument("broadcast: negative size \(bytes)") }
    }

    /// allToAllV needs one count, not negative, per rank.
    public static func checkAllToAllV(sendCounts: [Int], worldSize: Int) throws {
        guard sendCounts.count == worldSize else {
            throw CollectiveError.invalidArgument("allToAllV: \(sendCounts.count) send counts for \(worldSize) rank\(worldSize == 1 ? "" : "s")")
        }
        guard sendCounts.allSatisfy({ $0 >= 0 }) else { throw CollectiveError.invalidArgument("allToAllV: negative send count in \(sendCounts)") }
    }

    /// allToAllV in a group of one: the floats for rank 0 copied to `receive`.
    public static func allToAllVAlone(send: UnsafePointer<Float>, count: Int,
                                      receive: UnsafeMutablePointer<Float>, receiveCapacity: Int) throws -> [Int] {
        guard count <= receiveCapacity else {
            throw CollectiveError.invalidArgument("allToAllV: receiving \(count) floats into room for \(receiveCapacity)")
        }
        receive.update(from: send, count: count)
        return [count]
    }
}
