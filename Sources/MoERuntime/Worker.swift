import CProcess
import Foundation
import MoEComm
import MoEData
import MoEHDF5
import MoEPlan
import MoESpec
#if canImport(Glibc)
import Glibc
#endif

/// The worker side of the scheduler: `moe-run worker --run-dir DIR --task ID` runs exactly one
/// task of an existing run in this (freshly exec'd) process.
///
/// The spec comes from `DIR/run.h5`: the resolved YAML in `/spec`, with relative paths resolved
/// against the `spec_directory` attribute (the absolute directory of the spec file the run was
/// started from). Progress and results are lines on stdout, which the scheduler logs; lines only
/// for the log file are appended to `DIR/log.txt` directly.
public enum Worker {
    /// Environment variable holding the scheduler's pid: a worker whose parent is already
    /// another process (the scheduler died before the worker started) stops at once.
    public static let parentVariable = "MOE_RUN_SCHEDULER_PID"

    /// The arguments (after argv[0]) the scheduler starts a task's process with.
    public static func arguments(runDirectory: String, taskID: String) -> [String] {
        ["worker", "--run-dir", runDirectory, "--task", taskID]
    }

    /// (run directory, task id) when `arguments` are exactly `arguments(runDirectory:taskID:)`'s
    /// form (the CLI then skips its argument parser), else nil.
    public static func parse(_ arguments: [String]) -> (runDirectory: String, taskID: String)? {
        guard arguments.count == 5, arguments == Self.arguments(runDirectory: arguments[2], taskID: arguments[4]) else { return nil }
        return (arguments[2], arguments[4])
    }

    /// Runs task `taskID` of the run in `runDirectory`. Throws what the task throws
    /// (`RuntimeError.interrupted` after SIGINT/SIGTERM, with the task's state saved).
    public static func run(runDirectory: String, taskID: String) throws {
        watchParent()
        Interrupts.install()
        let layout = RunLayout(directory: runDirectory)
        let spec = try loadSpec(layout)
        H5Storage.deflateLevel = UInt32(spec.output.compression)
        guard let task = Planner.plan(spec).task(taskID) else {
            throw RuntimeError.usage("\(layout.runFile): the plan has no task \(taskID)")
        }
        let communicator = try groupCommunicator()
        // Rank 0 of a group speaks for it; the other ranks only report their errors.
        let log = communicator.rank == 0 ? RunLog(path: layout.logFile, quiet: false, infoToFile: false)
                                         : RunLog(path: nil, quiet: true, infoToFile: false)
        do {
            try perform(task, spec: spec, layout: layout, log: log, communicator: communicator)
        } catch let error as CollectiveError {
            throw RuntimeError.groupFailed(task: task.id, reason: error.description)
        }
    }

    /// Seconds a rank waits for a peer that neither arrives nor dies (`MOE_RUN_COLLECTIVE_TIMEOUT`,
    /// default 300: long enough for a peer writing a checkpoint; a dead peer is noticed at once).
    static var collectiveTimeout: Double {
        ProcessInfo.processInfo.environment["MOE_RUN_COLLECTIVE_TIMEOUT"].flatMap(Double.init) ?? 300
    }

    /// Whether data-parallel steps put a barrier before their all-reduces, so that waiting for the
    /// slowest rank is timed apart from moving data (`DataParallelGroup.barrierBeforeReducing`):
    /// `MOE_RUN_STEP_BARRIER=1`, set by `moe-bench --comm-only` for its data-parallel step table,
    /// never by a user. No bit of any result changes.
    public static let stepBarrierVariable = "MOE_RUN_STEP_BARRIER"
    static var stepBarrier: Bool { ProcessInfo.processInfo.environment[stepBarrierVariable] == "1" }

    /// This process's place in its task's group, from the scheduler's environment
    /// (`Scheduler.rankVariable`, …, and the group's memory at the inherited descriptor
    /// `Scheduler.groupDescriptorVariable`), or a group of one. The descriptor is closed once
    /// mapped: nothing this process starts inherits it, and the memory lives as long as the
    /// mapping.
    static func groupCommunicator() throws -> Communicator {
        let env = ProcessInfo.processInfo.environment
        guard let fd = env[Scheduler.groupDescriptorVariable].flatMap(Int32.init), let rank = env[Scheduler.rankVariable].flatMap(Int.init),
              let size = env[Scheduler.worldSizeVariable].flatMap(Int.init) else { return SoloCommunicator() }
        defer { close(fd) }
        do {
            return try SharedMemoryGroup(descriptor: fd, rank: rank, worldSize: size, timeout: collectiveTimeout)
        } catch {
            throw RuntimeError.io(path: "descriptor \(fd) (\(Scheduler.groupDescriptorVariable))", message: "cannot join the task's process group: \(error)")
        }
    }

    /// The run's spec as stored in its `run.h5`.
    static func loadSpec(_ layout: RunLayout) throws -> ExperimentSpec {
        let yaml: String, directory: String
        do {
            let file = try H5File.open(layout.runFile)
            yaml = try file.readString("spec")
            directory = try file.stringAttribute(RunFile.specDirectoryAttribute)
        } catch {
            throw RuntimeError.io(path: layout.runFile, message: "cannot read the run's spec: \(error)")
        }
        return try SpecLoader.loadResolved(yaml: yaml, file: layout.runFile + ":/spec", baseDirectory: directory)
    }

    /// Fault injection for the retry tests: `MOE_RUN_FAIL_ONCE=TASK:FILE` makes task TASK fail
    /// with a transient error (retried, as a crashed worker is) when it starts and FILE does not
    /// exist, creating FILE; once FILE exists the task runs normally. Under MPI a task runs inside
    /// its rank's process, whose death ends the whole job (§5.5), so this is how a test gives a
    /// task there a failure that a retry can fix. moe-run never sets it.
    public static let failOnceVariable = "MOE_RUN_FAIL_ONCE"

    static func failOnceIfAsked(_ task: String) throws {
        guard let value = ProcessInfo.processInfo.environment[failOnceVariable], let colon = value.firstIndex(of: ":"),
              value[..<colon] == task else { return }
        let marker = String(value[value.index(after: colon)...])
        let fd = open(marker, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { return }  // exists: a later attempt
        close(fd)
        throw RuntimeError.io(path: marker, message: "\(task): failure injected by \(failOnceVariable) (first attempt only)")
    }

    /// Runs one task in this process (the task code the scheduler's workers share).
    static func perform(_ task: PlanTask, spec: ExperimentSpec, layout: RunLayout, log: RunLog,
                        communicator: Communicator = SoloCommunicator()) throws {
        try failOnceIfAsked(task.id)
        TaskIdentity.stamp = (task.id, try TaskIdentity.identities(Planner.plan(spec), spec: spec)[task.id] ?? "")
        defer { TaskIdentity.stamp = nil }
        switch task.kind {
        case .data: try DataTask.run(spec: spec, layout: layout, log: log)
        case .train where spec.split.strategy == .layerwise:
            try trainStages(spec: spec, layout: layout, log: log, communicator: communicator)
        case .train where spec.lmSetup != nil && spec.split.strategy == .branch:
            try LMTrainTask(spec: spec, setup: spec.lmSetup!, layout: layout, log: log, role: .expert(try expertIndex(task, layout))).run()
        case .finetune where spec.lmSetup != nil: try LMTrainTask(spec: spec, setup: spec.lmSetup!, layout: layout, log: log, role: .finetune).run()
        case .train where spec.lmSetup != nil: try LMTrainTask(spec: spec, setup: spec.lmSetup!, layout: layout, log: log, communicator: communicator).run()
        case .pretrain where spec.lmSetup != nil: try LMTrainTask(spec: spec, setup: spec.lmSetup!, layout: layout, log: log, role: .pretrain).run()
        case .evaluate where spec.lmSetup != nil:
            try LMEvaluateTask.run(splits: spec.eval.splits.compactMap { TextSplit(rawValue: $0.rawValue) }, batchSize: spec.eval.batchSize,
                                   models: EvaluateTask.models(spec), layout: layout, log: log)
        case .pretrain: try TrainTask(spec: spec, layout: layout, log: log, role: .pretrain).run()
        case .train where spec.split.strategy == .branch:
            try TrainTask(spec: spec, layout: layout, log: log, role: .expert(try expertIndex(task, layout))).run()
        case .train: try TrainTask(spec: spec, layout: layout, log: log, role: .train, communicator: communicator).run()
        case .fuse: try FuseTask(spec: spec, layout: layout, log: log).run()
        case .finetune: try TrainTask(spec: spec, layout: layout, log: log, role: .finetune).run()
        case .evaluate: try EvaluateTask.run(spec: spec, layout: layout, log: log)
        }
        if Interrupts.requested { throw RuntimeError.interrupted(task: task.id, step: 0) }
    }

    /// The index i of branch task `expert-<i>`.
    static func expertIndex(_ task: PlanTask, _ layout: RunLayout) throws -> Int {
        guard let i = Int(task.id.dropFirst("expert-".count)), task.id == Planner.expertID(i) else {
            throw RuntimeError.usage("\(layout.runFile): task \(task.id) is not a branch expert")
        }
        return i
    }

    /// Dies with its scheduler: the kernel sends SIGKILL to this process when the scheduler
    /// ends (even by SIGKILL), so no worker is ever orphaned; if the scheduler is already gone
    /// (the worker was re-parented before it could ask), the worker exits at once.
    static func watchParent() {
        _ = moe_run_set_parent_death_signal(SIGKILL)
        if let expected = ProcessInfo.processInfo.environment[parentVariable].flatMap(Int32.init), getppid() != expected {
            _exit(137)
        }
    }
}
