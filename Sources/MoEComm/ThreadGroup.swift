import Foundation
import MoECore

/// An in-process group of N ranks, one thread each, for unit tests of the parallel steps
/// (data, expert and pipeline parallelism) without processes or shared memory.
///
/// It follows the `Communicator` contract with the simplest code that can be checked by eye:
/// each collective publishes this rank's pointer, meets the others at a real barrier (a
/// condition variable), reads what it needs from the other ranks' memory, and meets them again
/// before anyone changes that memory. Reductions add in rank order, so a sum is the bits of the
/// serial `((b₀ + b₁) + b₂) + …` on every rank, as with `SharedMemoryGroup`. Point-to-point
/// messages are copied into unbounded per-pair queues. A rank whose body throws aborts the group:
/// the others' next (or current) collective throws `CollectiveError.aborted(byRank:)`; a rank that
/// never arrives makes the others throw `timedOut` after `timeout` seconds.
///
///     let results = try ThreadGroup.run(world: 3) { comm in try step(comm) }   // [rank 0, 1, 2]
public final class ThreadGroup: @unchecked Sendable {
    public let worldSize: Int
    public let timeout: Double
    private let condition = NSCondition()
    private var arrived = 0
    private var generation = 0
    private var present: [Bool]
    private var abortedBy: Int??
    /// What each rank published for the current collective (a fixed buffer: each rank writes
    /// only its own entry, before a barrier; the others read it after).
    fileprivate let published: UnsafeMutablePointer<Published>
    /// Messages from rank s to rank d, oldest first: `mailboxes[s * N + d]`.
    private var mailboxes: [[[UInt8]]]

    fileprivate enum Published {
        case none
        case pointer(UnsafeMutableRawPointer, count: Int)
        case counts(UnsafePointer<Float>, [Int])
    }

    public init(worldSize: Int, timeout: Double = 30) {
        precondition(worldSize >= 1, "a group needs at least one rank")
        self.worldSize = worldSize
        self.timeout = timeout
        present = Array(repeating: false, count: worldSize)
        published = .allocate(capacity: worldSize)
        published.initialize(repeating: .none, count: worldSize)
        mailboxes = Array(repeating: [], count: worldSize * worldSize)
    }

    deinit {
        published.deinitialize(count: worldSize)
        published.deallocate()
    }

    /// The communicator of each rank.
    public func communicators() -> [Communicator] { (0..<worldSize).map { ThreadRank(group: self, rank: $0) } }

    /// Runs `body` once per rank, each on its own thread (8 MiB of stack), and returns the
    /// results in rank order once every rank has returned. The first error thrown (lowest rank
    /// among those that failed first-hand, not by abort) is rethrown.
    ///
    /// OpenBLAS runs single-threaded while the ranks run: its thread count is one setting of the
    /// process, and `ParallelFor` lowers and restores it around parallel sections, so ranks that
    /// are threads of one process would change it under each other's running sgemm
    /// (`openblas_set_num_threads` is not safe while another thread is in OpenBLAS: the heap was
    /// corrupted, "corrupted size vs. prev_size", in an expert-parallel LM test).
    public static func run<T>(world: Int, timeout: Double = 30, _ body: @escaping (Communicator) throws -> T) throws -> [T] {
        let blasThreads = BLASInfo.threads
        BLASInfo.setThreads(1)
        defer { BLASInfo.setThreads(blasThreads) }
        let group = ThreadGroup(worldSize: world, timeout: timeout)
        let comms = group.communicators()
        let done = DispatchSemaphore(value: 0)
        let results = Outcomes<T>(count: world)
        for r in 0..<world {
            let thread = Thread {
                let result = Result(catching: { try body(comms[r]) })
                if case .failure = result { group.abort(by: r) }
                results.set(r, result)
                done.signal()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        for _ in 0..<world { done.wait() }
        let all = results.all
        let errors = all.compactMap { r -> Error? in if case .failure(let e)? = r { return e } else { return nil } }
        func isAbort(_ e: Error) -> Bool { if case .aborted? = e as? CollectiveError { return true } else { return false } }
        if let first = errors.first(where: { !isAbort($0) }) ?? errors.first { throw first }
        return all.map { try! $0!.get() }
    }

    /// The ranks' results, filled by their threads.
    private final class Outcomes<T>: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [Result<T, Error>?]
        init(count: Int) { values = Array(repeating: nil, count: count) }
        func set(_ rank: Int, _ value: Result<T, Error>) { lock.lock(); values[rank] = value; lock.unlock() }
        var all: [Result<T, Error>?] { lock.lock(); defer { lock.unlock() }; return values }
    }

    /// Makes every waiting and future collective throw `aborted(byRank: rank)`.
    public func abort(by rank: Int?) {
        condition.lock()
        if abortedBy == nil { abortedBy = .some(rank) }
        condition.broadcast()
        condition.unlock()
    }

    // MARK: the barrier and the mailboxes

    /// Blocks until all ranks have arrived; returns the seconds waited.
    fileprivate func barrier(_ rank: Int, _ operation: String) throws -> Double {
        let start = Date()
        condition.lock()
        defer { condition.unlock() }
        if let by = abortedBy { throw CollectiveError.aborted(byRank: by) }
        let mine = generation
        present[rank] = true
        arrived += 1
        if arrived == worldSize {
            arrived = 0
            generation += 1
            present = Array(repeating: false, count: worldSize)
            condition.broadcast()
            return Date().timeIntervalSince(start)
        }
        let deadline = start.addingTimeInterval(timeout)
        while generation == mine {
            if let by = abortedBy { throw CollectiveError.aborted(byRank: by) }
            if !condition.wait(until: deadline), generation == mine {
                let missing = (0..<worldSize).filter { !present[$0] }
                throw CollectiveError.timedOut(operation: operation, seconds: timeout, waitingFor: missing)
            }
        }
        return Date().timeIntervalSince(start)
    }

    fileprivate func post(_ bytes: [UInt8], from s: Int, to d: Int) throws {
        condition.lock()
        defer { condition.unlock() }
        if let by = abortedBy { throw CollectiveError.aborted(byRank: by) }
        mailboxes[s * worldSize + d].append(bytes)
        condition.broadcast()
    }

    fileprivate func take(from s: Int, to d: Int) throws -> (message: [UInt8], waited: Double) {
        let start = Date(), deadline = start.addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while mailboxes[s * worldSize + d].isEmpty {
            if let by = abortedBy { throw CollectiveError.aborted(byRank: by) }
            if !condition.wait(until: deadline), mailboxes[s * worldSize + d].isEmpty {
                throw CollectiveError.timedOut(operation: "receive", seconds: timeout, waitingFor: [s])
            }
        }
        return (mailboxes[s * worldSize + d].removeFirst(), Date().timeIntervalSince(start))
    }
}

/// One rank of a `ThreadGroup`.
private final class ThreadRank: Communicator {
    let group: ThreadGroup
    let rank: Int
    var worldSize: Int { group.worldSize }
    private(set) var statistics = CommStatistics()

    init(group: ThreadGroup, rank: Int) {
        self.group = group
        self.rank = rank
    }

    /// The address published for an empty buffer (never read: its count is 0).
    static let nowhere = UnsafeMutableRawPointer(bitPattern: 64)!

    private func wait(_ operation: String) throws { statistics.waitSeconds += try group.barrier(rank, operation) }

    /// Publish, meet, `read` the others' publications, meet again (nobody reuses its memory
    /// before everyone has read it).
    private func exchange(_ operation: String, _ mine: ThreadGroup.Published, read: () throws -> Void) throws {
        statistics.calls += 1
        group.published[rank] = mine
        try wait(operation)
        var failure: Error?
        do { try read() } catch { failure = error }
        try wait(operation)
        if let failure { throw failure }
    }

    private func pointer(_ r: Int) -> UnsafeMutableRawPointer {
        guard case .pointer(let p, _) = group.published[r] else { preconditionFailure("rank \(r) published no buffer") }
        return p
    }

    func barrier() throws {
        statistics.calls += 1
        try wait("barrier")
    }

    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        guard count >= 0 else { throw CollectiveError.invalidArgument("allReduceSum: negative count \(count)") }
        try reduce(UnsafeMutableRawPointer(buffer), count: count, as: Float.self, "allReduceSum")
    }

    func allReduceSum(_ values: inout [Double]) throws {
        try values.withUnsafeMutableBufferPointer { v in
            try reduce(UnsafeMutableRawPointer(v.baseAddress), count: v.count, as: Double.self, "allReduceSum(Double)")
        }
    }

    /// `buffer ← ((b₀ + b₁) + b₂) + …`, computed by every rank into a private sum, written back
    /// after the second meeting.
    private func reduce<T: BinaryFloatingPoint>(_ buffer: UnsafeMutableRawPointer?, count: Int, as: T.Type, _ operation: String) throws {
        var sum = [T](repeating: 0, count: count)
        try exchange(operation, .pointer(buffer ?? Self.nowhere, count: count)) {
            for r in 0..<worldSize {
                guard case .pointer(_, let c) = group.published[r], c == count else {
                    throw CollectiveError.invalidArgument("\(operation): rank \(r) passed a different count")
                }
                let p = pointer(r).assumingMemoryBound(to: T.self)
                if r == 0 { for i in 0..<count { sum[i] = p[i] } } else { for i in 0..<count { sum[i] += p[i] } }
            }
        }
        if let buffer, count > 0 { sum.withUnsafeBufferPointer { buffer.assumingMemoryBound(to: T.self).update(from: $0.baseAddress!, count: count) } }
        statistics.bytesSent += count * MemoryLayout<T>.stride
        statistics.bytesReceived += (worldSize - 1) * count * MemoryLayout<T>.stride
    }

    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {
        guard (0..<worldSize).contains(root) else { throw CollectiveError.invalidArgument("broadcast root \(root) out of range 0..<\(worldSize)") }
        try exchange("broadcast", .pointer(buffer, count: bytes)) {
            if rank != root { buffer.copyMemory(from: pointer(root), byteCount: bytes) }
        }
        if rank == root { statistics.bytesSent += bytes } else { statistics.bytesReceived += bytes }
    }

    @discardableResult
    func allToAllV(send: UnsafePointer<Float>, sendCounts: [Int], receive: UnsafeMutablePointer<Float>, receiveCapacity: Int) throws -> [Int] {
        guard sendCounts.count == worldSize else {
            throw CollectiveError.invalidArgument("allToAllV: \(sendCounts.count) send counts for \(worldSize) ranks")
        }
        var received = [Int](repeating: 0, count: worldSize)
        try exchange("allToAllV", .counts(send, sendCounts)) {
            var offset = 0
            for s in 0..<worldSize {
                guard case .counts(let p, let counts) = group.published[s] else { preconditionFailure("rank \(s) published no counts") }
                let start = counts[..<rank].reduce(0, +), n = counts[rank]
                guard offset + n <= receiveCapacity else {
                    throw CollectiveError.invalidArgument("allToAllV: receiving \(offset + n) floats into room for \(receiveCapacity)")
                }
                (receive + offset).update(from: p + start, count: n)
                received[s] = n
                offset += n
            }
        }
        statistics.bytesSent += (sendCounts.reduce(0, +) - sendCounts[rank]) * 4
        statistics.bytesReceived += (received.reduce(0, +) - received[rank]) * 4
        return received
    }

    func allGatherV(_ bytes: UnsafeRawBufferPointer, visit: (Int, UnsafeRawBufferPointer) throws -> Void) throws {
        try exchange("allGatherV", .pointer(UnsafeMutableRawPointer(mutating: bytes.baseAddress) ?? Self.nowhere, count: bytes.count)) {
            for r in 0..<worldSize {
                guard case .pointer(let p, let n) = group.published[r] else { preconditionFailure("rank \(r) published no bytes") }
                try visit(r, UnsafeRawBufferPointer(start: n == 0 ? nil : p, count: n))
                if r != rank { statistics.bytesReceived += n }
            }
        }
        statistics.bytesSent += bytes.count
    }

    func send(_ bytes: UnsafeRawBufferPointer, to destination: Int) throws {
        guard (0..<worldSize).contains(destination) else { throw CollectiveError.invalidArgument("send to rank \(destination) out of range 0..<\(worldSize)") }
        statistics.calls += 1
        try group.post(Array(bytes), from: rank, to: destination)
        statistics.bytesSent += bytes.count
    }

    func receive(into buffer: UnsafeMutableRawBufferPointer, from source: Int) throws -> Int {
        guard (0..<worldSize).contains(source) else { throw CollectiveError.invalidArgument("receive from rank \(source) out of range 0..<\(worldSize)") }
        statistics.calls += 1
        let (m, waited) = try group.take(from: source, to: rank)
        statistics.waitSeconds += waited
        guard m.count <= buffer.count else { throw CollectiveError.invalidArgument("message of \(m.count) bytes for a \(buffer.count)-byte buffer") }
        if !m.isEmpty { m.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: m.count) } }
        statistics.bytesReceived += m.count
        return m.count
    }
}
