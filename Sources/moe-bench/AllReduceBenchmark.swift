import CMPI
import Foundation
import MoEComm
import MoEMPI

/// All-reduce latency and bandwidth over three paths (issue 14 item 6), 2 ranks, 4 KiB … 64 MiB
/// (and allToAllV and send/receive the same way, for the α–β models of docs/scaling.md)
/// of floats: our shm backend (`SharedMemoryGroup`, two ranks as threads of this process on one
/// memfd with the runtime's 8 MiB slots), and `MPICommunicator` (rank-order sums) under
/// `mpirun -np 2` with Open MPI's shared-memory transport (`--mca btl vader,self`) and with TCP
/// on loopback (`--mca btl tcp,self`). Under MPI, Open MPI's own MPI_Allreduce (order
/// unspecified, so not bit-reproducible, never used by moe-run) is timed too, as the yardstick.
///
/// Per size: 2 warm-up calls, then 5 trials of back-to-back calls (as many as fill about 50 ms by
/// the warm-up's pace, 1 … 200), a barrier before each trial; each call is timed on rank 0 and the median over all trials is
/// t(n) (the median, not the mean: on a busy machine a rank that loses its core stalls a few calls
/// by a whole time slice). Bandwidth
/// is the algorithm bandwidth n / t (for 2 ranks it equals the bus bandwidth 2(N−1)/N · n / t).
/// The α–β model t(n) = α + β·n is fitted by least squares on the relative error
/// (Σ ((t − α − βn) / t)², so small and large sizes weigh alike), with α ≥ 0.
extension Bench {
    static let allReduceSizes = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]

    /// Seconds per call of `operation(buffer, floats)` for each size (bytes of floats), on rank 0;
    /// every rank must call it.
    static func sweep(_ comm: Communicator, barrier: () throws -> Void,
                      _ allReduce: (UnsafeMutablePointer<Float>, Int) throws -> Void) throws -> [Double] {
        let largest = allReduceSizes.max()! / 4
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: largest)
        defer { buffer.deallocate() }
        for i in 0..<largest { buffer[i] = Float(i % 1000) * 1e-3 }
        var times: [Double] = []
        for bytes in allReduceSizes {
            let count = bytes / 4
            let w0 = now()
            for _ in 0..<2 { try allReduce(buffer, count) }
            // Rank 0 decides how many calls per trial (about 50 ms, 1 … 200) and tells the others
            // once, so every rank makes the same calls and nothing else runs inside a trial.
            var calls = Int64(max(1, min(200, 0.05 / max(1e-7, (now() - w0) / 2))))
            try comm.broadcast(&calls, bytes: 8, root: 0)
            var each: [Double] = []
            for _ in 0..<5 {
                try barrier()
                for _ in 0..<calls {
                    let t0 = now()
                    try allReduce(buffer, count)
                    each.append(now() - t0)
                }
            }
            each.sort()
            let best = each[each.count / 2]
            times.append(best)
        }
        return times
    }

    /// The three operations of any backend between 2 ranks: "allreduce" (allReduceSum of n
    /// bytes), "alltoallv" (n bytes per rank, half to each rank) and "sendrecv" (one way of a
    /// ping-pong of n bytes: half the round trip).
    static func backendSweeps(_ comm: Communicator) throws -> [String: [Double]] {
        let other = UnsafeMutablePointer<Float>.allocate(capacity: allReduceSizes.max()! / 4)
        defer { other.deallocate() }
        let allreduce = try sweep(comm, barrier: comm.barrier) { try comm.allReduceSum($0, count: $1) }
        let alltoallv = try sweep(comm, barrier: comm.barrier) { buffer, count in
            _ = try comm.allToAllV(send: buffer, sendCounts: [count / 2, count - count / 2], receive: other, receiveCapacity: count)
        }
        let pingPong = try sweep(comm, barrier: comm.barrier) { buffer, count in
            let bytes = UnsafeMutableRawBufferPointer(start: buffer, count: 4 * count)
            if comm.rank == 0 {
                try comm.send(UnsafeRawBufferPointer(bytes), to: 1)
                _ = try comm.receive(into: bytes, from: 1)
            } else {
                _ = try comm.receive(into: bytes, from: 0)
                try comm.send(UnsafeRawBufferPointer(bytes), to: 0)
            }
        }
        return ["allreduce": allreduce, "alltoallv": alltoallv, "sendrecv": pingPong.map { $0 / 2 }]
    }

    /// The shm backend: two SharedMemoryGroup ranks as threads of this process.
    static func sharedMemorySweeps() -> [String: [Double]]? {
        guard let segment = try? SharedMemorySegment(worldSize: 2, name: "moe-bench-allreduce") else { return nil }
        final class Results: @unchecked Sendable { let lock = NSLock(); var times: [[String: [Double]]?] = [nil, nil] }
        let results = Results()
        let done = DispatchGroup()
        for r in 0..<2 {
            done.enter()
            Thread {
                defer { done.leave() }
                guard let g = try? SharedMemoryGroup(descriptor: segment.descriptor, rank: r, worldSize: 2, timeout: 60) else {
                    segment.abort(); return
                }
                let t = try? backendSweeps(g)
                if t == nil { segment.abort() }
                results.lock.lock(); results.times[r] = t; results.lock.unlock()
            }.start()
        }
        done.wait()
        return results.times[0]
    }

    /// `moe-bench --comm-child` under mpirun: this rank's part; rank 0 prints the JSON of
    /// `backendSweeps` plus "native" (MPI_Allreduce).
    static func mpiAllReduceChild() throws {
        let world = try MPIWorld.initialize()
        let comm = try MPICommunicator(group: world.group)
        var result: [String: Any] = try backendSweeps(comm)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: allReduceSizes.max()! / 4)
        defer { scratch.deallocate() }
        result["native"] = try sweep(comm, barrier: comm.barrier) { buffer, count in
            guard MPI_Allreduce(buffer, scratch, Int32(count), moe_MPI_FLOAT(), moe_MPI_SUM(), world.group.comm) == MPI_SUCCESS else {
                throw CollectiveError.transport(operation: "MPI_Allreduce", message: "failed")
            }
        }
        if world.rank == 0 {
            let data = try JSONSerialization.data(withJSONObject: result)
            print(String(decoding: data, as: UTF8.self))
        }
        world.finalize()
    }

    /// Runs this binary's `--comm-child` under `mpirun -np 2 --mca btl BTL`: its sweeps by name.
    static func mpiSweeps(btl: String) -> [String: [Double]]? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":").map { "\($0)/mpirun" }
        guard let mpirun = path.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: mpirun)
        p.arguments = ["--oversubscribe", "--allow-run-as-root", "-np", "2", "--mca", "btl", btl, "--mca", "pml", "ob1",
                       "--bind-to", "none", CommandLine.arguments[0], "--comm-child"]
        p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") }
            .merging(["OPENBLAS_NUM_THREADS": "1"]) { $1 }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.standardError
        guard (try? p.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0,
              let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last(where: { $0.hasPrefix("{") }),
              let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: [Double]] else { return nil }
        return obj
    }

    /// α (s) and β (s/byte) of t = α + β·n, least squares on the relative error (α ≥ 0).
    static func alphaBetaFit(bytes: [Int], seconds: [Double]) -> (alpha: Double, beta: Double, maxRelativeError: Double) {
        // Minimise Σ w (α + β n − t)² with w = 1/t²: the 2×2 normal equations.
        var s00 = 0.0, s01 = 0.0, s11 = 0.0, r0 = 0.0, r1 = 0.0
        for (n, t) in zip(bytes.map(Double.init), seconds) {
            let w = 1 / (t * t)
            s00 += w; s01 += w * n; s11 += w * n * n; r0 += w * t; r1 += w * t * n
        }
        let det = s00 * s11 - s01 * s01
        var alpha = (r0 * s11 - r1 * s01) / det, beta = (s00 * r1 - s01 * r0) / det
        if alpha < 0 { alpha = 0; beta = r1 / s11 }   // a latency is not negative: the best line through 0
        let worst = zip(bytes.map(Double.init), seconds).map { abs(alpha + beta * $0 - $1) / $1 }.max() ?? 0
        return (alpha, beta, worst)
    }

    /// The "## Collectives" section: the table and the α–β fits.
    static func allReduceSection() -> [String] {
        let shm = sharedMemorySweeps()
        let vader = mpiSweeps(btl: "vader,self")
        let tcp = mpiSweeps(btl: "tcp,self")
        let paths: [(String, [Double]?)] = [
            ("moe-run shm backend", shm?["allreduce"]),
            ("MPICommunicator, Open MPI vader", vader?["allreduce"]), ("MPICommunicator, Open MPI TCP loopback", tcp?["allreduce"]),
            ("MPI_Allreduce, vader (not reproducible)", vader?["native"]), ("MPI_Allreduce, TCP (not reproducible)", tcp?["native"]),
        ]
        let backends: [(String, [String: [Double]]?)] = [("shm", shm), ("MPI vader", vader), ("MPI TCP", tcp)]
        var others: [(String, [Double]?)] = []
        for (operation, label) in [("alltoallv", "allToAllV"), ("sendrecv", "send/receive (one way)")] {
            for (backend, sweeps) in backends { others.append(("\(label), \(backend)", sweeps?[operation])) }
        }
        func size(_ b: Int) -> String { b >= 1 << 20 ? "\(b >> 20) MiB" : "\(b >> 10) KiB" }
        /// A table row: µs per call (GB/s) per size, or dashes when not measured.
        func timeRow(_ name: String, _ times: [Double]?) -> String {
            guard let times else { return "| \(name) | " + allReduceSizes.map { _ in "–" }.joined(separator: " | ") + " |" }
            return "| \(name) | " + zip(allReduceSizes, times).map { String(format: "%.0f (%.2f)", $1 * 1e6, Double($0) / $1 / 1e9) }.joined(separator: " | ") + " |"
        }
        var lines = ["## Collectives", "",
                     "All-reduce (sum of floats) between 2 ranks on this machine, measured by `moe-bench --comm-only` on \(ISO8601DateFormatter().string(from: Date())) (Open MPI \(openMPIVersion())). Time per call in µs, and in parentheses the bandwidth n / t in GB/s. The first three rows give bit-identical sums (rank order, issue 14); Open MPI's own MPI_Allreduce adds in an order of its choosing and is shown only as the yardstick. shm: two ranks as threads on one memfd, 8 MiB slots (the runtime's); MPI: `mpirun -np 2 --mca pml ob1 --mca btl vader,self` or `tcp,self`, reduce-scatter by MPI_Alltoallv + MPI_Allgatherv (one MPI_Allgather up to 64 KiB in all). Median call of 5 trials of back-to-back calls (up to 1000 calls per size). Load average when measured: \(loadAverage()) (on a busy machine the MPI ranks, which poll, lose most).", "",
                     "| path | " + allReduceSizes.map(size).joined(separator: " | ") + " |",
                     "|---|" + String(repeating: "---:|", count: allReduceSizes.count)]
        lines += paths.map(timeRow)
        lines += ["", "The other collectives of the training strategies, same method: allToAllV (expert parallelism: n bytes per rank, half to each rank) and send/receive (pipeline parallelism: one way of a ping-pong of n bytes, half the round trip).", "",
                  "| operation, path | " + allReduceSizes.map(size).joined(separator: " | ") + " |",
                  "|---|" + String(repeating: "---:|", count: allReduceSizes.count)]
        lines += others.map(timeRow)
        lines += ["", "α–β fits t(n) = α + β·n (least squares on the relative error; docs/scaling.md uses them):", "",
                  "| operation, path | α (µs) | β (ns/byte) | 1/β (GB/s) | worst fit error |", "|---|---:|---:|---:|---:|"]
        var worstFit = 0.0
        for (name, times) in paths.map({ ("all-reduce, " + $0.0, $0.1) }) + others {
            guard let times else { lines.append("| \(name) | – | – | – | not measured |"); continue }
            let f = alphaBetaFit(bytes: allReduceSizes, seconds: times)
            worstFit = max(worstFit, f.maxRelativeError)
            lines.append(String(format: "| %@ | %.1f | %.4f | %.2f | %.0f%% |", name as NSString, f.alpha * 1e6, f.beta * 1e9, 1 / f.beta / 1e9, f.maxRelativeError * 100))
        }
        if worstFit > 0.3 {
            lines += ["", String(format: "A fit misses a measured size by %.0f%%: a straight line does not describe these times. On a busy machine (load average %@ on %d cores here) a call that outlasts a scheduler time slice waits for its peer's next slice, which mostly hits the large sizes and the polling MPI ranks; rerun `make bench-comm` on a quiet machine before using the fits.", worstFit * 100, loadAverage() as NSString, ProcessInfo.processInfo.activeProcessorCount)]
        }
        // The data-parallel step under each path follows: stepCommunicationLines (StepCommBenchmark.swift).
        if vader == nil || tcp == nil { lines += ["", "MPI paths not measured: mpirun missing or failed (`make setup` installs openmpi-bin)."] }
        return lines
    }

    static func openMPIVersion() -> String {
        var buffer = [CChar](repeating: 0, count: 512)
        var length: Int32 = 0
        guard MPI_Get_library_version(&buffer, &length) == MPI_SUCCESS else { return "?" }
        let text = String(cString: buffer)
        return text.split(separator: ",").first.map { $0.replacingOccurrences(of: "Open MPI ", with: "").trimmingCharacters(in: .whitespaces) } ?? text
    }
}
