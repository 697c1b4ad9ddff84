import CShm
import Foundation

/// Point-to-point messages: one mailbox per ordered pair (source → destination), a ring of
/// `mailboxBytes` carrying a byte stream of messages, each an 8-byte length then its bytes.
/// The sender alone advances `head` (bytes written), the receiver alone advances `tail` (bytes
/// consumed); after each advance the writer bumps its futex word (`seq` / `ack`) and wakes the
/// other side. A message longer than the ring streams through it in pieces, so messages between
/// one pair arrive whole and in the order sent. `send` returns once its last byte is in the ring.
extension SharedMemoryGroup {
    /// Sends `bytes` to `destination`. Sending to oneself works when the message (plus 8 bytes)
    /// fits the free room of the ring; a larger one would wait for itself and is an error.
    public func send(_ bytes: UnsafeRawBufferPointer, to destination: Int) throws {
        try beginCollective()
        guard (0..<worldSize).contains(destination) else {
            throw CollectiveError.invalidArgument("send to rank \(destination) out of range 0..<\(worldSize)")
        }
        if destination == rank {
            let used = Int(moe_atomic_load_u64(word(layout.headOffset(from: rank, to: rank)))
                           &- moe_atomic_load_u64(word(layout.tailOffset(from: rank, to: rank))))
            guard bytes.count + 8 <= layout.mailboxBytes - used else {
                throw CollectiveError.invalidArgument("send of \(bytes.count) bytes to this rank itself exceeds its \(layout.mailboxBytes - used - 8)-byte mailbox room")
            }
        }
        try failing {
            var length = UInt64(bytes.count)
            try withUnsafeBytes(of: &length) { try streamWrite($0, to: destination) }
            try streamWrite(bytes, to: destination)
            statistics.bytesSent += bytes.count
        }
    }

    /// Receives the next message from `source` into `buffer`; returns its length. A message longer
    /// than `buffer` is an error (and aborts the group: the stream cannot be resumed).
    public func receive(into buffer: UnsafeMutableRawBufferPointer, from source: Int) throws -> Int {
        try beginCollective()
        guard (0..<worldSize).contains(source) else {
            throw CollectiveError.invalidArgument("receive from rank \(source) out of range 0..<\(worldSize)")
        }
        return try failing {
            var length: UInt64 = 0
            try withUnsafeMutableBytes(of: &length) { try streamRead(into: $0, from: source) }
            guard length <= UInt64(buffer.count) else {
                throw CollectiveError.invalidArgument("message of \(length) bytes from rank \(source) for a \(buffer.count)-byte buffer")
            }
            let n = Int(length)
            try streamRead(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]), from: source)
            statistics.bytesReceived += n
            return n
        }
    }

    private func streamWrite(_ bytes: UnsafeRawBufferPointer, to d: Int) throws {
        let capacity = UInt64(layout.mailboxBytes)
        let head = word(layout.headOffset(from: rank, to: d)), tail = word(layout.tailOffset(from: rank, to: d))
        let seq = word(layout.seqOffset(from: rank, to: d)), ack = word(layout.ackOffset(from: rank, to: d))
        let ring = base + layout.ringOffset(from: rank, to: d)
        var written = 0
        while written < bytes.count {
            let h = moe_atomic_load_u64(head)
            let free = capacity - (h &- moe_atomic_load_u64(tail))
            if free == 0 {
                try waitUntil("send to rank \(d)", word: ack, waitingFor: { [d] }) {
                    capacity - (h &- moe_atomic_load_u64(tail)) > 0
                }
                continue
            }
            let t = Self.now()
            let k = min(Int(free), bytes.count - written)
            Self.copyIntoRing(ring, capacity: Int(capacity), at: Int(h % capacity), from: bytes.baseAddress! + written, count: k)
            moe_atomic_store_u64(head, h &+ UInt64(k))
            _ = moe_atomic_fetch_add_u32(seq, 1)
            _ = moe_futex_wake(seq)
            statistics.communicationSeconds += Self.now() - t
            written += k
        }
    }

    private func streamRead(into buffer: UnsafeMutableRawBufferPointer, from s: Int) throws {
        let capacity = UInt64(layout.mailboxBytes)
        let head = word(layout.headOffset(from: s, to: rank)), tail = word(layout.tailOffset(from: s, to: rank))
        let seq = word(layout.seqOffset(from: s, to: rank)), ack = word(layout.ackOffset(from: s, to: rank))
        let ring = base + layout.ringOffset(from: s, to: rank)
        var got = 0
        while got < buffer.count {
            let tl = moe_atomic_load_u64(tail)
            let available = moe_atomic_load_u64(head) &- tl
            if available == 0 {
                try waitUntil("receive from rank \(s)", word: seq, waitingFor: { [s] }) {
                    moe_atomic_load_u64(head) != tl
                }
                continue
            }
            let t = Self.now()
            let k = min(Int(available), buffer.count - got)
            Self.copyFromRing(ring, capacity: Int(capacity), at: Int(tl % capacity), into: buffer.baseAddress! + got, count: k)
            moe_atomic_store_u64(tail, tl &+ UInt64(k))
            _ = moe_atomic_fetch_add_u32(ack, 1)
            _ = moe_futex_wake(ack)
            statistics.communicationSeconds += Self.now() - t
            got += k
        }
    }

    static func copyIntoRing(_ ring: UnsafeMutableRawPointer, capacity: Int, at start: Int, from source: UnsafeRawPointer, count: Int) {
        let first = min(count, capacity - start)
        (ring + start).copyMemory(from: source, byteCount: first)
        if count > first { ring.copyMemory(from: source + first, byteCount: count - first) }
    }

    static func copyFromRing(_ ring: UnsafeMutableRawPointer, capacity: Int, at start: Int, into target: UnsafeMutableRawPointer, count: Int) {
        let first = min(count, capacity - start)
        target.copyMemory(from: ring + start, byteCount: first)
        if count > first { (target + first).copyMemory(from: ring, byteCount: count - first) }
    }
}
