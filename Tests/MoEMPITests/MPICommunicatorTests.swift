import Foundation
import XCTest

/// MPICommunicator under a real `mpirun`: every collective, on the world and on groups from
/// MPI_Comm_split, gives byte for byte what SharedMemoryGroup gives for the same inputs and
/// group size, over TCP (`--mca btl tcp,self`, the transport between machines) and shared
/// memory (vader); the sums are the serial rank-order sums bit for bit (signed zeros, ±inf,
/// NaN, subnormals included). The checks run in `moe-comm-peer mpi-collectives` (each rank
/// runs the shm reference in threads) and are read back here.
final class MPICommunicatorTests: XCTestCase {
    /// Scenarios of CollectiveScenarios.run, of which the first three are float sums.
    static let scenarios = ["allreduce-small", "allreduce-large", "allreduce-rounds", "allreduce-double-3",
                            "allreduce-double-2501", "broadcast", "alltoallv", "allgatherv", "sendrecv", "calls"]

    func testEveryCollectiveMatchesTheSharedMemoryBackendBitForBit() throws {
        for (ranks, btl) in [(2, "tcp,self"), (4, "tcp,self"), (2, "vader,self"), (4, nil)] {
            let dir = try MPIRun.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let outcome = try MPIRun.run(ranks: ranks, btl: btl, ["mpi-collectives", dir + "/out", "20000"])
            let label = "-np \(ranks) btl \(btl ?? "default")"
            XCTAssertEqual(outcome.status, 0, "\(label): \(outcome.output)")
            for r in 0..<ranks {
                let lines = try String(contentsOfFile: dir + "/out.\(r)", encoding: .utf8).split(separator: "\n").map(String.init)
                for group in ["world", "half", "reversed"] {
                    let mine = lines.filter { $0.hasPrefix(group + " ") && !$0.contains(" size ") }
                    XCTAssertEqual(mine.map { $0.split(separator: " ")[1] }.map(String.init), Self.scenarios, "\(label) rank \(r) \(group)")
                    for line in mine {
                        XCTAssertTrue(line.split(separator: " ")[2] == "same", "\(label) rank \(r): \(line)")
                        if line.contains("allreduce-") && !line.contains("double") {
                            XCTAssertTrue(line.hasSuffix(" serial ok"), "\(label) rank \(r): \(line)")
                        }
                    }
                }
                let size = ranks, half = ranks / 2
                XCTAssertTrue(lines.contains { $0.hasPrefix("world size \(size) rank \(r) stats 23 ") }, "\(label): \(lines)")
                // 23 calls: 3 + 2 sums, broadcast, allToAllV, allGatherV, 5 + 1 sends and receives, 3 barriers (no long message in a group of one).
                XCTAssertTrue(lines.contains { $0.hasPrefix("half size \(half) rank \(r / 2) stats \(half == 1 ? 21 : 23) ") }, "\(label): \(lines)")
                XCTAssertTrue(lines.contains { $0.hasPrefix("reversed size \(size) rank \(size - 1 - r) stats 23 ") }, "\(label): \(lines)")
                let errors = lines.filter { $0.hasPrefix("error ") }
                var expected = [
                    r == ranks - 1 ? "error alltoallv-room: collective group: allToAllV: receiving \(ranks) floats into room for \(ranks - 1)"
                                   : "error alltoallv-room: collective group aborted by rank \(ranks - 1)",
                ]
                if r == 1 {
                    expected += ["error long-message-next: 5 bytes 2,2,2,2,2",
                                 "error long-message: collective group: message of 100 bytes from rank 0 for a 10-byte buffer"]
                } else {
                    expected += ["error long-message: none"]
                }
                expected += [
                    "error receive-from-self: collective group: receive from rank \(r) itself with no message sent (it would wait forever)",
                    "error broadcast-root: collective group: broadcast root \(ranks) out of range 0..<\(ranks)",
                    "error send-rank: collective group: send to rank -1 out of range 0..<\(ranks)",
                ]
                XCTAssertEqual(errors, expected, "\(label) rank \(r)")
                // Rank 0 serves: pendingMessageSource sees a peer's message, then receiveFromAny takes
                // every rank's (its own included), and nothing is left pending.
                let serve = lines.filter { $0.hasPrefix("serve ") }
                XCTAssertEqual(serve, r == 0 ? ["serve peer " + (0..<ranks).map { "\($0):hello \($0)" }.joined(separator: ",") + " then none"] : [],
                               "\(label) rank \(r)")
            }
            XCTAssertEqual(MPIRun.leftoverPeers(), [], "peer processes left after mpirun \(label)")
        }
    }

    /// A rank that dies while the others are in (or entering) an all-reduce ends the whole job
    /// within seconds (mpirun's semantics; MPICommunicator must not keep survivors waiting), with
    /// the dead rank's exit status, and leaves no process behind.
    func testDeadRankEndsTheJobWithinSeconds() throws {
        try endsTheJob(scenario: "mpi-die", status: 3)
    }

    /// MPIWorld.abort(code:) on one rank ends every rank, also those blocked in a barrier.
    func testAbortEndsEveryRank() throws {
        try endsTheJob(scenario: "mpi-abort", status: 5)
    }

    private func endsTheJob(scenario: String, status: Int32) throws {
        for (ranks, btl) in [(2, "tcp,self"), (4, "tcp,self"), (4, "vader,self")] {
            let dir = try MPIRun.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let start = Date()
            let outcome = try MPIRun.run(ranks: ranks, btl: btl, [scenario, dir + "/out"], timeout: 30)
            let label = "\(scenario) -np \(ranks) btl \(btl)"
            XCTAssertEqual(outcome.status, status, "\(label): \(outcome.output)")
            XCTAssertLessThan(Date().timeIntervalSince(start), 20, label)
            let survivors = try FileManager.default.contentsOfDirectory(atPath: dir)
            XCTAssertEqual(survivors, [], "\(label): a rank went on after its peer died")
            XCTAssertEqual(MPIRun.leftoverPeers(), [], "peer processes left after mpirun \(label)")
        }
    }
}
