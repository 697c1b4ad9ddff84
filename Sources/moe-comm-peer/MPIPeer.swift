// The MPI side of the collectives test peer: started by MoEMPITests under `mpirun`.
//
//   moe-comm-peer mpi-world <outfile>
//   moe-comm-peer mpi-collectives <outfile> [count]
//   moe-comm-peer mpi-die <outfile>
//   moe-comm-peer mpi-abort <outfile>
//
// mpi-world: whether MPI launched this process (from the environment, before any MPI call); if
// so, initialises the world, splits it into {even, odd} ranks (key: minus the world rank, so the
// order is reversed), and writes one line per process to `<outfile>.<world rank>`:
//   "world <rank> <size> <thread level> <launcher> <host> split <rank> <size> dup <rank> <size>"
// and, when not launched by MPI, writes "not launched" to `<outfile>` and never calls MPI.
//
// mpi-collectives: every collective (CollectiveScenarios) through MPICommunicator on three groups
// (the world; {even, odd} ranks; the world in reversed rank order by split key), each compared
// byte for byte with the same scenarios through SharedMemoryGroup ranks of the group's size
// (threads of this process). Then the errors every rank must see alike. Writes to
// `<outfile>.<world rank>` one line per scenario, "<group> <scenario> same|DIFFERENT …", the
// allreduce lines with "serial ok" when the sums are the serial rank-order sums bit for bit,
// then "error <case>: <message>" lines, then rank 0's "serve …" line (mpiServeCase).
//
// mpi-die: one all-reduce, then the last rank exits abruptly (status 3) while the others enter
// the next one; a survivor that comes back writes "survived" (it should not: mpirun ends the job).
// mpi-abort: the same, but rank 0 calls MPIWorld.abort(code: 5) while the others wait in a barrier.
// On failure: "ERROR <description>" to the file and stderr, exit 1.
import Foundation
import MoEComm
import MoEMPI

func mpiPeerFail(_ path: String, _ error: Error) -> Never {
    let text = "ERROR \(error)\n"
    try? Data(text.utf8).write(to: URL(fileURLWithPath: path))
    FileHandle.standardError.write(Data(text.utf8))
    exit(1)
}

func runMPIPeer(_ args: [String]) -> Never {
    guard args.count >= 3 else {
        FileHandle.standardError.write("usage: moe-comm-peer mpi-world <outfile>\n".data(using: .utf8)!)
        exit(2)
    }
    let scenario = args[1], outfile = args[2]
    guard MPIWorld.isLaunchedByMPI() else {
        try? Data("not launched\n".utf8).write(to: URL(fileURLWithPath: outfile))
        exit(0)
    }
    let mine = outfile + ".\(MPILaunchEnvironment.detect()?.rank ?? -1)"
    do {
        let world = try MPIWorld.initialize()
        let path = outfile + ".\(world.rank)"
        switch scenario {
        case "mpi-world":
            guard let half = try world.split(color: world.rank % 2, key: -world.rank) else {
                throw MPIError.call(function: "split", message: "no group for color \(world.rank % 2)")
            }
            let copy = try world.group.duplicate()
            try copy.barrier()
            let none = try world.split(color: nil, key: 0)
            let line = "world \(world.rank) \(world.size) \(world.threadLevel) \(world.launch.launcher) \(world.processorName) split \(half.rank) \(half.size) dup \(copy.rank) \(copy.size) undefined \(none == nil ? "nil" : "group")\n"
            half.free()
            copy.free()
            try Data(line.utf8).write(to: URL(fileURLWithPath: path))
        case "mpi-collectives":
            let count = args.count > 3 ? Int(args[3]) ?? 20_000 : 20_000
            var report = ""
            let groups: [(String, MPIGroup?)] = [
                ("world", world.group),
                ("half", try world.split(color: world.rank % 2, key: world.rank)),
                ("reversed", try world.split(color: 0, key: -world.rank)),
            ]
            for (salt, (name, group)) in groups.enumerated() {
                guard let group else { throw CollectiveError.invalidArgument("split \(name) gave no group") }
                let comm = try MPICommunicator(group: group)
                let mpi = try CollectiveScenarios.run(comm, salt: salt, count: count)
                let shm = try CollectiveScenarios.sharedMemoryReference(world: group.size, salt: salt, count: count)[group.rank]
                for ((scenario, a), (_, b)) in zip(mpi, shm) {
                    let serial = a.suffix(10) == Data(" serial ok".utf8) ? " serial ok" : ""
                    report += "\(name) \(scenario) \(a == b ? "same" : "DIFFERENT") \(a.count) \(b.count)\(serial)\n"
                }
                let s = comm.statistics
                report += "\(name) size \(group.size) rank \(group.rank) stats \(s.calls) \(s.bytesSent) \(s.bytesReceived)\n"
            }
            report += try mpiErrorCases(try MPICommunicator(group: world.group))
            report += try mpiServeCase(try MPICommunicator(group: world.group.duplicate()))
            try Data(report.utf8).write(to: URL(fileURLWithPath: path))
        case "mpi-die", "mpi-abort":
            let comm = try MPICommunicator(group: world.group)
            var x = [Float](repeating: 1, count: 100_000)
            try x.withUnsafeMutableBufferPointer { try comm.allReduceSum($0.baseAddress!, count: $0.count) }
            if scenario == "mpi-die", world.rank == world.size - 1 { _exit(3) }
            if scenario == "mpi-abort", world.rank == 0 { world.abort(code: 5) }
            if scenario == "mpi-abort" { try comm.barrier() }
            try x.withUnsafeMutableBufferPointer { try comm.allReduceSum($0.baseAddress!, count: $0.count) }
            try Data("survived\n".utf8).write(to: URL(fileURLWithPath: path))
        default:
            throw CollectiveError.invalidArgument("unknown MPI scenario \(scenario)")
        }
        world.finalize()
        exit(0)
    } catch {
        mpiPeerFail(mine, error)
    }
}

/// The errors of MPICommunicator that every rank sees alike, one line each, and that the group
/// stays usable after (a barrier follows each).
func mpiErrorCases(_ comm: MPICommunicator) throws -> String {
    let r = comm.rank, n = comm.worldSize
    var lines = ""
    func record(_ name: String, _ body: () throws -> Void) throws {
        do { try body(); lines += "error \(name): none\n" } catch { lines += "error \(name): \(error)\n" }
        try comm.barrier()
    }
    // The last rank has room for one float less than it receives (one float from every rank).
    try record("alltoallv-room") {
        let send = [Float](repeating: Float(r), count: n)
        var receive = [Float](repeating: 0, count: n)
        try send.withUnsafeBufferPointer { s in
            try receive.withUnsafeMutableBufferPointer { b in
                _ = try comm.allToAllV(send: s.baseAddress!, sendCounts: Array(repeating: 1, count: n),
                                       receive: b.baseAddress!, receiveCapacity: r == n - 1 ? n - 1 : n)
            }
        }
    }
    // Rank 0 sends 100 bytes then 5 to rank 1, which offers 10 bytes for each.
    try record("long-message") {
        if r == 0 {
            try [UInt8](repeating: 1, count: 100).withUnsafeBytes { try comm.send($0, to: 1) }
            try [UInt8](repeating: 2, count: 5).withUnsafeBytes { try comm.send($0, to: 1) }
        } else if r == 1 {
            var buffer = [UInt8](repeating: 0, count: 10)
            defer {
                let m = try? buffer.withUnsafeMutableBytes { try comm.receive(into: $0, from: 0) }
                lines += "error long-message-next: \(m.map { "\($0) bytes \(buffer[0..<$0].map(String.init).joined(separator: ","))" } ?? "failed")\n"
            }
            _ = try buffer.withUnsafeMutableBytes { try comm.receive(into: $0, from: 0) }
        }
    }
    try record("receive-from-self") {
        var buffer = [UInt8](repeating: 0, count: 4)
        _ = try buffer.withUnsafeMutableBytes { try comm.receive(into: $0, from: r) }
    }
    try record("broadcast-root") {
        var x: UInt8 = 0
        try comm.broadcast(&x, bytes: 1, root: n)
    }
    try record("send-rank") { try [UInt8]([1]).withUnsafeBytes { try comm.send($0, to: -1) } }
    return lines
}

/// A serving rank: every other rank sends "hello <rank>" to rank 0, which also sends one to
/// itself; rank 0 waits with pendingMessageSource (never blocking) until something is there,
/// then takes all N messages with receiveFromAny. Rank 0 writes "serve <first pending source>
/// <source:text,…>" sorted by source (arrival order between ranks is not defined).
func mpiServeCase(_ comm: MPICommunicator) throws -> String {
    let r = comm.rank, n = comm.worldSize
    let hello = [UInt8]("hello \(r)".utf8)
    if r != 0 {
        try hello.withUnsafeBytes { try comm.send($0, to: 0) }
        try comm.barrier()
        return ""
    }
    var firstPending: Int?
    while firstPending == nil { firstPending = try comm.pendingMessageSource(); if firstPending == nil { usleep(100) } }
    try hello.withUnsafeBytes { try comm.send($0, to: 0) }
    guard try comm.pendingMessageSource() == 0 else { throw CollectiveError.invalidArgument("own message not pending first") }
    var got: [(Int, String)] = []
    var buffer = [UInt8](repeating: 0, count: 64)
    for _ in 0..<n {
        let (source, length) = try buffer.withUnsafeMutableBytes { try comm.receiveFromAny(into: $0) }
        got.append((source, String(decoding: buffer[0..<length], as: UTF8.self)))
    }
    try comm.barrier()
    let pending = try comm.pendingMessageSource()
    let listed = got.sorted { $0.0 < $1.0 }.map { "\($0.0):\($0.1)" }.joined(separator: ",")
    return "serve \(firstPending! == 0 ? "self" : "peer") \(listed) then \(pending.map(String.init) ?? "none")\n"
}
