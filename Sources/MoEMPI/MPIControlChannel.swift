import CMPI
import Foundation

/// The control plane of a run under MPI (ARCHITECTURE §5.5): rank 0 hands out orders (byte
/// strings) to every rank and gathers one report (a byte string) from each, over a duplicate of
/// MPI_COMM_WORLD (its own message space: nothing a task's collectives send can match it).
///
/// Waiting is non-blocking MPI (MPI_Ibcast, MPI_Igather(v)) polled with `MPI_Test` every
/// millisecond, not a blocking call: a rank with no task in a wave, or rank 0 waiting for the
/// others' reports, then costs the working ranks next to no CPU (Open MPI's blocking calls spin,
/// which on a node with as many ranks as cores would slow the ranks that work).
///
/// Every call is collective over the world: every rank calls `broadcast` and `gather` in the
/// same order. Only the thread that initialised MPI calls them (MPI_THREAD_FUNNELED suffices).
public final class MPIControlChannel {
    private let group: MPIGroup
    public var rank: Int { group.rank }
    public var size: Int { group.size }

    /// A duplicate of `world`'s communicator (collective: every rank calls it).
    public init(world: MPIWorld) throws {
        group = try world.group.duplicate()
    }

    /// Rank `root`'s `bytes` on every rank (the others' argument is ignored).
    public func broadcast(_ bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        var count = Int64(rank == root ? bytes.count : 0)
        try withUnsafeMutableBytes(of: &count) { p in
            try wait("MPI_Ibcast") { MPI_Ibcast(p.baseAddress, 8, moe_MPI_BYTE(), Int32(root), group.comm, &$0) }
        }
        var payload = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count))
        guard count > 0 else { return payload }
        try payload.withUnsafeMutableBytes { p in
            try wait("MPI_Ibcast") { MPI_Ibcast(p.baseAddress, Int32(count), moe_MPI_BYTE(), Int32(root), group.comm, &$0) }
        }
        return payload
    }

    /// Every rank's `bytes`, in rank order, on `root` (nil on the other ranks).
    public func gather(_ bytes: [UInt8], root: Int = 0) throws -> [[UInt8]]? {
        var mine = Int32(bytes.count)
        var counts = [Int32](repeating: 0, count: rank == root ? size : 1)
        try counts.withUnsafeMutableBytes { c in
            try withUnsafeMutableBytes(of: &mine) { m in
                try wait("MPI_Igather") { MPI_Igather(m.baseAddress, 1, moe_MPI_INT(), c.baseAddress, 1, moe_MPI_INT(), Int32(root), group.comm, &$0) }
            }
        }
        var offsets = [Int32](repeating: 0, count: counts.count)
        for i in counts.indices.dropFirst() { offsets[i] = offsets[i - 1] + counts[i - 1] }
        let total = rank == root ? Int(counts.reduce(0, +)) : 0
        var all = [UInt8](repeating: 0, count: max(total, 1))
        var sent = bytes.isEmpty ? [0] : bytes
        try sent.withUnsafeMutableBytes { s in
            try all.withUnsafeMutableBytes { a in
                try counts.withUnsafeBufferPointer { c in
                    try offsets.withUnsafeBufferPointer { o in
                        try wait("MPI_Igatherv") {
                            MPI_Igatherv(s.baseAddress, Int32(bytes.count), moe_MPI_BYTE(), a.baseAddress, c.baseAddress, o.baseAddress,
                                         moe_MPI_BYTE(), Int32(root), group.comm, &$0)
                        }
                    }
                }
            }
        }
        guard rank == root else { return nil }
        return counts.indices.map { Array(all[Int(offsets[$0]) ..< Int(offsets[$0] + counts[$0])]) }
    }

    /// MPI_Ibarrier over `group`, polled like the channel's operations. With `timeout`, throws
    /// `MPIControlTimeout` when the other ranks have not all arrived after that many seconds (the
    /// barrier is left pending: the caller's next step is to abort the job). A task's ranks meet
    /// here, on a duplicate of the task's group, after the task: a rank whose task failed learns
    /// whether its peers ended too, or are blocked in a collective waiting for it.
    public static func barrier(_ group: MPIGroup, timeout: Double?) throws {
        try wait("MPI_Ibarrier", timeout: timeout) { MPI_Ibarrier(group.comm, &$0) }
    }

    private func wait(_ function: String, start: (inout MPI_Request?) -> Int32) throws {
        try Self.wait(function, timeout: nil, start: start)
    }

    /// Starts a non-blocking operation and polls it to completion, sleeping 1 ms between tests.
    private static func wait(_ function: String, timeout: Double?, start: (inout MPI_Request?) -> Int32) throws {
        var request: MPI_Request? = nil
        try checkMPI(start(&request), function)
        var done: Int32 = 0
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        while true {
            try checkMPI(MPI_Test(&request, &done, moe_MPI_STATUS_IGNORE()), "MPI_Test (\(function))")
            if done != 0 { return }
            if let deadline, Date() > deadline { throw MPIControlTimeout(function: function, seconds: timeout!) }
            usleep(1000)
        }
    }
}

/// The other ranks did not all reach a control operation in time (`MPIControlChannel.barrier`).
public struct MPIControlTimeout: Error, CustomStringConvertible {
    public var function: String
    public var seconds: Double
    public var description: String {
        "MPI: \(function): the other ranks did not arrive within \(String(format: "%g", seconds)) s"
    }
}
