import Foundation
import MoEHDF5

/// The communication share of a data-parallel training step (issue 14 item 6): the training-step
/// model (`dataParallelSpec`, residual MLP of 2.12M parameters, global batch 256) run by moe-run
/// itself with `parallelism.mode: data` over 2 and 4 workers: with the shm backend (no launcher)
/// and under `mpirun -np P --mca pml ob1 --mca btl vader,self` (Open MPI shared memory) or
/// `tcp,self` (TCP on loopback, the transport between machines). Each figure is rank 0's mean per
/// step from the task file's /metrics series (compute_seconds, communication_seconds,
/// wait_seconds, bytes_sent), without the first logged window. docs/scaling.md checks its α–β
/// model against these rows.
///
/// The runs set `MOE_RUN_STEP_BARRIER=1` (`Worker.stepBarrierVariable`): each step puts a barrier
/// between the backward pass and its all-reduces, so the time rank 0 waits for the slowest rank
/// is `wait_seconds` and `communication_seconds` is the all-reduces moving data. Without it,
/// MPICommunicator's all-reduce includes the wait (MPI has no way to tell them apart inside one
/// call), and the step's first all-reduce (the 4 loss sums) absorbs it. The barrier changes no
/// bit; a training run never sets it.
extension Bench {
    struct StepCommunication {
        var path: String, ranks: Int
        var result: DataParallelResult?
    }

    /// `Worker.stepBarrierVariable` (moe-bench does not link the runtime).
    static let stepBarrierVariable = "MOE_RUN_STEP_BARRIER"

    static func mpirunPath() -> String? {
        (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":").map { "\($0)/mpirun" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// One data-parallel run of `ranks` workers over `btl` (nil: the shm backend).
    static func dataParallelStep(ranks: Int, btl: String?) -> DataParallelResult? {
        guard let workspace = RunWorkspace(name: "step-\(ranks)-\(btl ?? "shm")", spec: dataParallelSpec) else { return nil }
        var launcher: [String] = []
        if let btl {
            guard let mpirun = mpirunPath() else { return nil }
            launcher = [mpirun, "--oversubscribe", "--allow-run-as-root", "-np", "\(ranks)", "--mca", "btl", btl,
                        "--mca", "pml", "ob1", "--bind-to", "none"]
        }
        guard let dir = workspace.run(["--set", "parallelism.mode=data", "--set", "parallelism.workers=\(ranks)"], launcher: launcher,
                                      environment: [stepBarrierVariable: "1"]),
              let file = try? H5File.open(dir + "/tasks/train.h5") else { return nil }
        return dataParallelResult(file, oneProcessStep: .nan)
    }

    static func stepCommunication() -> [StepCommunication] {
        var rows: [StepCommunication] = []
        for ranks in [2, 4] {
            for (path, btl) in [("shm", nil), ("MPI vader", "vader,self"), ("MPI TCP loopback", "tcp,self")] as [(String, String?)] {
                rows.append(StepCommunication(path: path, ranks: ranks, result: dataParallelStep(ranks: ranks, btl: btl)))
            }
        }
        return rows
    }

    /// The rows appended to the "## Collectives" section; docs/scaling.md parses the table.
    static func stepCommunicationLines(_ rows: [StepCommunication]) -> [String] {
        var lines = ["", "Data-parallel training step under each path: the training-step model (residual MLP, features 64, hidden 256, ffn 1024, 4 blocks, 2.12M parameters), global batch 256, 40 steps, run by moe-run with `--set parallelism.mode=data --set parallelism.workers=P` (shm) or under `mpirun -np P --mca pml ob1 --mca btl vader,self` / `tcp,self`; rank 0's mean per step from the run's /metrics series (compute_seconds, communication_seconds, wait_seconds, bytes_sent), first logged window left out. Ranks share the 2 cores (OPENBLAS_NUM_THREADS = cores / ranks, at least 1). Each step puts a barrier between the backward pass and its all-reduces (`MOE_RUN_STEP_BARRIER=1`, for this table only; no bit changes): waiting is rank 0's time in that barrier, waiting for the slowest rank to finish its backward pass (plus any waits inside the shm backend's collectives); communication is the step's two all-reduces (4 loss sums, then the gradient) moving data. Load average when measured: \(loadAverage()).", "",
                     "| data-parallel step, path | ranks | step (ms) | compute (ms) | communication (ms) | waiting (ms) | communication share | bytes sent per step (KB) |",
                     "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in rows {
            guard let r = row.result, r.step.isFinite else {
                lines.append("| \(row.path) | \(row.ranks) | – | – | – | – | not measured | – |"); continue
            }
            lines.append(String(format: "| %@ | %d | %.2f | %.2f | %.2f | %.2f | %.1f%% | %.0f |", row.path as NSString, row.ranks,
                                1e3 * r.step, 1e3 * r.compute, 1e3 * r.communication, 1e3 * r.waiting,
                                100 * r.communication / r.step, r.bytes / 1024))
        }
        return lines
    }
}
