import Foundation
import MoEPlan

/// Rank 0's scheduler of a run under MPI (ARCHITECTURE §5.5): the plan's DAG over the world's
/// ranks, in **waves**.
///
/// Each wave takes the tasks whose dependencies are complete, in plan order, and gives each the
/// lowest free ranks: `min(task.workers, parallelism.workers)` of them for a group task (data,
/// expert, pipeline parallel; group rank i = `ranks[i]`), one for an independent task (data,
/// a branch expert, fuse, evaluate); a task that does not fit waits for the next wave. Rank 0 is
/// always in the first task of a wave: it plans, holds the run lock, writes run.h5, and works.
/// Every rank runs its part (`MPICluster.execute`) and reports; the wave ends when every rank has
/// reported, and the next wave starts from the new state.
///
/// Why waves rather than a scheduler thread on rank 0 handing a free rank the next task at once:
/// everything MPI stays on one thread per rank (no MPI_THREAD_MULTIPLE needed, which srun
/// setups do not always grant, and no MPI calls racing HDF5 on rank 0), a group's
/// MPI_Comm_split is a collective every rank reaches at the same point, and the state between
/// waves is simple (no task is running), so an interrupt or a failure stops cleanly. The cost is
/// idle ranks when the tasks of a wave differ in length: the shipped plans' waves are alike
/// (equal branch experts, one group task), and results never depend on how tasks were grouped.
///
/// Failures are classified as in `Scheduler`: a transient one is retried in a later wave, up to
/// `retries` times; a permanent one is not retried and stops the run; an interrupted task stops
/// the run (`RuntimeError.runInterrupted`). A rank that *dies* ends the whole job (MPI's default:
/// mpirun kills the other ranks); rank 0 names the task, rank and host (`MPIFaultWatch`).
struct MPIScheduler {
    var tasks: [PlanTask]
    var cluster: MPICluster
    var workers: Int
    var retries: Int
    var quiet: Bool
    var directory: String
    var log: RunLog
    var logPath: String
    var isComplete: (String) -> Bool
    /// Told the tasks of each wave (for the fault messages), and nil when it ends.
    var onWave: ([MPIAssignment]?) -> Void = { _ in }

    private enum State { case pending, complete, failed }

    func run() throws {
        var state: [String: State] = [:]
        var attempts: [String: Int] = [:]
        var failures: [RuntimeError] = []
        var interrupted: [String] = []
        for task in tasks {
            state[task.id] = isComplete(task.id) ? .complete : .pending
            if state[task.id] == .complete { log.info("\(task.id): complete, skipped") }
        }
        while !Interrupts.requested {
            var free = Array(0..<cluster.size)
            var wave: [MPIAssignment] = []
            for task in tasks where state[task.id] == .pending && task.dependsOn.allSatisfy({ state[$0] == .complete }) {
                let size = min(max(1, task.workers), max(1, workers))
                guard free.count >= size else { continue }
                wave.append(MPIAssignment(task: task.id, ranks: Array(free.prefix(size))))
                free.removeFirst(size)
            }
            if wave.isEmpty { break }
            for a in wave {
                attempts[a.task, default: 0] += 1
                log.record("\(a.task): started on \(a.ranks.map(cluster.label).joined(separator: ", ")) (attempt \(attempts[a.task]!))")
            }
            onWave(wave)
            let order = MPIOrder(kind: .wave, path: directory, quiet: quiet, assignments: wave)
            try cluster.channel.send(order)
            let own = try cluster.execute(order, leadLog: log)
            let reports = try cluster.channel.gatherReports(own) ?? []
            onWave(nil)
            for a in wave {
                let mine = a.ranks.map { (rank: $0, report: reports[$0]) }
                let id = a.task
                if mine.allSatisfy({ $0.report.outcome == .done }) && isComplete(id) {
                    state[id] = .complete
                    continue
                }
                if let p = mine.first(where: { $0.report.outcome == .permanent }) {
                    state[id] = .failed
                    let reason = p.report.message ?? "\(id): failed on \(cluster.label(p.rank))"
                    log.record("\(id): failed permanently on \(cluster.label(p.rank)), not retried; stopping the run: \(reason)")
                    throw RuntimeError.taskFailedPermanently(task: id, reason: reason)
                }
                if mine.contains(where: { $0.report.outcome == .interrupted }) {
                    interrupted.append(id)
                    continue
                }
                let failed = mine.first { $0.report.outcome == .failed }
                let cause = failed.map { "\(cluster.label($0.rank)): \($0.report.message ?? "failed")" } ?? "it ended without writing \(id).h5"
                if attempts[id, default: 1] <= retries {
                    log.info("\(id): \(cause); retry \(attempts[id, default: 1]) of \(retries)")
                } else {
                    state[id] = .failed
                    failures.append(RuntimeError.taskFailed(task: id + (failed.map { " (\(cluster.label($0.rank)))" } ?? ""),
                                                            status: "an error", attempts: attempts[id, default: 1],
                                                            reason: failed?.report.message, log: logPath))
                }
            }
            if !interrupted.isEmpty { break }
        }
        if !interrupted.isEmpty || Interrupts.requested { throw RuntimeError.runInterrupted(tasks: interrupted) }
        if let first = failures.first { throw first }
        let blocked = tasks.filter { state[$0.id] == .pending }.map(\.id)
        if !blocked.isEmpty && failures.isEmpty {
            throw RuntimeError.io(path: logPath, message: "tasks \(blocked.joined(separator: ", ")) never became ready (a dependency is missing from the plan)")
        }
    }
}
