import Foundation
import XCTest
@testable import MoEMPI

/// MPIWorld under a real `mpirun` (Open MPI): init, rank, size, host, thread level, split and
/// dup, finalize; and a plain start of the same binary never initialises MPI.
final class MPIWorldTests: XCTestCase {
    func testPlainStartDoesNotInitialiseMPI() throws {
        let dir = try MPIRun.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: MPIRun.peer)
        p.arguments = ["mpi-world", dir + "/out"]
        p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") && !$0.key.hasPrefix("PMI_") && !$0.key.hasPrefix("SLURM_") }
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        XCTAssertEqual(try String(contentsOfFile: dir + "/out", encoding: .utf8), "not launched\n")
    }

    func testWorldSplitAndDuplicateUnderMPIRun() throws {
        for (ranks, btl) in [(2, "tcp,self"), (4, "tcp,self"), (4, nil)] {
            let dir = try MPIRun.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let outcome = try MPIRun.run(ranks: ranks, btl: btl, ["mpi-world", dir + "/out"])
            XCTAssertEqual(outcome.status, 0, outcome.output)
            let host = ProcessInfo.processInfo.hostName
            for r in 0..<ranks {
                let line = try String(contentsOfFile: dir + "/out.\(r)", encoding: .utf8)
                let f = line.split(separator: " ").map(String.init)
                XCTAssertEqual(f.count, 14, line)
                guard f.count == 14 else { continue }
                XCTAssertEqual(Array(f[0...2]), ["world", "\(r)", "\(ranks)"], line)
                XCTAssertEqual(f[3], "MPI_THREAD_MULTIPLE", line)
                XCTAssertEqual(f[4], "mpirun", line)
                XCTAssertTrue(host.hasPrefix(f[5]) || f[5].hasPrefix(host), "host \(f[5]) vs \(host)")
                // Even and odd ranks; key −rank reverses the order within each half.
                let halfSize = (ranks - r % 2 + 1) / 2
                let halfRank = halfSize - 1 - r / 2
                XCTAssertEqual(Array(f[6...8]), ["split", "\(halfRank)", "\(halfSize)"], line)
                XCTAssertEqual(Array(f[9...11]), ["dup", "\(r)", "\(ranks)"], line)
                XCTAssertEqual(Array(f[12...13]), ["undefined", "nil\n"], line)
            }
            XCTAssertEqual(MPIRun.leftoverPeers(), [], "peer processes left after mpirun -np \(ranks)")
        }
    }
}
