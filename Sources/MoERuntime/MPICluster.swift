import Foundation
import MoEComm
import MoEHDF5
import MoEMPI
import MoEPlan
#if canImport(Glibc)
import Glibc
#endif

/// This process's place in a run under MPI (ARCHITECTURE §5.5): the world, the control channel
/// to rank 0, and every rank's host and pid (exchanged once at start-up, for messages that name
/// a rank's host and for rank 0's check of which local rank died).
///
/// Every rank runs its part of a wave of tasks with `execute`: a task runs in this process (there
/// is no exec under MPI), the code the shm workers run (`Worker.perform`); a group task (data,
/// expert, pipeline parallel) runs over a sub-communicator of its ranks (MPI_Comm_split of the
/// world, `MPICommunicator`) instead of a `SharedMemoryGroup`.
final class MPICluster {
    let world: MPIWorld
    let channel: MPIControlChannel
    /// Host name of each world rank.
    let hosts: [String]
    /// Process id of each world rank (on its own host).
    let pids: [Int32]

    var rank: Int { world.rank }
    var size: Int { world.size }

    /// Seconds a rank whose task failed waits for the task's other ranks after it
    /// (`MOE_RUN_MPI_SETTLE`, default 10): they arrive at once when they failed too (a divergence
    /// every rank sees); one blocked in a collective waiting for this rank never arrives, and the
    /// job is then aborted (MPI_Abort) instead of hanging.
    static var settleSeconds: Double {
        ProcessInfo.processInfo.environment["MOE_RUN_MPI_SETTLE"].flatMap(Double.init) ?? 10
    }

    /// Collective over the world: duplicates it for the channel and exchanges hosts and pids.
    init(world: MPIWorld) throws {
        self.world = world
        channel = try MPIControlChannel(world: world)
        let mine = "\(getpid()) \(world.processorName)"
        let all = try channel.gather(Array(mine.utf8)).map { $0.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "\n") }
        let lines = String(decoding: try channel.broadcast(Array((all ?? "").utf8)), as: UTF8.self).split(separator: "\n")
        pids = lines.map { Int32($0.split(separator: " ", maxSplits: 1)[0]) ?? 0 }
        hosts = lines.map { String($0.split(separator: " ", maxSplits: 1).dropFirst().first ?? "unknown") }
    }

    /// `rank 1 (host h)`.
    func label(_ rank: Int) -> String { "rank \(rank) (host \(hosts[rank]))" }

    /// This rank's part of `order`: reads the token file of a `checkDirectory`, or runs its task
    /// of a `wave` (`leadLog`: rank 0's run log, for the tasks it leads).
    func execute(_ order: MPIOrder, leadLog: RunLog?) throws -> MPIReport {
        switch order.kind {
        case .stop: return MPIReport(outcome: .idle)
        case .checkDirectory: return readToken(order)
        case .wave: return try runWave(order, leadLog: leadLog)
        }
    }

    private func readToken(_ order: MPIOrder) -> MPIReport {
        guard let data = FileManager.default.contents(atPath: order.path) else {
            return MPIReport(outcome: .unshared, message: "\(label(rank)) cannot read \(order.path)")
        }
        guard String(decoding: data, as: UTF8.self) == order.token else {
            return MPIReport(outcome: .unshared, message: "\(label(rank)) reads another file at \(order.path)")
        }
        return MPIReport(outcome: .idle)
    }

    private func runWave(_ order: MPIOrder, leadLog: RunLog?) throws -> MPIReport {
        let index = order.assignments.firstIndex { $0.ranks.contains(rank) }
        // Collective over the world whenever a wave holds a group: every rank takes part, those
        // outside a group with no color.
        var group: MPIGroup?, settle: MPIGroup?
        if order.assignments.contains(where: { $0.ranks.count > 1 }) {
            let inGroup = index.map { order.assignments[$0].ranks.count > 1 } ?? false
            group = try world.split(color: inGroup ? index : nil, key: index.flatMap { order.assignments[$0].ranks.firstIndex(of: rank) } ?? 0)
            settle = try group?.duplicate()
        }
        defer {
            group?.free()
            settle?.free()
        }
        guard let index else { return MPIReport(outcome: .idle) }
        let assignment = order.assignments[index]
        let report = runTask(assignment, order: order, group: group, leadLog: leadLog)
        if let settle {
            do {
                try MPIControlChannel.barrier(settle, timeout: report.outcome == .done ? nil : Self.settleSeconds)
            } catch {
                let reason = report.message ?? "interrupted"
                let line = (reason.hasPrefix(assignment.task + ": ") ? reason : "\(assignment.task): \(reason)")
                    + " (on \(label(rank))); the task's other ranks are blocked waiting for it, so the job is aborted; rerun with --resume to continue from the last checkpoint"
                RunLog(path: RunLayout(directory: order.path).logFile, quiet: true).record("error: " + line)
                FileHandle.standardError.write(Data(("moe-run: error: " + line + "\n").utf8))
                world.abort(code: 1)
            }
        }
        return report
    }

    /// Runs one task in this process and says how it ended.
    private func runTask(_ assignment: MPIAssignment, order: MPIOrder, group: MPIGroup?, leadLog: RunLog?) -> MPIReport {
        let layout = RunLayout(directory: order.path)
        let lead = assignment.ranks.first == rank
        do {
            let spec = try Worker.loadSpec(layout)
            H5Storage.deflateLevel = UInt32(spec.output.compression)
            guard let task = Planner.plan(spec).task(assignment.task) else {
                throw RuntimeError.usage("\(layout.runFile): the plan has no task \(assignment.task)")
            }
            let communicator: Communicator = try group.map { try MPICommunicator(group: $0) } ?? SoloCommunicator()
            let log = lead ? (leadLog ?? RunLog(path: layout.logFile, quiet: order.quiet)) : RunLog(path: nil, quiet: true)
            do {
                try Worker.perform(task, spec: spec, layout: layout, log: log, communicator: communicator)
            } catch let error as CollectiveError {
                throw RuntimeError.groupFailed(task: task.id, reason: error.description)
            }
            return MPIReport(outcome: .done)
        } catch RuntimeError.interrupted {
            return MPIReport(outcome: .interrupted)
        } catch {
            let permanent = Failure.isPermanent(error)
            return MPIReport(outcome: permanent ? .permanent : .failed,
                             message: permanent ? Failure.message(for: error, task: assignment.task) : "\(error)")
        }
    }

    /// The serving loop of ranks other than 0: runs orders until `stop`.
    func serve() throws {
        while true {
            let order = try channel.receiveOrder()
            if order.kind == .stop { return }
            _ = try channel.gatherReports(try execute(order, leadLog: nil))
        }
    }

    /// Rank 0: every other rank must read a token file written in `directory` (created if
    /// missing); throws `RuntimeError.usage` (exit 2) naming the first rank that cannot.
    func checkSharedDirectory(_ directory: String) throws {
        try RunLayout.makeDirectory(directory, reportedAs: directory)
        let path = directory + "/.moe-run-shared-check-\(getpid())-\(UUID().uuidString.prefix(8))"
        let token = "moe-run \(UUID().uuidString) from \(label(0))\n"
        guard FileManager.default.createFile(atPath: path, contents: Data(token.utf8)) else {
            throw RuntimeError.io(path: path, message: "cannot write the shared-directory check file")
        }
        defer { unlink(path) }
        let order = MPIOrder(kind: .checkDirectory, path: path, token: token)
        try channel.send(order)
        let reports = try channel.gatherReports(try execute(order, leadLog: nil)) ?? []
        if let bad = reports.first(where: { $0.outcome == .unshared }) {
            throw RuntimeError.usage("\(directory): not shared by every MPI rank (\(bad.message ?? "a rank cannot read a file rank 0 wrote there")); the results directory must be on a filesystem every rank sees: put output.dir (or --out) on a shared filesystem such as NFS or Lustre")
        }
    }
}
