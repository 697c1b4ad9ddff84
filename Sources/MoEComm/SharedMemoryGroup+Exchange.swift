import CShm
import Foundation

/// allToAllV and allGatherV: each rank writes a small table and its data into its own slot,
/// barrier, every rank reads what it needs from every source in rank order, barrier (before the
/// slots are reused). Data larger than a slot goes in rounds: round k carries bytes
/// [k·capacity, (k+1)·capacity) of each rank's data; the number of rounds (the largest rank's)
/// is known to every rank from the tables after the first barrier.
extension SharedMemoryGroup {
    /// Bytes at the start of a slot taken by allToAllV's table of N send counts (UInt64).
    var countTableBytes: Int { (worldSize * 8 + 63) & ~63 }

    public func allToAllV(send: UnsafePointer<Float>, sendCounts: [Int],
                          receive: UnsafeMutablePointer<Float>, receiveCapacity: Int) throws -> [Int] {
        try beginCollective()
        try CollectiveArguments.checkAllToAllV(sendCounts: sendCounts, worldSize: worldSize)
        if worldSize == 1 {
            return try CollectiveArguments.allToAllVAlone(send: send, count: sendCounts[0], receive: receive, receiveCapacity: receiveCapacity)
        }
        return try failing { try exchangeFloats(send: send, sendCounts: sendCounts, receive: receive, receiveCapacity: receiveCapacity) }
    }

    private func exchangeFloats(send: UnsafePointer<Float>, sendCounts: [Int],
                                receive: UnsafeMutablePointer<Float>, receiveCapacity: Int) throws -> [Int] {
        let n = worldSize
        let table = countTableBytes
        let capacity = (layout.slotBytes - table) / 4 // floats per round
        let myTotal = sendCounts.reduce(0, +)
        var t = Self.now()
        let mine = slot(rank)
        for d in 0..<n { mine.storeBytes(of: UInt64(sendCounts[d]), toByteOffset: 8 * d, as: UInt64.self) }
        (mine + table).copyMemory(from: send, byteCount: min(capacity, myTotal) * 4)
        statistics.bytesSent += min(capacity, myTotal) * 4
        statistics.communicationSeconds += Self.now() - t
        try barrierWait("allToAllV")

        // Every rank's counts: where my segment lies in each source's data, and where it goes.
        var totals = [Int](repeating: 0, count: n)
        var segmentStart = [Int](repeating: 0, count: n)   // in source s's send buffer
        var received = [Int](repeating: 0, count: n)       // floats from source s
        for s in 0..<n {
            let counts = slot(s)
            for d in 0..<n {
                let c = Int(counts.load(fromByteOffset: 8 * d, as: UInt64.self))
                if d < rank { segmentStart[s] += c }
                if d == rank { received[s] = c }
                totals[s] += c
            }
        }
        let receiveTotal = received.reduce(0, +)
        guard receiveTotal <= receiveCapacity else {
            throw CollectiveError.invalidArgument("allToAllV: receiving \(receiveTotal) floats into room for \(receiveCapacity)")
        }
        var destination = [Int](repeating: 0, count: n)    // offset in `receive` of source s
        for s in 1..<n { destination[s] = destination[s - 1] + received[s - 1] }
        let rounds = max(1, totals.map { ($0 + capacity - 1) / capacity }.max() ?? 1)

        for round in 0..<rounds {
            let roundStart = round * capacity
            if round > 0 {
                t = Self.now()
                let c = max(0, min(capacity, myTotal - roundStart))
                (mine + table).copyMemory(from: send + roundStart, byteCount: c * 4)
                statistics.bytesSent += c * 4
                statistics.communicationSeconds += Self.now() - t
                try barrierWait("allToAllV")
            }
            t = Self.now()
            for s in 0..<n {
                // My segment of source s, intersected with the part of its data in this round.
                let lo = max(segmentStart[s], roundStart)
                let hi = min(segmentStart[s] + received[s], roundStart + capacity, totals[s])
                guard hi > lo else { continue }
                let target = receive + destination[s] + (lo - segmentStart[s])
                if s == rank {
                    target.update(from: send + lo, count: hi - lo)
                } else {
                    let source = (slot(s) + table).assumingMemoryBound(to: Float.self) + (lo - roundStart)
                    target.update(from: source, count: hi - lo)
                    statistics.bytesReceived += (hi - lo) * 4
                }
            }
            statistics.communicationSeconds += Self.now() - t
            try barrierWait("allToAllV")
        }
        return received
    }

    /// Every rank's bytes, visited in rank order. With one round (every rank's bytes fit its
    /// slot after a 64-byte length) `visit` reads the slots in place; otherwise the bytes are
    /// gathered round by round into local copies first. An error thrown by `visit` aborts the
    /// group (the others stop with `.aborted(byRank:)`) and is rethrown.
    public func allGatherV(_ bytes: UnsafeRawBufferPointer, visit: (_ rank: Int, _ bytes: UnsafeRawBufferPointer) throws -> Void) throws {
        try beginCollective()
        if worldSize == 1 { return try visit(0, bytes) }
        try failing { try gatherBytes(bytes, visit: visit) }
    }

    private func gatherBytes(_ bytes: UnsafeRawBufferPointer, visit: (Int, UnsafeRawBufferPointer) throws -> Void) throws {
        let n = worldSize
        let header = 64
        let capacity = layout.slotBytes - header
        let mine = slot(rank)
        var t = Self.now()
        mine.storeBytes(of: UInt64(bytes.count), as: UInt64.self)
        let first = min(capacity, bytes.count)
        if first > 0, let b = bytes.baseAddress { (mine + header).copyMemory(from: b, byteCount: first) }
        statistics.bytesSent += first
        statistics.communicationSeconds += Self.now() - t
        try barrierWait("allGatherV")

        let totals = (0..<n).map { Int(slot($0).load(as: UInt64.self)) }
        let rounds = max(1, totals.map { ($0 + capacity - 1) / capacity }.max() ?? 1)
        if rounds == 1 {
            for s in 0..<n {
                if s == rank {
                    try visit(s, bytes)
                } else {
                    statistics.bytesReceived += totals[s]
                    try visit(s, UnsafeRawBufferPointer(start: slot(s) + header, count: totals[s]))
                }
            }
            try barrierWait("allGatherV")
            return
        }
        var copies = totals.map { [UInt8](repeating: 0, count: $0) }
        for round in 0..<rounds {
            let roundStart = round * capacity
            if round > 0 {
                t = Self.now()
                let c = max(0, min(capacity, bytes.count - roundStart))
                if c > 0, let b = bytes.baseAddress { (mine + header).copyMemory(from: b + roundStart, byteCount: c) }
                statistics.bytesSent += c
                statistics.communicationSeconds += Self.now() - t
                try barrierWait("allGatherV")
            }
            t = Self.now()
            for s in 0..<n where s != rank {
                let c = max(0, min(capacity, totals[s] - roundStart))
                guard c > 0 else { continue }
                copies[s].withUnsafeMutableBytes { dst in
                    (dst.baseAddress! + roundStart).copyMemory(from: slot(s) + header, byteCount: c)
                }
                statistics.bytesReceived += c
            }
            statistics.communicationSeconds += Self.now() - t
            try barrierWait("allGatherV")
        }
        for s in 0..<n {
            if s == rank { try visit(s, bytes) } else { try copies[s].withUnsafeBytes { try visit(s, $0) } }
        }
    }
}
