import Foundation
import MoEMPI

/// What rank 0 tells every rank of a run under MPI (ARCHITECTURE §5.5), one order at a time over
/// the `MPIControlChannel` (JSON): check that the results directory is shared, run a wave of
/// tasks, or stop.
struct MPIOrder: Codable, Equatable {
    enum Kind: String, Codable { case checkDirectory, wave, stop }
    var kind: Kind
    /// `checkDirectory`: the token file to read; `wave`: the run directory (absolute).
    var path = ""
    /// `checkDirectory`: what the token file holds.
    var token = ""
    /// `wave`: the run's `--quiet` (the lead rank of a task prints its lines unless quiet).
    var quiet = false
    /// `wave`: the tasks and the world ranks each runs on (a group task's ranks in group-rank order).
    var assignments: [MPIAssignment] = []
}

/// One task of a wave and the world ranks that run it (group rank i is `ranks[i]`).
struct MPIAssignment: Codable, Equatable {
    var task: String
    var ranks: [Int]
}

/// What a rank answers to an order.
struct MPIReport: Codable, Equatable {
    enum Outcome: String, Codable {
        /// No task in this wave, or the directory check passed.
        case idle
        case done
        /// Failed in a way a new attempt may not repeat (`Failure`: transient).
        case failed
        /// Failed in a way no retry fixes (`Failure.isPermanent`).
        case permanent
        /// SIGINT/SIGTERM: state saved.
        case interrupted
        /// `checkDirectory`: the token file cannot be read, or holds something else.
        case unshared
    }
    var outcome: Outcome
    /// The rank's one line for a failure (or why the token could not be read).
    var message: String?
}

/// Encoding of orders and reports for the channel.
extension MPIControlChannel {
    func send(_ order: MPIOrder) throws {
        _ = try broadcast(Array(try JSONEncoder().encode(order)))
    }

    func receiveOrder() throws -> MPIOrder {
        let bytes = try broadcast([])
        do {
            return try JSONDecoder().decode(MPIOrder.self, from: Data(bytes))
        } catch {
            throw RuntimeError.usage("MPI: rank \(rank) received an order it cannot read (\(bytes.count) bytes): \(error)")
        }
    }

    /// Every rank's report on rank 0 (nil elsewhere).
    func gatherReports(_ report: MPIReport) throws -> [MPIReport]? {
        guard let all = try gather(Array(try JSONEncoder().encode(report))) else { return nil }
        return try all.enumerated().map { rank, bytes in
            do {
                return try JSONDecoder().decode(MPIReport.self, from: Data(bytes))
            } catch {
                throw RuntimeError.usage("MPI: the report of rank \(rank) cannot be read (\(bytes.count) bytes): \(error)")
            }
        }
    }
}
