import CMPI
import Foundation

/// An MPI communicator handle: a group of ranks (MPI_COMM_WORLD, or a part split off it) with
/// this process's rank in it. Collectives over it come with `MPICommunicator(group:)`.
/// Groups made by `split` or `duplicate` are freed (MPI_Comm_free) by `free()` or on deinit,
/// unless MPI was finalized before; MPI_COMM_WORLD is never freed.
///
/// A group, like an MPI communicator, carries its own message space: messages and collectives on
/// one group never match those of another, so e.g. a scheduler thread can talk over
/// `world.group.duplicate()` while tasks run collectives on their own splits (concurrent use
/// from several threads needs `MPIWorld.threadLevel == .multiple`).
public final class MPIGroup {
    /// This process's rank in the group, 0 ..< size.
    public let rank: Int
    /// The number of processes in the group.
    public let size: Int
    /// The MPI handle (valid until `free()`).
    public private(set) var comm: MPI_Comm
    private let owned: Bool

    init(comm: MPI_Comm, rank: Int, size: Int, owned: Bool) {
        self.comm = comm
        self.rank = rank
        self.size = size
        self.owned = owned
    }

    /// Wraps a new communicator: sets MPI_ERRORS_RETURN and reads rank and size.
    static func adopt(_ comm: MPI_Comm, function: String) throws -> MPIGroup {
        var c: MPI_Comm? = comm
        do {
            try checkMPI(MPI_Comm_set_errhandler(comm, moe_MPI_ERRORS_RETURN()), "MPI_Comm_set_errhandler after \(function)")
            var r: Int32 = 0, n: Int32 = 0
            try checkMPI(MPI_Comm_rank(comm, &r), "MPI_Comm_rank after \(function)")
            try checkMPI(MPI_Comm_size(comm, &n), "MPI_Comm_size after \(function)")
            return MPIGroup(comm: comm, rank: Int(r), size: Int(n), owned: true)
        } catch {
            _ = MPI_Comm_free(&c)
            throw error
        }
    }

    /// MPI_Comm_split, collective over this group: every rank passing the same `color` lands in
    /// one new group, ordered by `key` (ties by rank in this group). A rank passing nil
    /// (MPI_UNDEFINED) joins no group and gets nil. Colors must be ≥ 0.
    public func split(color: Int?, key: Int) throws -> MPIGroup? {
        try checkUsable("MPI_Comm_split")
        if let c = color, c < 0 || c > Int(Int32.max) {
            throw MPIError.call(function: "MPI_Comm_split", message: "color \(c) is not in 0...\(Int32.max)")
        }
        guard let k = Int32(exactly: key) else {
            throw MPIError.call(function: "MPI_Comm_split", message: "key \(key) does not fit a C int")
        }
        var out: MPI_Comm? = moe_MPI_COMM_NULL()
        try checkMPI(MPI_Comm_split(comm, color.map { Int32($0) } ?? moe_MPI_UNDEFINED(), k, &out), "MPI_Comm_split")
        guard let made = out, made != moe_MPI_COMM_NULL() else { return nil }
        return try Self.adopt(made, function: "MPI_Comm_split")
    }

    /// MPI_Comm_dup, collective over this group: the same ranks in a separate message space.
    public func duplicate() throws -> MPIGroup {
        try checkUsable("MPI_Comm_dup")
        var out: MPI_Comm? = moe_MPI_COMM_NULL()
        try checkMPI(MPI_Comm_dup(comm, &out), "MPI_Comm_dup")
        guard let made = out else { throw MPIError.call(function: "MPI_Comm_dup", message: "no communicator returned") }
        return try Self.adopt(made, function: "MPI_Comm_dup")
    }

    /// MPI_Barrier over the group.
    public func barrier() throws {
        try checkUsable("MPI_Barrier")
        try checkMPI(MPI_Barrier(comm), "MPI_Barrier")
    }

    /// Frees a split or duplicated group (MPI_Comm_free); the handle is unusable afterwards.
    /// Nothing for MPI_COMM_WORLD, a freed group, or after MPI_Finalize.
    public func free() {
        guard owned, comm != moe_MPI_COMM_NULL(), !MPIWorld.isFinalized else { return }
        var c: MPI_Comm? = comm
        _ = MPI_Comm_free(&c)
        comm = moe_MPI_COMM_NULL()
    }

    deinit { free() }

    func checkUsable(_ function: String) throws {
        if MPIWorld.isFinalized { throw MPIError.finalized }
        if comm == moe_MPI_COMM_NULL() { throw MPIError.call(function: function, message: "the group was freed") }
    }
}
