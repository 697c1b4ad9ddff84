import CMPI
import Foundation
import MoEComm

/// The rank-order sums (see `MPICommunicator`): bit for bit those of `SharedMemoryGroup`.
extension MPICommunicator {
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try beginCollective()
        guard count >= 0 else { throw CollectiveError.invalidArgument("allReduceSum: negative count \(count)") }
        try reduceInRankOrder(buffer, count: count, type: moe_MPI_FLOAT())
    }

    public func allReduceSum(_ values: inout [Double]) throws {
        try beginCollective()
        try values.withUnsafeMutableBufferPointer { v in
            guard let p = v.baseAddress else { return }
            try reduceInRankOrder(p, count: v.count, type: moe_MPI_DOUBLE())
        }
    }

    func reduceInRankOrder<T: BinaryFloatingPoint>(_ buffer: UnsafeMutablePointer<T>, count: Int, type: MPI_Datatype) throws {
        let n = worldSize
        guard n > 1, count > 0 else { return }
        let size = MemoryLayout<T>.stride
        if count * n * size <= gatherBytes {
            try gatherAndSum(buffer, count: count, type: type)
            return
        }
        var done = 0
        while done < count {
            let c = min(max(1, min(roundElements, 1 << 30)), count - done)
            try reduceScatterGather(buffer + done, count: c, type: type)
            done += c
        }
    }

    /// One MPI_Allgather of every rank's whole vector into scratch (rank s at s·count), then
    /// `buffer ← ((b₀ + b₁) + b₂) + …`.
    private func gatherAndSum<T: BinaryFloatingPoint>(_ buffer: UnsafeMutablePointer<T>, count: Int, type: MPI_Datatype) throws {
        let n = worldSize, size = MemoryLayout<T>.stride
        let t = Self.now()
        let all = scratchSpace(n * count * size).bindMemory(to: T.self, capacity: n * count)
        try check(MPI_Allgather(buffer, Int32(count), type, all, Int32(count), type, group.comm), "MPI_Allgather")
        Self.sumInRankOrder(UnsafePointer(all), stride: count, ranks: n, count: count, into: buffer)
        statistics.communicationSeconds += Self.now() - t
        statistics.bytesSent += (n - 1) * count * size
        statistics.bytesReceived += (n - 1) * count * size
    }

    /// Reduce-scatter by MPI_Alltoallv (rank r gets part r of every rank's vector, stacked in
    /// rank order in scratch), the rank-order sum of part r, then MPI_Allgatherv in place.
    private func reduceScatterGather<T: BinaryFloatingPoint>(_ buffer: UnsafeMutablePointer<T>, count: Int, type: MPI_Datatype) throws {
        let n = worldSize, size = MemoryLayout<T>.stride
        let t = Self.now()
        var starts = [Int32](repeating: 0, count: n)
        var parts = [Int32](repeating: 0, count: n)
        for r in 0..<n {
            let lo = count * r / n, hi = count * (r + 1) / n
            starts[r] = Int32(lo)
            parts[r] = Int32(hi - lo)
        }
        let mine = Int(parts[rank]), lo = Int(starts[rank])
        let stacked = scratchSpace(max(1, n * mine) * size).bindMemory(to: T.self, capacity: max(1, n * mine))
        var receiveCounts = [Int32](repeating: Int32(mine), count: n)
        var receiveStarts = (0..<n).map { Int32($0 * mine) }
        try check(MPI_Alltoallv(buffer, &parts, &starts, type, stacked, &receiveCounts, &receiveStarts, type, group.comm),
                  "MPI_Alltoallv (reduce-scatter)")
        if mine > 0 {
            Self.sumInRankOrder(UnsafePointer(stacked), stride: mine, ranks: n, count: mine, into: buffer + lo)
        }
        try check(MPI_Allgatherv(moe_MPI_IN_PLACE(), 0, type, buffer, &parts, &starts, type, group.comm),
                  "MPI_Allgatherv (all-gather)")
        statistics.communicationSeconds += Self.now() - t
        statistics.bytesSent += ((count - mine) + (n - 1) * mine) * size
        statistics.bytesReceived += ((n - 1) * mine + (count - mine)) * size
    }

    /// `out[i] = ((v₀[i] + v₁[i]) + v₂[i]) + …` for the `ranks` vectors `v_s = all + s·stride`
    /// (`out` must not overlap them).
    @inline(__always)
    static func sumInRankOrder<T: BinaryFloatingPoint>(_ all: UnsafePointer<T>, stride: Int, ranks: Int, count: Int, into out: UnsafeMutablePointer<T>) {
        add(all, all + stride, into: out, count: count)
        for s in 2..<max(2, ranks) { add(UnsafePointer(out), all + s * stride, into: out, count: count) }
    }

    /// `out[i] = a[i] + b[i]` (`out` may be `a`), as `SharedMemoryGroup.add`.
    @inline(__always)
    static func add<T: BinaryFloatingPoint>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, into out: UnsafeMutablePointer<T>, count: Int) {
        for i in 0..<count { out[i] = a[i] + b[i] }
    }
}
