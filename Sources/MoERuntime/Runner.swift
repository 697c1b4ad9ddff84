import Foundation
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
    public init(outputRoot: String? = nil, resume: Bool = false, force: Bool = false, quiet: Bool = false) {
        self.outputRoot = outputRoot
        self.resume = resume
        self.force = force
        self.quiet = quiet
    }
}

/// Runs a plan in this process, task after task in plan order (the forked-process scheduler
/// replaces this loop in issue 5). A task whose output file exists is complete and skipped.
public enum Runner {
    @discardableResult
    public static func run(_ spec: ExperimentSpec, options: RunOptions) throws -> RunLayout {
        try preflight(spec)
        let layout = RunLayout(spec: spec, outputRoot: options.outputRoot ?? spec.output.dir)
        let plan = Planner.plan(spec)
        H5Storage.deflateLevel = UInt32(spec.output.compression)
        var started = RunFile.now()
        let fm = FileManager.default
        if fm.fileExists(atPath: layout.directory) {
            let previous = RunFile.readHeader(layout)
            if options.force {
                try? fm.removeItem(atPath: layout.directory)
            } else if !options.resume {
                throw RuntimeError.runExists(dir: layout.directory, status: previous?.status ?? "unknown")
            } else if let previous {
                started = previous.started
            }
        }
        try layout.create()
        let log = RunLog(path: layout.logFile, quiet: options.quiet)
        if let header = RunFile.readHeader(layout), header.status == "complete", options.resume {
            log.info("\(spec.name): the run is complete; nothing to do")
            return layout
        }
        log.record("moe-run \(RunFile.version): run \(layout.directory)")
        try RunFile.write(spec: spec, plan: plan, layout: layout, header: .init(status: "running", started: started))
        Interrupts.install()
        do {
            for task in plan.tasks {
                if fm.fileExists(atPath: layout.taskFile(task.id)) {
                    log.info("\(task.id): complete, skipped")
                    continue
                }
                switch task.kind {
                case .data: try DataTask.run(spec: spec, layout: layout, log: log)
                case .pretrain: try TrainTask(spec: spec, layout: layout, log: log, role: .pretrain).run()
                case .train where spec.split.strategy == .layerwise: try LayerwiseTrainTask(spec: spec, layout: layout, log: log).run()
                case .train: try TrainTask(spec: spec, layout: layout, log: log, role: .train).run()
                case .evaluate: try EvaluateTask.run(spec: spec, layout: layout, log: log)
                }
                if Interrupts.requested { throw RuntimeError.interrupted(task: task.id, step: 0) }
            }
        } catch {
            let status: String
            if case RuntimeError.interrupted = error { status = "interrupted" } else { status = "failed" }
            log.record("error: \(error)")
            try? RunFile.write(spec: spec, plan: plan, layout: layout,
                               header: .init(status: status, started: started, finished: RunFile.now()))
            throw error
        }
        try RunFile.write(spec: spec, plan: plan, layout: layout,
                          header: .init(status: "complete", started: started, finished: RunFile.now()))
        log.record("complete")
        return layout
    }

    /// What the spec cannot tell but its data file can, checked before anything is written (exit
    /// 2): the `domain` router needs domain ids in the file (synthetic data always has them).
    static func preflight(_ spec: ExperimentSpec) throws {
        guard spec.moeConfig?.router == .domain, case .file(let f) = spec.data.source else { return }
        let data = f.resolvedFormat == .csv ? try Dataset.load(csv: f.resolvedPath) : try Dataset.load(hdf5: f.resolvedPath)
        if data.domain == nil { throw RuntimeError.missingDomains(path: f.path) }
    }
}
