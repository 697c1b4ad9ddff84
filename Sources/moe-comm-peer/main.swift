// The collectives test peer: one rank of a SharedMemoryGroup, started by MoECommTests.
//
//   moe-comm-peer <scenario> <fd> <rank> <world> <outfile> [count] [timeout-seconds]
//
// Attaches to the group whose memory is open at descriptor `fd` (a SharedMemorySegment the test
// made, inherited at spawn), runs the scenario and writes its
// results to `outfile`: raw little-endian bytes for the data scenarios, text for the others.
// On failure it writes "ERROR <description>" to `outfile` and stderr and exits 1.
//
// Scenarios: allreduce (count floats, pattern below), allreduce-double, broadcast (count bytes
// from root 1 % world), alltoallv (uneven counts with zeros), allgatherv (count·(rank+1) bytes,
// rank 0 sends none), sendrecv (a ring of small numbered messages, then one of count bytes),
// barrier (count barriers), repeat (6 allreduces of count floats starting from x = rank; writes
// the final min and max and the statistics' calls, bytes sent and received), die (one allreduce, then exits abruptly with status 3 while the others
// enter the next one), hang (attaches, then sleeps forever), wait (one barrier; for time-out
// and abort tests).
//
// Scenarios named mpi-… run the MPI backend instead, under mpirun (MPIPeer.swift).
import Foundation
import MoEComm

/// The test pattern (MoECommTests has the same function): floats of varied sign and magnitude,
/// so that the order of additions shows in the bits.
func patternValue(rank: Int, index: Int) -> Float {
    var z = UInt64(truncatingIfNeeded: rank &* 1_000_003 &+ index) &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    z ^= z >> 31
    let unit = Float(z >> 40) / Float(1 << 24) * 2 - 1            // [-1, 1)
    let scale = Float(1 << Int((z >> 8) & 15))                     // 1 … 32768
    return unit * scale
}

/// Deterministic allToAllV counts: rank s sends `(s + 2·d) % 4 · k` floats to d (zeros included).
func allToAllCount(source s: Int, destination d: Int, unit k: Int) -> Int { ((s + 2 * d) % 4) * k }
func allToAllValue(source s: Int, destination d: Int, index i: Int) -> Float { Float(s * 1_000_000 + d * 10_000 + i) }

func writeOut(_ path: String, _ data: Data) throws { try data.write(to: URL(fileURLWithPath: path)) }
func floatsData(_ values: [Float]) -> Data { values.withUnsafeBytes { Data($0) } }

let args = CommandLine.arguments
if args.count > 1, args[1].hasPrefix("mpi-") { runMPIPeer(args) }
guard args.count >= 6, let descriptor = Int32(args[2]), let rank = Int(args[3]), let world = Int(args[4]) else {
    FileHandle.standardError.write("usage: moe-comm-peer <scenario> <fd> <rank> <world> <outfile> [count] [timeout]\n".data(using: .utf8)!)
    exit(2)
}
let scenario = args[1], outfile = args[5]
let count = args.count > 6 ? Int(args[6]) ?? 1000 : 1000
let timeout = args.count > 7 ? Double(args[7]) ?? 20 : 20

do {
    let group = try SharedMemoryGroup(descriptor: descriptor, rank: rank, worldSize: world, timeout: timeout)
    close(descriptor) // the mapping keeps the memory; a rank needs no descriptor once attached
    switch scenario {
    case "allreduce":
        var x = (0..<count).map { patternValue(rank: rank, index: $0) }
        try x.withUnsafeMutableBufferPointer { try group.allReduceSum($0.baseAddress!, count: count) }
        try writeOut(outfile, floatsData(x))
    case "allreduce-double":
        var v = (0..<count).map { Double(patternValue(rank: rank, index: $0)) * 1.000_000_1 }
        try group.allReduceSum(&v)
        try writeOut(outfile, v.withUnsafeBytes { Data($0) })
    case "broadcast":
        let root = 1 % world
        var b = [UInt8](repeating: 0, count: count)
        if rank == root { for i in 0..<count { b[i] = UInt8(truncatingIfNeeded: i &* 7 &+ 3) } }
        try b.withUnsafeMutableBytes { try group.broadcast($0.baseAddress!, bytes: count, root: root) }
        try writeOut(outfile, Data(b))
    case "alltoallv":
        var send: [Float] = []
        for d in 0..<world {
            for i in 0..<allToAllCount(source: rank, destination: d, unit: count) { send.append(allToAllValue(source: rank, destination: d, index: i)) }
        }
        let counts = (0..<world).map { allToAllCount(source: rank, destination: $0, unit: count) }
        let capacity = (0..<world).map { allToAllCount(source: $0, destination: rank, unit: count) }.reduce(0, +)
        var receive = [Float](repeating: -1, count: capacity + 1)
        let got = try receive.withUnsafeMutableBufferPointer { r in
            try send.withUnsafeBufferPointer { s in
                try group.allToAllV(send: s.baseAddress ?? UnsafePointer(r.baseAddress!), sendCounts: counts, receive: r.baseAddress!, receiveCapacity: capacity)
            }
        }
        try writeOut(outfile, Data((got.map(String.init).joined(separator: " ") + "\n").utf8) + floatsData(Array(receive[0..<capacity])))
    case "allgatherv":
        let mine = [UInt8]((0..<(rank == 0 ? 0 : count * (rank + 1))).map { UInt8(truncatingIfNeeded: $0 &+ rank &* 31) })
        var text = ""
        try mine.withUnsafeBytes { b in
            try group.allGatherV(b) { r, bytes in
                var h: UInt64 = 1469598103934665603
                for x in bytes { h = (h ^ UInt64(x)) &* 1099511628211 }
                text += "\(r) \(bytes.count) \(h)\n"
            }
        }
        try writeOut(outfile, Data(text.utf8))
    case "sendrecv":
        let next = (rank + 1) % world, previous = (rank + world - 1) % world
        var text = ""
        var buffer = [UInt8](repeating: 0, count: max(count, 64))
        for m in 0..<20 {
            let message = [UInt8]("\(rank)->\(next) #\(m)".utf8)
            if rank % 2 == 0 {
                try message.withUnsafeBytes { try group.send($0, to: next) }
                let n = try buffer.withUnsafeMutableBytes { try group.receive(into: $0, from: previous) }
                text += String(decoding: buffer[0..<n], as: UTF8.self) + "\n"
            } else {
                let n = try buffer.withUnsafeMutableBytes { try group.receive(into: $0, from: previous) }
                text += String(decoding: buffer[0..<n], as: UTF8.self) + "\n"
                try message.withUnsafeBytes { try group.send($0, to: next) }
            }
        }
        // One large message around the ring (larger than the mailbox: streamed in pieces).
        let large = [UInt8]((0..<count).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ rank) })
        if rank % 2 == 0 {
            try large.withUnsafeBytes { try group.send($0, to: next) }
            _ = try buffer.withUnsafeMutableBytes { try group.receive(into: $0, from: previous) }
        } else {
            _ = try buffer.withUnsafeMutableBytes { try group.receive(into: $0, from: previous) }
            try large.withUnsafeBytes { try group.send($0, to: next) }
        }
        let expected = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ previous) }
        text += Array(buffer[0..<count]) == expected ? "large ok\n" : "large MISMATCH\n"
        try writeOut(outfile, Data(text.utf8))
    case "barrier":
        for _ in 0..<count { try group.barrier() }
        try writeOut(outfile, Data("barriers \(group.statistics.calls)\n".utf8))
    case "repeat":
        // x = rank, then 6 all-reduces: x doubles from the 2nd call on (world 2: 1, 2, 4, …, 32).
        var x = [Float](repeating: Float(rank), count: count)
        for _ in 0..<6 { try x.withUnsafeMutableBufferPointer { try group.allReduceSum($0.baseAddress!, count: count) } }
        let s = group.statistics
        try writeOut(outfile, Data("\(x.min() ?? .nan) \(x.max() ?? .nan) \(s.calls) \(s.bytesSent) \(s.bytesReceived)\n".utf8))
    case "die":
        var x = [Float](repeating: 1, count: count)
        try x.withUnsafeMutableBufferPointer { try group.allReduceSum($0.baseAddress!, count: count) }
        if rank == world - 1 { _exit(3) }
        try x.withUnsafeMutableBufferPointer { try group.allReduceSum($0.baseAddress!, count: count) }
        try writeOut(outfile, Data("survived\n".utf8))
    case "hang":
        while true { sleep(1000) }
    case "wait":
        try group.barrier()
        try writeOut(outfile, Data("passed\n".utf8))
    default:
        throw CollectiveError.invalidArgument("unknown scenario \(scenario)")
    }
} catch {
    let text = "ERROR \(error)\n"
    try? writeOut(outfile, Data(text.utf8))
    FileHandle.standardError.write(Data(text.utf8))
    exit(1)
}
