// Every collective of `Communicator` on deterministic inputs that depend only on (rank in the
// group, group size, salt): run once through the MPI backend and once through SharedMemoryGroup
// ranks (threads of this process), the outputs must be byte for byte the same (MPIPeer.swift).
import Foundation
import MoEComm
import MoEMPI

enum CollectiveScenarios {
    /// Float inputs of rank r: the test pattern, with signed zeros, infinities of one sign, a NaN
    /// and subnormals at fixed places (so the order of additions and the start from b₀ show).
    static func floats(rank r: Int, salt: Int, count: Int) -> [Float] {
        (0..<count).map { i -> Float in
            switch i % 97 {
            case 5: return -0.0
            case 11: return r == 0 ? 0.0 : -0.0
            case 17: return .infinity
            case 23: return r == 1 ? .nan : 1
            case 29: return Float.leastNonzeroMagnitude * Float(r + 1)
            default: return patternValue(rank: r + 131 * salt, index: i)
            }
        }
    }

    /// The serial rank-order sum `((b₀ + b₁) + b₂) + …` of the float inputs (the specification).
    static func serialSum(ranks n: Int, salt: Int, count: Int) -> [Float] {
        var sum = floats(rank: 0, salt: salt, count: count)
        for r in 1..<max(1, n) {
            let b = floats(rank: r, salt: salt, count: count)
            for i in 0..<count { sum[i] = sum[i] + b[i] }
        }
        return sum
    }

    /// (name, output) of every scenario for this rank, in a fixed order. `count` sizes the large
    /// cases (floats of the reduce-scatter path, bytes of broadcast and the long message).
    static func run(_ comm: Communicator, salt: Int, count: Int) throws -> [(String, Data)] {
        let r = comm.rank, n = comm.worldSize
        var out: [(String, Data)] = []
        func floatsData(_ v: [Float]) -> Data { v.withUnsafeBytes { Data($0) } }

        for (name, c) in [("allreduce-small", 37), ("allreduce-large", count), ("allreduce-rounds", count)] {
            var x = floats(rank: r, salt: salt, count: c)
            let mpi = comm as? MPICommunicator
            if name == "allreduce-rounds" { mpi?.roundElements = 997 }
            try x.withUnsafeMutableBufferPointer { try comm.allReduceSum($0.baseAddress!, count: c) }
            mpi?.roundElements = 1 << 22
            let serial = serialSum(ranks: n, salt: salt, count: c)
            let same = zip(x, serial).allSatisfy { $0.bitPattern == $1.bitPattern }
            out.append((name, floatsData(x) + Data((same ? " serial ok" : " serial MISMATCH").utf8)))
        }
        for c in [3, count / 8 + 1] {
            var v = floats(rank: r, salt: salt, count: c).map { Double($0) * 1.000_000_1 }
            try comm.allReduceSum(&v)
            out.append(("allreduce-double-\(c)", v.withUnsafeBytes { Data($0) }))
        }

        let root = 1 % n
        var b = [UInt8](repeating: 0, count: count)
        if r == root { for i in 0..<count { b[i] = UInt8(truncatingIfNeeded: i &* 7 &+ 3 &+ salt) } }
        try b.withUnsafeMutableBytes { try comm.broadcast($0.baseAddress!, bytes: count, root: root) }
        out.append(("broadcast", Data(b)))

        // allToAllV: rank s sends ((s + 2d) % 4)·k floats to d (zeros included).
        let k = count / 64 + 1
        func sendCount(_ s: Int, _ d: Int) -> Int { ((s + 2 * d) % 4) * k }
        var send: [Float] = []
        for d in 0..<n { for i in 0..<sendCount(r, d) { send.append(Float(r * 1_000_000 + d * 10_000 + i + salt)) } }
        let capacity = (0..<n).map { sendCount($0, r) }.reduce(0, +)
        var receive = [Float](repeating: -1, count: capacity + 1)
        let got = try receive.withUnsafeMutableBufferPointer { rb in
            try send.withUnsafeBufferPointer { sb in
                try comm.allToAllV(send: sb.baseAddress ?? UnsafePointer(rb.baseAddress!), sendCounts: (0..<n).map { sendCount(r, $0) },
                                   receive: rb.baseAddress!, receiveCapacity: capacity)
            }
        }
        out.append(("alltoallv", Data(got.map(String.init).joined(separator: " ").utf8) + floatsData(receive)))

        let mine = [UInt8]((0..<(r == 0 ? 0 : k * (r + 1))).map { UInt8(truncatingIfNeeded: $0 &+ r &* 31 &+ salt) })
        var gathered = Data()
        try mine.withUnsafeBytes { mb in
            try comm.allGatherV(mb) { s, bytes in gathered += Data("\(s):\(bytes.count):".utf8) + Data(bytes) }
        }
        out.append(("allgatherv", gathered))

        // A ring of numbered messages (even ranks send first), then one long message.
        let next = (r + 1) % n, previous = (r + n - 1) % n
        var text = Data()
        var buffer = [UInt8](repeating: 0, count: max(count, 64))
        func exchange(_ message: [UInt8]) throws {
            let sendIt = { try message.withUnsafeBytes { try comm.send($0, to: next) } }
            let receiveIt = {
                let m = try buffer.withUnsafeMutableBytes { try comm.receive(into: $0, from: previous) }
                text += Data(buffer[0..<m]) + Data("|".utf8)
            }
            if r % 2 == 0 { try sendIt(); try receiveIt() } else { try receiveIt(); try sendIt() }
        }
        for m in 0..<5 { try exchange([UInt8]("\(r)->\(next) #\(m) salt \(salt)".utf8)) }
        if n > 1 { try exchange([UInt8]((0..<count).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ r) })) }
        out.append(("sendrecv", text))

        for _ in 0..<3 { try comm.barrier() }
        out.append(("calls", Data("\(comm.statistics.calls)".utf8)))
        return out
    }

    /// The same scenarios through a SharedMemoryGroup of `world` ranks (threads of this process
    /// on one memfd): every rank's outputs, in rank order.
    static func sharedMemoryReference(world: Int, salt: Int, count: Int) throws -> [[(String, Data)]] {
        let segment = try SharedMemorySegment(worldSize: world, slotBytes: 256 << 10, name: "moe-mpi-reference")
        final class Outcomes: @unchecked Sendable {
            let lock = NSLock()
            var results: [[(String, Data)]]
            var failure: Error?
            init(_ n: Int) { results = Array(repeating: [], count: n) }
        }
        let outcomes = Outcomes(world)
        let done = DispatchGroup()
        for r in 0..<world {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                do {
                    let group = try SharedMemoryGroup(descriptor: segment.descriptor, rank: r, worldSize: world, timeout: 30)
                    let out = try run(group, salt: salt, count: count)
                    outcomes.lock.lock(); outcomes.results[r] = out; outcomes.lock.unlock()
                } catch {
                    outcomes.lock.lock(); outcomes.failure = outcomes.failure ?? error; outcomes.lock.unlock()
                    segment.abort()
                }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        done.wait()
        if let failure = outcomes.failure { throw failure }
        return outcomes.results
    }
}
