import CMPI
import Foundation
import MoEComm

/// allToAllV, allGatherV and point-to-point messages over MPI.
extension MPICommunicator {
    /// One MPI_Allgather of every rank's send counts and receive room (so every rank can check
    /// every rank's room and all fail together), then MPI_Alltoallv of the floats.
    public func allToAllV(send: UnsafePointer<Float>, sendCounts: [Int],
                          receive: UnsafeMutablePointer<Float>, receiveCapacity: Int) throws -> [Int] {
        try beginCollective()
        let n = worldSize
        try CollectiveArguments.checkAllToAllV(sendCounts: sendCounts, worldSize: n)
        if n == 1 {
            return try CollectiveArguments.allToAllVAlone(send: send, count: sendCounts[0], receive: receive, receiveCapacity: receiveCapacity)
        }
        var t = Self.now()
        // Row s of the table: rank s's send counts to 0 … N−1, then its receive room.
        var mine = sendCounts.map(Int64.init) + [Int64(max(0, receiveCapacity))]
        var table = [Int64](repeating: 0, count: n * (n + 1))
        try check(MPI_Allgather(&mine, Int32(n + 1), moe_MPI_INT64_T(), &table, Int32(n + 1), moe_MPI_INT64_T(), group.comm),
                  "MPI_Allgather (allToAllV counts)")
        statistics.communicationSeconds += Self.now() - t
        for r in 0..<n {
            let incoming = (0..<n).reduce(Int64(0)) { $0 + table[$1 * (n + 1) + r] }
            let room = table[r * (n + 1) + n]
            let sent = table[(r * (n + 1))..<(r * (n + 1) + n)].reduce(0, +)
            let message: String?
            if incoming > room {
                message = "allToAllV: receiving \(incoming) floats into room for \(r == rank ? Int64(receiveCapacity) : room)"
            } else if incoming > Int64(Int32.max) || sent > Int64(Int32.max) {
                message = "allToAllV: \(max(incoming, sent)) floats exceed MPI's int count"
            } else {
                message = nil
            }
            if let message { throw r == rank ? CollectiveError.invalidArgument(message) : CollectiveError.aborted(byRank: r) }
        }
        var sendInt = sendCounts.map { Int32($0) }
        var receiveInt = (0..<n).map { Int32(table[$0 * (n + 1) + rank]) }
        var sendStarts = [Int32](repeating: 0, count: n), receiveStarts = [Int32](repeating: 0, count: n)
        for d in 1..<n {
            sendStarts[d] = sendStarts[d - 1] + sendInt[d - 1]
            receiveStarts[d] = receiveStarts[d - 1] + receiveInt[d - 1]
        }
        t = Self.now()
        try check(MPI_Alltoallv(send, &sendInt, &sendStarts, moe_MPI_FLOAT(), receive, &receiveInt, &receiveStarts, moe_MPI_FLOAT(), group.comm),
                  "MPI_Alltoallv")
        statistics.communicationSeconds += Self.now() - t
        let received = receiveInt.map(Int.init)
        statistics.bytesSent += 4 * (sendCounts.reduce(0, +) - sendCounts[rank])
        statistics.bytesReceived += 4 * (received.reduce(0, +) - received[rank])
        return received
    }

    /// MPI_Allgather of the lengths, MPI_Allgatherv of the bytes into scratch, then `visit` in
    /// rank order (this rank's own bytes in place). An error thrown by `visit` is rethrown on
    /// this rank only (the others have their data and go on).
    public func allGatherV(_ bytes: UnsafeRawBufferPointer, visit: (_ rank: Int, _ bytes: UnsafeRawBufferPointer) throws -> Void) throws {
        try beginCollective()
        let n = worldSize
        if n == 1 { return try visit(0, bytes) }
        guard let mineCount = Int32(exactly: bytes.count) else {
            throw CollectiveError.invalidArgument("allGatherV: \(bytes.count) bytes exceed MPI's int count")
        }
        let t = Self.now()
        var length = Int64(bytes.count)
        var lengths = [Int64](repeating: 0, count: n)
        try check(MPI_Allgather(&length, 1, moe_MPI_INT64_T(), &lengths, 1, moe_MPI_INT64_T(), group.comm), "MPI_Allgather (allGatherV lengths)")
        let total = lengths.reduce(0, +)
        guard total <= Int64(Int32.max) else {
            statistics.communicationSeconds += Self.now() - t
            throw CollectiveError.invalidArgument("allGatherV: \(total) bytes in all exceed MPI's int count")
        }
        var counts = lengths.map { Int32($0) }
        var starts = [Int32](repeating: 0, count: n)
        for s in 1..<n { starts[s] = starts[s - 1] + counts[s - 1] }
        let all = scratchSpace(Int(total))
        try check(MPI_Allgatherv(bytes.baseAddress ?? UnsafeRawPointer(all), mineCount, moe_MPI_BYTE(), all, &counts, &starts, moe_MPI_BYTE(), group.comm),
                  "MPI_Allgatherv")
        statistics.communicationSeconds += Self.now() - t
        statistics.bytesSent += (n - 1) * bytes.count
        statistics.bytesReceived += Int(total) - bytes.count
        for s in 0..<n {
            if s == rank { try visit(s, bytes) } else {
                try visit(s, UnsafeRawBufferPointer(start: all + Int(starts[s]), count: Int(counts[s])))
            }
        }
    }

    /// MPI_Send (standard mode: returns once the bytes are buffered or received). A message to
    /// this rank itself is queued locally.
    public func send(_ bytes: UnsafeRawBufferPointer, to destination: Int) throws {
        try beginCollective()
        guard (0..<worldSize).contains(destination) else {
            throw CollectiveError.invalidArgument("send to rank \(destination) out of range 0..<\(worldSize)")
        }
        let t = Self.now()
        if destination == rank {
            selfMailbox.append(Array(bytes))
        } else {
            let c = try mpiCount(bytes.count, "send")
            try check(MPI_Send(bytes.baseAddress, c, moe_MPI_BYTE(), Int32(destination), Self.messageTag, group.comm), "MPI_Send to rank \(destination)")
        }
        statistics.communicationSeconds += Self.now() - t
        statistics.bytesSent += bytes.count
    }

    public func receive(into buffer: UnsafeMutableRawBufferPointer, from source: Int) throws -> Int {
        try beginCollective()
        guard (0..<worldSize).contains(source) else {
            throw CollectiveError.invalidArgument("receive from rank \(source) out of range 0..<\(worldSize)")
        }
        return try receiveMessage(into: buffer, from: Int32(source)).bytes
    }

    /// Receives the next message from any rank (MPI_ANY_SOURCE; this rank's own queued messages
    /// first): its source and length. Not part of `Communicator`: for a rank that serves
    /// requests (the MPI launcher's scheduler).
    public func receiveFromAny(into buffer: UnsafeMutableRawBufferPointer) throws -> (source: Int, bytes: Int) {
        try beginCollective()
        return try receiveMessage(into: buffer, from: moe_MPI_ANY_SOURCE())
    }

    /// The rank a message is waiting from (MPI_Iprobe, any source; this rank's own queue first),
    /// or nil: never blocks.
    public func pendingMessageSource() throws -> Int? {
        if !selfMailbox.isEmpty { return rank }
        var flag: Int32 = 0
        var status = MPI_Status()
        try check(MPI_Iprobe(moe_MPI_ANY_SOURCE(), Self.messageTag, group.comm, &flag, &status), "MPI_Iprobe")
        return flag != 0 ? Int(status.MPI_SOURCE) : nil
    }

    /// Probes (waits for) the next message from `source`, checks its length against the buffer,
    /// then receives it. A message longer than the buffer is received into scratch and dropped,
    /// then reported, so the stream between the two ranks stays in step.
    private func receiveMessage(into buffer: UnsafeMutableRawBufferPointer, from source: Int32) throws -> (source: Int, bytes: Int) {
        if (source == Int32(rank) || source == moe_MPI_ANY_SOURCE()), !selfMailbox.isEmpty {
            let m = selfMailbox.removeFirst()
            guard m.count <= buffer.count else {
                throw CollectiveError.invalidArgument("message of \(m.count) bytes from rank \(rank) for a \(buffer.count)-byte buffer")
            }
            m.withUnsafeBytes { if let b = $0.baseAddress { buffer.baseAddress!.copyMemory(from: b, byteCount: m.count) } }
            statistics.bytesReceived += m.count
            return (rank, m.count)
        }
        if source == Int32(rank) {
            throw CollectiveError.invalidArgument("receive from rank \(rank) itself with no message sent (it would wait forever)")
        }
        var t = Self.now()
        var message: MPI_Message? = nil
        var status = MPI_Status()
        try check(MPI_Mprobe(source, Self.messageTag, group.comm, &message, &status), "MPI_Mprobe")
        statistics.waitSeconds += Self.now() - t
        let from = Int(status.MPI_SOURCE)
        var length: Int32 = 0
        try check(MPI_Get_count(&status, moe_MPI_BYTE(), &length), "MPI_Get_count")
        t = Self.now()
        defer { statistics.communicationSeconds += Self.now() - t }
        guard Int(length) <= buffer.count else {
            try check(MPI_Mrecv(scratchSpace(Int(length)), length, moe_MPI_BYTE(), &message, moe_MPI_STATUS_IGNORE()), "MPI_Mrecv")
            throw CollectiveError.invalidArgument("message of \(length) bytes from rank \(from) for a \(buffer.count)-byte buffer")
        }
        try check(MPI_Mrecv(buffer.baseAddress, length, moe_MPI_BYTE(), &message, moe_MPI_STATUS_IGNORE()), "MPI_Mrecv from rank \(from)")
        statistics.bytesReceived += Int(length)
        return (from, Int(length))
    }
}
