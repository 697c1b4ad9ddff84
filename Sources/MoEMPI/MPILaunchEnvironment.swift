import Foundation

/// Whether this process was started by an MPI launcher, read from the environment alone, so it
/// can be asked BEFORE `MPI_Init` (a plain `moe-run` must never initialise MPI: Open MPI's
/// singleton init would start helper daemons and print warnings on a machine without a launcher).
///
/// Launched when one of these is set (checked in this order; the first names the launcher):
/// - `OMPI_COMM_WORLD_SIZE` (+ `OMPI_COMM_WORLD_RANK`): Open MPI's `mpirun`/`mpiexec`;
/// - `PMIX_RANK` (+ `PMIX_SIZE` when the launcher sets it): any PMIx launcher, e.g.
///   `srun --mpi=pmix` or `prterun`;
/// - `PMI_RANK` (+ `PMI_SIZE`): a PMI-1/PMI-2 launcher (MPICH's Hydra, `srun --mpi=pmi2`);
/// - a Slurm job step of more than one task: `SLURM_STEP_ID` and `SLURM_PROCID` set and
///   `SLURM_STEP_NUM_TASKS` > 1 (`srun -n N` with N > 1). A batch script itself (`sbatch`) is
///   not a step of several tasks, so a plain `moe-run` inside one stays a plain run. When Slurm
///   started the tasks without PMI wiring, MPI sees N worlds of one: `MPIWorld.initialize`
///   compares the world size with `expectedSize` and refuses to go on (see `MPIError`).
///
/// Generic job-scheduler variables alone (`SLURM_JOB_ID`, `PBS_JOBID`, …) do not count: a
/// plain run inside an allocation is not an MPI job.
public struct MPILaunchEnvironment: Equatable, Sendable {
    /// Who started the process: "mpirun", "PMIx", "PMI" or "srun".
    public let launcher: String
    /// This process's rank in the world as the launcher announced it (nil if it did not).
    public let rank: Int?
    /// The number of processes the launcher started (nil if it did not say).
    public let expectedSize: Int?

    public init(launcher: String, rank: Int?, expectedSize: Int?) {
        self.launcher = launcher
        self.rank = rank
        self.expectedSize = expectedSize
    }

    /// The launch this environment describes, or nil for a process not started by MPI.
    public static func detect(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> MPILaunchEnvironment? {
        func int(_ key: String) -> Int? { environment[key].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
        if let size = int("OMPI_COMM_WORLD_SIZE") {
            return MPILaunchEnvironment(launcher: "mpirun", rank: int("OMPI_COMM_WORLD_RANK"), expectedSize: size)
        }
        if let rank = int("PMIX_RANK") {
            return MPILaunchEnvironment(launcher: "PMIx", rank: rank, expectedSize: int("PMIX_SIZE") ?? int("SLURM_STEP_NUM_TASKS"))
        }
        if let rank = int("PMI_RANK") {
            return MPILaunchEnvironment(launcher: "PMI", rank: rank, expectedSize: int("PMI_SIZE"))
        }
        if environment["SLURM_STEP_ID"] != nil, let rank = int("SLURM_PROCID"),
           let tasks = int("SLURM_STEP_NUM_TASKS"), tasks > 1 {
            return MPILaunchEnvironment(launcher: "srun", rank: rank, expectedSize: tasks)
        }
        return nil
    }
}
