import CMPI
import Foundation
import MoEComm

/// The MPI backend of `Communicator` (ARCHITECTURE §5.5, issue 14): the ranks of one `MPIGroup`
/// (a split of MPI_COMM_WORLD, or the world), on one machine or many.
///
/// Same bits as `SharedMemoryGroup`: MPI's own reductions (MPI_Allreduce) add in an order the
/// library chooses (trees, rings, by message size), so sums are never left to MPI. Instead every
/// rank receives the contributions it needs and adds them itself in rank order with the element
/// type's own arithmetic, `((b₀ + b₁) + b₂) + …` element by element (Float in Float, Double in
/// Double, starting from b₀, no FMA, no wider accumulator): exactly what the shm backend and a
/// serial loop over the ranks' buffers compute, whatever the transport.
///
/// - Large sums: reduce-scatter by MPI_Alltoallv (rank r receives part r, about count/N elements,
///   from every rank and adds the N copies in rank order), then MPI_Allgatherv of the reduced
///   parts (in place). Each rank sends and receives 2·(N−1)/N of the data, the bandwidth of a
///   ring all-reduce, in two collective steps instead of 2·(N−1). Data larger than
///   `roundElements` goes in rounds (bounded scratch memory and MPI's `int` counts).
/// - Small sums (`count · N · size ≤ gatherBytes`): one MPI_Allgather of the whole vectors, then
///   every rank adds all N in rank order: one latency instead of two.
///
/// Errors: the group's communicator returns MPI errors (MPI_ERRORS_RETURN); a failed MPI call
/// throws `CollectiveError.transport` naming the function and MPI's text. An argument error
/// that every rank can see (allToAllV's receive room, which the ranks exchange first) is thrown on
/// every rank: `.invalidArgument` on the rank at fault, `.aborted(byRank:)` on the others. A rank
/// that throws in the middle of a collective (its own `visit`, a local argument error) leaves
/// its peers waiting in MPI: end the job with `MPIWorld.abort(code:)`, as for a dead rank (MPI
/// semantics: a dead rank ends the job, §5.5). MPI has no time-outs.
///
/// Statistics: `calls` counts collectives and each send or receive (as the shm group does);
/// `bytesSent`/`bytesReceived` the data as the collective's definition moves it between distinct
/// ranks (MPI may forward more inside its trees or rings); `communicationSeconds` the time in
/// MPI data calls and in the rank-order additions (it includes waiting for late peers, which
/// MPI does not separate); `waitSeconds` the time in barriers and waiting for a message to
/// arrive (`receive`'s probe).
///
/// One object is used by one thread at a time (it keeps scratch memory and statistics).
public final class MPICommunicator: Communicator {
    public let group: MPIGroup
    public var rank: Int { group.rank }
    public var worldSize: Int { group.size }
    public internal(set) var statistics = CommStatistics()

    /// Elements per round of a large sum (default 4 Mi: 16 MiB of Float scratch). Changing it
    /// (or `gatherBytes`) changes the messages, never the sums' bits.
    public var roundElements = 1 << 22
    /// Up to this many bytes in all (count · N · element size) a sum goes by one all-gather.
    public var gatherBytes = 64 << 10
    /// The tag of point-to-point messages.
    static let messageTag: Int32 = 7

    var scratch: UnsafeMutableRawPointer?
    var scratchBytes = 0
    /// Messages this rank sent to itself, oldest first (MPI_Send to oneself could block).
    var selfMailbox: [[UInt8]] = []

    /// The communicator of `group`'s ranks. Throws `.invalidArgument` after MPI_Finalize or on a
    /// freed group.
    public init(group: MPIGroup) throws {
        do { try group.checkUsable("MPICommunicator") } catch {
            throw CollectiveError.invalidArgument("\(error)")
        }
        self.group = group
    }

    deinit { scratch?.deallocate() }

    /// Scratch memory of at least `bytes` (kept and reused: no allocation after the first step).
    func scratchSpace(_ bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > scratchBytes || scratch == nil {
            scratch?.deallocate()
            scratchBytes = max(bytes, 64)
            scratch = .allocate(byteCount: scratchBytes, alignment: 64)
        }
        return scratch!
    }

    @inline(__always) static func now() -> Double { MPI_Wtime() }

    /// Throws `.transport` unless `code` is MPI_SUCCESS.
    @inline(__always)
    func check(_ code: Int32, _ function: @autoclosure () -> String) throws {
        if code != MPI_SUCCESS { throw CollectiveError.transport(operation: function(), message: mpiErrorText(code)) }
    }

    /// Counts a call; refuses once MPI is finalized or the group freed.
    func beginCollective() throws {
        statistics.calls += 1
        do { try group.checkUsable("collective") } catch { throw CollectiveError.invalidArgument("\(error)") }
    }

    /// An MPI `int` count, or `.invalidArgument` naming the operation.
    func mpiCount(_ n: Int, _ operation: String) throws -> Int32 {
        guard let c = Int32(exactly: n) else {
            throw CollectiveError.invalidArgument("\(operation): \(n) elements exceed MPI's int count")
        }
        return c
    }

    public func barrier() throws {
        try beginCollective()
        let t = Self.now()
        try check(MPI_Barrier(group.comm), "MPI_Barrier")
        statistics.waitSeconds += Self.now() - t
    }

    /// MPI_Bcast of the bytes, in pieces of at most 1 GiB (MPI's int counts).
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {
        try beginCollective()
        try CollectiveArguments.checkBroadcast(root: root, bytes: bytes, worldSize: worldSize)
        guard worldSize > 1 else { return }
        let t = Self.now()
        var done = 0
        while done < bytes {
            let c = min(1 << 30, bytes - done)
            try check(MPI_Bcast(buffer + done, Int32(c), moe_MPI_BYTE(), Int32(root), group.comm), "MPI_Bcast")
            done += c
        }
        statistics.communicationSeconds += Self.now() - t
        if rank == root { statistics.bytesSent += bytes * (worldSize - 1) } else { statistics.bytesReceived += bytes }
    }
}
