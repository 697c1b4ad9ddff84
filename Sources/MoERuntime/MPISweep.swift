import Foundation
import MoECore
import MoEMPI

/// `mpirun -np N moe-run sweep SPEC.yaml`: the trials of a sweep over N ranks (ARCHITECTURE §5.5,
/// independent tasks go to free ranks). The valid trials are dealt round robin, in trial order:
/// rank r runs the r-th, (r+N)-th, … as `moe-run sweep` runs a trial (`SweepRunner.runTrials`:
/// its own `moe-run SPEC --set … --resume --quiet` process on the rank's machine, with the
/// launch's MPI variables taken out, so the trial is a plain run with the shm backend and its
/// share of that machine's cores). Rank 0 then gathers every rank's results and writes the
/// sweep's summary. A trial's results do not depend on the rank that ran it.
public enum MPISweep {
    /// On rank 0 the sweep's outcome (as `SweepRunner.run`); nil on the other ranks.
    public static func run(_ plan: SweepPlan, options: SweepOptions, say: (String) -> Void) throws -> SweepOutcome? {
        let world = try MPIWorld.initialize()
        defer { world.finalize() }
        Interrupts.install()
        let cluster = try MPICluster(world: world)
        let valid = plan.trials.filter { $0.spec != nil }.map(\.number)
        let mine = Set(valid.enumerated().filter { $0.offset % world.size == world.rank }.map(\.element))
        let ranksHere = max(1, cluster.hosts.filter { $0 == cluster.hosts[world.rank] }.count)
        var one = options
        one.jobs = 1
        let run = try SweepRunner.runTrials(plan, options: one, only: mine, environment: { env in
            for key in env.keys where isLaunchVariable(key) { env[key] = nil }
            env[BLASEnvironment.coresVariable] = String(max(1, BLASEnvironment.cores / ranksHere))
        }, say: say)
        let gathered = try cluster.channel.gather(Array(try JSONEncoder().encode(run)))
        guard let gathered else { return nil }
        var all = SweepRunner.TrialsRun()
        for (rank, bytes) in gathered.enumerated() {
            let part: SweepRunner.TrialsRun
            do {
                part = try JSONDecoder().decode(SweepRunner.TrialsRun.self, from: Data(bytes))
            } catch {
                throw RuntimeError.usage("MPI: the trial results of rank \(rank) cannot be read (\(bytes.count) bytes): \(error)")
            }
            all.results.merge(part.results) { $1 }
            all.failures += part.failures
        }
        return try SweepRunner.finish(plan, options: options, all, say: say)
    }

    /// The variables an MPI launcher sets, which would make a trial's `moe-run` believe it is a
    /// rank of the job (`MPILaunchEnvironment.detect`).
    static func isLaunchVariable(_ key: String) -> Bool {
        key.hasPrefix("OMPI_") || key.hasPrefix("PMIX_") || key.hasPrefix("PMI_") || key == "SLURM_STEP_NUM_TASKS"
    }
}
