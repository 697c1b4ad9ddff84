import Foundation
import MoECore
import MoEData
import MoEHDF5
import MoEPlan
import MoESpec

/// How a run was asked for on the command line.
public struct RunOptions: Sendable {
    public var outputRoot: String?
    public var resume = false
    public var force = false
    public var quiet = false
    /// `--no-cache`: run every task, reuse none from other runs (`TaskCache`).
    public var noCache = false
    /// The directory relative paths in the spec are relative to (stored in run.h5 for workers);
    /// by default the current directory.
    public var specDirectory: String?
    /// The spec's keys without effect (`FILE:LINE:COL: KEY: message`), stored in run.h5's
    /// `warnings` attribute and log.txt (the command prints them).
    public var warnings: [String] = []
    public init(outputRoot: String? = nil, resume: Bool = false, force: Bool = false, quiet: Bool = false,
                specDirectory: String? = nil, warnings: [String] = [], noCache: Bool = false) {
        self.outputRoot = outputRoot
        self.noCache = noCache
        self.resume = resume
        self.force = force
        self.quiet = quiet
        self.specDirectory = specDirectory
        self.warnings = warnings
    }
}

/// Runs a plan: prepares the run directory and `run.h5`, then hands the tasks to the `Scheduler`,
/// which runs each in a worker process (`moe-run worker`), and records how the run ended.
public enum Runner {
    @discardableResult
    public static func run(_ spec: ExperimentSpec, options: RunOptions) throws -> RunLayout {
        try run(spec, options: options, cluster: nil)
    }

    /// `run` as rank 0 of an MPI run when `cluster` is given (`MPIRun`): the results root is
    /// first checked to be shared by every rank, and the tasks go to the ranks (`MPIScheduler`)
    /// instead of worker processes.
    static func run(_ spec: ExperimentSpec, options: RunOptions, cluster: MPICluster?) throws -> RunLayout {
        // The data's problems first (the user's to fix), then what this version cannot run yet.
        try Preflight.check(spec)
        try SupportGate.checkRunnable(spec)
        let (layout, isLegacy) = RunLayout.locate(spec: spec, outputRoot: options.outputRoot ?? spec.output.dir)
        let plan = Planner.plan(spec)
        H5Storage.deflateLevel = UInt32(spec.output.compression)
        var started = RunFile.now()
        if let cluster {
            try cluster.checkSharedDirectory(URL(fileURLWithPath: options.outputRoot ?? spec.output.dir).standardizedFileURL.path)
        }
        // The lock first: what is in the directory is only looked at, deleted or written by the
        // process holding it (a second moe-run exits 2 naming the holder).
        let lock = try RunLock.acquire(layout)
        defer { lock.release() }
        if layout.holdsRun() {
            let previous = RunFile.readHeader(layout)
            if options.force {
                try layout.removeAllButLock()
            } else if !options.resume {
                throw RuntimeError.runExists(dir: layout.directory, status: previous?.status ?? "unknown")
            } else if let previous {
                started = previous.started
            }
        }
        try layout.create()
        let log = RunLog(path: layout.logFile, quiet: options.quiet)
        if isLegacy {
            log.info("\(layout.directory): a run of this spec made by an older moe-run (run id scheme 1); using it")
        }
        if let header = RunFile.readHeader(layout), header.status == "complete", options.resume {
            log.info("\(spec.name): the run is complete; nothing to do")
            return layout
        }
        log.record("moe-run \(RunFile.version): run \(layout.directory)")
        for warning in options.warnings { log.record("warning: " + warning) }
        let specDirectory = URL(fileURLWithPath: options.specDirectory ?? ".").standardizedFileURL.path
        // The task cache (not under MPI yet): tasks reused before (a resumed run) stay recorded.
        let recorded = TaskCache.recorded(layout)
        let cache = options.noCache || cluster != nil ? nil
            : TaskCache(layout: layout, identities: try TaskIdentity.identities(plan, spec: spec), reused: recorded)
        let reused = { cache?.reused ?? recorded }
        try RunFile.write(spec: spec, plan: plan, layout: layout, specDirectory: specDirectory, warnings: options.warnings,
                          reused: reused(), header: .init(status: "running", started: started))
        Interrupts.install()
        let watch = cluster.map { MPIFaultWatch(cluster: $0, logPath: layout.logFile) }
        let startedAt = started
        watch?.recordFailure = { line in
            try? RunFile.write(spec: spec, plan: plan, layout: layout, specDirectory: specDirectory, warnings: options.warnings,
                               reused: reused(), header: .init(status: "failed", started: startedAt, finished: RunFile.now(), error: line))
        }
        do {
            if let cluster, let watch {
                try mpiScheduler(spec, plan: plan, layout: layout, log: log, quiet: options.quiet, cluster: cluster, watch: watch).run()
            } else {
                var scheduler = scheduler(spec, plan: plan, layout: layout, log: log, evidenceCache: cache != nil)
                if let cache {
                    scheduler.reuse = { cache.reuse($0) }
                    scheduler.claim = { cache.claim($0) }
                    scheduler.settled = { cache.release($0) }
                    // run.h5 records the reused tasks before any task starts (a killed run still knows on resume).
                    scheduler.afterReuse = {
                        cache.syncLinks()
                        try? RunFile.write(spec: spec, plan: plan, layout: layout, specDirectory: specDirectory, warnings: options.warnings,
                                           reused: cache.reused, header: .init(status: "running", started: startedAt))
                    }
                }
                try scheduler.run()
            }
        } catch {
            let status: String
            switch error {
            case RuntimeError.interrupted, RuntimeError.runInterrupted: status = "interrupted"
            default: status = "failed"
            }
            log.record("error: \(error)")
            // On a full disk this rewrite usually fits (the failed task's tmp file is gone); if
            // it does not, the previous run.h5 stays whole and the error line still says why.
            // Under MPI, not at the same time as the fault watch's own write (`finishing`).
            let finish = {
                try? RunFile.write(spec: spec, plan: plan, layout: layout, specDirectory: specDirectory, warnings: options.warnings,
                                   reused: reused(), header: .init(status: status, started: started, finished: RunFile.now(),
                                                 error: status == "failed" ? "\(error)" : nil))
                watch?.settle(line: "\(error)", code: (error as? RuntimeError)?.exitCode ?? 1)
            }
            if let watch { watch.finishing(finish) } else { finish() }
            throw error
        }
        let complete = {
            try RunFile.write(spec: spec, plan: plan, layout: layout, specDirectory: specDirectory, warnings: options.warnings,
                              reused: reused(), header: .init(status: "complete", started: started, finished: RunFile.now()))
            log.record("complete")
            watch?.settle(line: nil, code: 0)
        }
        if let watch { try watch.finishing(complete) } else { try complete() }
        return layout
    }

    /// The scheduler for `plan`: each task runs as `/proc/self/exe worker --run-dir DIR --task ID`
    /// with this process's environment plus `OPENBLAS_NUM_THREADS` = cores / workers (at least 1;
    /// the user's value when they set it, `BLASEnvironment.threadsValue`),
    /// the OpenBLAS core type already chosen (`BLASEnvironment`), and this process's pid.
    /// With `evidenceCache` (the run uses the task cache) fuse tasks may reuse the experts'
    /// evidence of another run (`FuseTask.ExpertEvidence`).
    static func scheduler(_ spec: ExperimentSpec, plan: Plan, layout: RunLayout, log: RunLog, evidenceCache: Bool = false) -> Scheduler {
        var environment = BLASEnvironment.currentEnvironment()
        environment[FuseTask.evidenceVariable] = evidenceCache ? "1" : nil
        if let threads = BLASEnvironment.threadsValue(environment: environment, cores: BLASEnvironment.cores, share: spec.parallelism.workers) {
            environment["OPENBLAS_NUM_THREADS"] = threads
        }
        environment[BLASEnvironment.marker] = "1"
        environment[Worker.parentVariable] = String(getpid())
        // Workers hand their progress lines to the scheduler, which draws them on a TTY.
        environment[RunLog.progressVariable] = log.drawsProgress ? "pipe" : nil
        let directory = URL(fileURLWithPath: layout.directory).standardizedFileURL.path
        return Scheduler(tasks: plan.tasks, workers: spec.parallelism.workers, retries: spec.parallelism.retries,
                         log: log, logPath: layout.logFile,
                         isComplete: { FileManager.default.fileExists(atPath: layout.taskFile($0)) },
                         command: { task in
                             Scheduler.Command(executable: "/proc/self/exe",
                                               arguments: ["moe-run"] + Worker.arguments(runDirectory: directory, taskID: task.id),
                                               environment: environment)
                         })
    }

    /// The MPI scheduler for `plan` (rank 0 of `cluster`), with rank 0's watch for a rank that dies.
    static func mpiScheduler(_ spec: ExperimentSpec, plan: Plan, layout: RunLayout, log: RunLog, quiet: Bool,
                             cluster: MPICluster, watch: MPIFaultWatch) -> MPIScheduler {
        watch.start()
        log.record("MPI: \(cluster.size) ranks: " + (0..<cluster.size).map(cluster.label).joined(separator: ", "))
        return MPIScheduler(tasks: plan.tasks, cluster: cluster, workers: spec.parallelism.workers, retries: spec.parallelism.retries,
                            quiet: quiet, directory: URL(fileURLWithPath: layout.directory).standardizedFileURL.path,
                            log: log, logPath: layout.logFile,
                            isComplete: { FileManager.default.fileExists(atPath: layout.taskFile($0)) },
                            onWave: { watch.setWave($0) })
    }
}
