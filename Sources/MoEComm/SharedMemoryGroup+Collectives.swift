import CShm
import Foundation

/// The collectives over slots. Invariant between collectives: a rank writes only its own slot
/// before a collective's first barrier, and every read of another rank's slot ends before the
/// collective's last barrier; the result area is written only after a first barrier (its last
/// reads, allReduce's copy-out, may still be running when the next collective starts).
extension SharedMemoryGroup {
    /// Element-wise sum over all ranks, in place: each chunk (up to `slotBytes`) is copied into
    /// this rank's slot; barrier; rank r reduces the r-th part of the chunk (parts of about
    /// chunk/N elements, 64-byte aligned) over slots 0, 1, …, N−1 in that order into the result
    /// area; barrier; every rank copies the result out. Float additions in rank order: bitwise
    /// `((b₀ + b₁) + b₂) + …` on every rank and every run.
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try beginCollective()
        guard count >= 0 else { throw CollectiveError.invalidArgument("allReduceSum: negative count \(count)") }
        try failing { try reduceInRankOrder(buffer, count: count, operation: "allReduceSum") }
    }

    /// The same in Float64 (additions in Double, in rank order).
    public func allReduceSum(_ values: inout [Double]) throws {
        try beginCollective()
        try failing {
            try values.withUnsafeMutableBufferPointer { v in
                guard let p = v.baseAddress else { return }
                try reduceInRankOrder(p, count: v.count, operation: "allReduceSum(Double)")
            }
        }
    }

    func reduceInRankOrder<T: BinaryFloatingPoint>(_ buffer: UnsafeMutablePointer<T>, count: Int, operation: String) throws {
        let n = worldSize
        guard n > 1, count > 0 else { return }
        let size = MemoryLayout<T>.stride
        let chunk = layout.slotBytes / size
        let alignment = max(1, 64 / size)
        var done = 0
        while done < count {
            let c = min(chunk, count - done)
            var t = Self.now()
            slot(rank).copyMemory(from: buffer + done, byteCount: c * size)
            statistics.communicationSeconds += Self.now() - t
            statistics.bytesSent += c * size
            try barrierWait(operation)

            t = Self.now()
            let lo = Self.partBoundary(rank, of: n, count: c, alignment: alignment)
            let hi = Self.partBoundary(rank + 1, of: n, count: c, alignment: alignment)
            if hi > lo {
                let out = resultArea.assumingMemoryBound(to: T.self) + lo
                let s0 = UnsafePointer(slot(0).assumingMemoryBound(to: T.self) + lo)
                let s1 = UnsafePointer(slot(1).assumingMemoryBound(to: T.self) + lo)
                Self.add(s0, s1, into: out, count: hi - lo)
                for r in 2..<max(2, n) {
                    Self.add(UnsafePointer(out), UnsafePointer(slot(r).assumingMemoryBound(to: T.self) + lo), into: out, count: hi - lo)
                }
                statistics.bytesReceived += (n - 1) * (hi - lo) * size
            }
            statistics.communicationSeconds += Self.now() - t
            try barrierWait(operation)

            t = Self.now()
            (buffer + done).update(from: resultArea.assumingMemoryBound(to: T.self), count: c)
            statistics.communicationSeconds += Self.now() - t
            statistics.bytesReceived += (c - (hi - lo)) * size
            done += c
        }
    }

    /// `out[i] = a[i] + b[i]` (`out` may be `a`).
    @inline(__always)
    static func add<T: BinaryFloatingPoint>(_ a: UnsafePointer<T>, _ b: UnsafePointer<T>, into out: UnsafeMutablePointer<T>, count: Int) {
        for i in 0..<count { out[i] = a[i] + b[i] }
    }

    /// The start of part `part` when `count` elements are split over `n` ranks (boundaries on
    /// multiples of `alignment` elements, the last part ends at `count`).
    static func partBoundary(_ part: Int, of n: Int, count: Int, alignment: Int) -> Int {
        if part >= n { return count }
        let raw = count * part / n
        return min(count, (raw + alignment - 1) / alignment * alignment)
    }

    /// Root writes a chunk into its slot; barrier; the others copy it; barrier (before the root
    /// reuses its slot).
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {
        try beginCollective()
        try CollectiveArguments.checkBroadcast(root: root, bytes: bytes, worldSize: worldSize)
        guard worldSize > 1 else { return }
        try failing {
            var done = 0
            while done < bytes {
                let c = min(layout.slotBytes, bytes - done)
                let t = Self.now()
                if rank == root {
                    slot(root).copyMemory(from: buffer + done, byteCount: c)
                    statistics.bytesSent += c
                }
                statistics.communicationSeconds += Self.now() - t
                try barrierWait("broadcast")
                let t2 = Self.now()
                if rank != root {
                    (buffer + done).copyMemory(from: slot(root), byteCount: c)
                    statistics.bytesReceived += c
                }
                statistics.communicationSeconds += Self.now() - t2
                try barrierWait("broadcast")
                done += c
            }
        }
    }
}
