import Foundation
import MoEMPI
import MoESpec

/// `mpirun -np N moe-run SPEC.yaml` (or `srun -n N …`): the same run over N MPI ranks
/// (ARCHITECTURE §5.5). Every rank loads the spec; rank 0 runs `Runner` with the MPI scheduler
/// (it plans, holds the run lock, writes run.h5, schedules and works), the other ranks serve its
/// orders (`MPICluster.serve`) until it says stop.
public enum MPIRun {
    /// The launch a run of `spec` goes over, or nil for the shm backend (processes on this
    /// machine). `parallelism.backend: auto` means MPI exactly when an MPI launcher started this
    /// process. Throws `RuntimeError.usage` (exit 2) for `mpi` without such a launch, and for
    /// `shm` under a launch of several ranks (each would run the whole plan on its own).
    public static func launch(for spec: ExperimentSpec,
                              environment: [String: String] = ProcessInfo.processInfo.environment) throws -> MPILaunchEnvironment? {
        let launch = MPILaunchEnvironment.detect(environment)
        switch spec.parallelism.backend {
        case .mpi where launch == nil:
            throw RuntimeError.usage("parallelism.backend: mpi, but this moe-run was not started by mpirun or srun; run `mpirun -np N moe-run SPEC.yaml` (or `srun -n N moe-run SPEC.yaml`), or set parallelism.backend: auto")
        case .shm:
            if let launch, (launch.expectedSize ?? 1) > 1 {
                throw RuntimeError.usage("parallelism.backend: shm, but \(launch.launcher) started \(launch.expectedSize!) processes of moe-run (each would run the whole plan); run moe-run without \(launch.launcher), or set parallelism.backend: auto or mpi")
            }
            return nil
        default:
            return launch
        }
    }

    /// Whether this process speaks for the job: not launched by MPI, or its rank 0. The other
    /// ranks print no errors or warnings of their own (rank 0 prints the same ones, once).
    public static var speaksForTheJob: Bool {
        (MPILaunchEnvironment.detect()?.rank ?? 0) == 0
    }

    /// Runs `spec` over the MPI world: on rank 0 returns the run's layout (what `Runner.run`
    /// returns), on the other ranks nil once rank 0 has said stop. Every rank finalizes MPI.
    /// More workers than ranks is refused (exit 2) on every rank, before anything is written.
    public static func run(_ spec: ExperimentSpec, options: RunOptions) throws -> RunLayout? {
        let world = try MPIWorld.initialize()
        defer { world.finalize() }
        Interrupts.install()
        guard spec.parallelism.workers <= world.size else {
            throw RuntimeError.usage("parallelism.workers: \(spec.parallelism.workers) workers need \(spec.parallelism.workers) MPI ranks, but \(world.launch.launcher) started \(world.size); start \(spec.parallelism.workers) or more ranks (mpirun -np \(spec.parallelism.workers)) or lower parallelism.workers")
        }
        let cluster = try MPICluster(world: world)
        guard world.rank == 0 else {
            try cluster.serve()
            return nil
        }
        defer { try? cluster.channel.send(MPIOrder(kind: .stop)) }
        return try Runner.run(spec, options: options, cluster: cluster)
    }
}
