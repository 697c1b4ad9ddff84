import Foundation
import MoECore
import MoEHDF5
import MoENN
import MoEStore

/// The kept checkpoints of a training task, shared by every training task so checkpointing and
/// exact resume work the same way everywhere.
///
/// On disk each checkpoint is one self-contained file, `tasks/<id>.checkpoints/<step>.h5`: the
/// task's state at that step (metrics so far, log windows, whatever `writeState` adds) and
/// `/checkpoints/<step>/{model, optimizer, …}` with the data position (attributes `step`, `epoch`,
/// `batch`: the next batch to train on). Each is written atomically (tmp, fsync, rename) and the
/// files of checkpoints no longer kept are removed only after the new one is durable, so losing
/// or damaging one file never loses the others: `--resume` goes on from the newest intact one.
/// The file is built here and put on the disk by `CheckpointWriter`, on a thread of its own
/// (training goes on during the `fsync`, which cost more than training on a busy VM).
/// Writing one checkpoint costs one file of one checkpoint, whatever `keep` is, and no gzip
/// (`output.compression` applies to the finished task file, which lives on).
///
/// In memory the newest `keep` checkpoints are copied (parameters and optimizer state), because
/// the finished task file `tasks/<id>.h5` lists them all under `/checkpoints/<step>` (`write`).
struct CheckpointStore {
    struct Entry {
        var step: Int, epoch: Int, batch: Int
        var params: [Tensor], state: [Tensor]
    }

    let task: String
    let keep: Int
    /// `tasks/<id>.checkpoints`, absolute.
    let directory: String
    /// The same, relative to the run directory (for messages).
    let name: String
    /// `tasks/<id>.partial.h5` of moe-run before one file per checkpoint: every kept checkpoint
    /// in one file with the state of the newest. Still resumed from; removed by the first new
    /// checkpoint.
    let legacyFile: String
    private(set) var entries: [Entry] = []
    /// Writes the files, on a thread of its own (`CheckpointWriter`).
    private let writer = CheckpointWriter()

    init(layout: RunLayout, task: String, keep: Int) {
        self.task = task
        self.keep = keep
        directory = layout.checkpointDirectory(task)
        name = "tasks/\(task).checkpoints"
        legacyFile = layout.partialFile(task)
    }

    func file(_ step: Int) -> String { directory + "/\(step).h5" }
    func displayName(_ step: Int) -> String { name + "/\(step).h5" }

    /// The steps of the checkpoint files on disk, oldest first. A `<step>.h5.tmp` left by a write
    /// that was cut short is no checkpoint.
    var steps: [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { $0.hasSuffix(".h5") ? Int($0.dropLast(3)) : nil }.filter { $0 >= 0 }.sorted()
    }

    /// True when there is something to resume from (an intact checkpoint or a damaged one).
    var exists: Bool { !steps.isEmpty || FileManager.default.fileExists(atPath: legacyFile) }

    /// Keeps the current state as the newest checkpoint (lead rank only) and, with `toDisk`, writes
    /// its file: `writeState(file)` stores the task's state, `writeEntry(file, "checkpoints/<step>")`
    /// the model and optimizer. Without `toDisk` the checkpoint is kept in memory only (the
    /// finished task file lists it; `--resume` cannot start from it): the default cadence keeps
    /// one at every epoch but writes a file only every `TrainingLoop.checkpointSeconds`. The kept
    /// checkpoints older than this one that have no file of their own go into this file too, so
    /// `--resume` finds the same kept checkpoints as the run had (`readOlder`). Does nothing when
    /// this step is already kept.
    ///
    /// With `kept: false` the file is a *resume point* only: it lets `--resume` go on from this
    /// step, but the checkpoint is not one of the kept ones (attribute `resume_only` = 1), so what
    /// the finished task file lists never depends on when the files happened to be written (the
    /// time-based cadence of step-budget runs, `TrainingLoop`).
    mutating func save(_ parameters: [Parameter], _ optimizer: Optimizer, epoch: Int, batch: Int, toDisk: Bool = true,
                       kept: Bool = true,
                       writeState: (H5File) throws -> Void, writeEntry: (H5File, String) throws -> Void) throws {
        let step = optimizer.stepCount
        if entries.last?.step == step { return }
        if kept {
            entries.append(Entry(step: step, epoch: epoch, batch: batch,
                                 params: parameters.map { $0.value.copy() }, state: optimizer.state.map { $0.tensor.copy() }))
            if entries.count > keep { entries.removeFirst(entries.count - keep) }
        }
        guard toDisk else { return }
        // errno as for any write, so a full disk here is a permanent failure too (Failure).
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw HDF5Error.system(path: directory, operation: "creating", code: errno)
        }
        try writer.finish()  // the previous file is on the disk: `steps` lists what is there
        let onDisk = steps
        let withoutFile = Set((kept ? entries.dropLast() : entries[...]).map(\.step)).subtracting(onDisk)
        let path = file(step)
        let bytes = try H5Storage.uncompressed {  // the file lives only while the task runs
            try H5File.image(of: path) { file in
                try file.setTaskAttributes(task, partial: true)
                try writeState(file)
                try write(parameters, optimizer, to: file, only: withoutFile) { path in try writeEntry(file, path) }
                let path = "checkpoints/\(step)"
                try writeEntry(file, path)  // the live state is the newest checkpoint
                try Self.setPosition(of: file, path, step: step, epoch: epoch, batch: batch)
                if !kept { try file.openGroup(path).setAttribute(Self.resumeOnly, Int64(1)) }
            }
        }
        let kept = Set(entries.map(\.step))
        let stale = onDisk.filter { !kept.contains($0) }.map { file($0) } + [legacyFile]
        try writer.submit(bytes, to: path, thenRemove: stale)
    }

    /// Waits until the newest checkpoint is on the disk; throws a failed write's error (e.g. a
    /// full disk, naming the checkpoint file). Before the task file, and before an interrupted
    /// task exits.
    func finishWriting() throws { try writer.finish() }

    /// Waits for a write in flight, whatever became of it: a task failing for another reason.
    func settle() { writer.settle() }

    /// Resumes from the newest intact checkpoint file: `loadEntry(file, "checkpoints/<step>")`
    /// fills `parameters` and `optimizer`, `loadState(file)` the rest of the task's state; any
    /// error of either (a truncated file, garbage, a missing dataset) makes the file corrupt,
    /// and the next older one is tried. Returns the data position, or nil when there is no
    /// checkpoint (a fresh start). Throws `noIntactCheckpoint` when every one is corrupt.
    ///
    /// The lead rank (`isLead`) says which files are corrupt (one `warn` line each, naming the
    /// file relative to the run directory), removes those newer than the
    /// checkpoint resumed from (the run redoes their steps), and reads the older kept ones back
    /// for the finished task file; the other ranks of a group only load the same checkpoint.
    mutating func restore(_ parameters: [Parameter], _ optimizer: Optimizer, isLead: Bool, warn: (String) -> Void,
                          loadState: (H5File) throws -> Void,
                          loadEntry: (H5File, String) throws -> Void) throws -> (epoch: Int, batch: Int)? {
        entries = []
        var candidates = steps.reversed().map { (step: $0, path: file($0), name: displayName($0)) }
        if candidates.isEmpty, FileManager.default.fileExists(atPath: legacyFile) {
            candidates = [(Self.newestStep(in: legacyFile) ?? -1, legacyFile, "tasks/\(task).partial.h5")]
        }
        guard !candidates.isEmpty else { return nil }
        var corrupt: [(name: String, reason: String)] = []
        for (index, c) in candidates.enumerated() {
            let entry: Entry
            do {
                let file = try H5File.open(c.path)
                entry = try Self.read(file, step: c.step, parameters, optimizer, loadEntry)
                try loadState(file)
            } catch {
                corrupt.append((c.name, Self.reason(error, file: c.path)))
                continue
            }
            guard isLead else { return (entry.epoch, entry.batch) }
            for bad in corrupt { warn("warning: \(bad.name) is corrupt (\(bad.reason)); resuming from step \(c.step)") }
            for newer in candidates[..<index] { unlink(newer.path) }
            // A resume point is not a kept checkpoint: the older ones are all kept.
            let resumeOnly = Self.isResumeOnly(c.path, step: c.step)
            entries = readOlder(than: c.step, in: c.path, count: resumeOnly ? keep : keep - 1, parameters, optimizer, warn: warn, loadEntry)
                + (resumeOnly ? [] : [entry])
            load(entry, into: parameters, optimizer)
            return (entry.epoch, entry.batch)
        }
        throw RuntimeError.noIntactCheckpoint(task: task, directory: name, corrupt: corrupt.map { "\($0.name): \($0.reason)" })
    }

    /// The kept checkpoints older than `step`, oldest first, loaded through `parameters` and
    /// `optimizer` (the caller loads the newest back): from the file resumed from when it holds
    /// them (those kept in memory only when it was written, or the legacy file that holds them
    /// all), else from their own files. A corrupt one is said and left out.
    private func readOlder(than step: Int, in path: String, count: Int, _ parameters: [Parameter], _ optimizer: Optimizer,
                           warn: (String) -> Void, _ loadEntry: (H5File, String) throws -> Void) -> [Entry] {
        let legacy = path == legacyFile
        let inFile = Set(Self.steps(in: path).filter { $0 < step })
        let older = (legacy ? inFile : inFile.union(steps.filter { $0 < step })).sorted()
        var out: [Entry] = []
        for s in older.suffix(count) {
            let source = inFile.contains(s) ? path : file(s)
            do {
                out.append(try Self.read(try H5File.open(source), step: s, parameters, optimizer, loadEntry))
            } catch {
                let what = !inFile.contains(s) ? displayName(s)
                    : "checkpoint \(s) of " + (legacy ? "tasks/\(task).partial.h5" : displayName(step))
                warn("warning: \(what) is corrupt (\(Self.reason(error, file: source))); it is no longer kept")
            }
        }
        return out
    }

    /// Writes every kept checkpoint (or those of `steps`) into `file`: each is loaded into `parameters`
    /// and `optimizer` in turn and `writeEntry(path)` stores what the task needs under
    /// `checkpoints/<step>`; the live state is put back afterwards.
    func write(_ parameters: [Parameter], _ optimizer: Optimizer, to file: H5File, only steps: Set<Int>? = nil,
               writeEntry: (String) throws -> Void) throws {
        let chosen = entries.filter { steps?.contains($0.step) ?? true }
        if chosen.isEmpty { return }
        let live = Entry(step: optimizer.stepCount, epoch: 0, batch: 0,
                         params: parameters.map { $0.value.copy() }, state: optimizer.state.map { $0.tensor.copy() })
        defer { load(live, into: parameters, optimizer) }
        for c in chosen {
            load(c, into: parameters, optimizer)
            let path = "checkpoints/\(c.step)"
            try writeEntry(path)
            try Self.setPosition(of: file, path, step: c.step, epoch: c.epoch, batch: c.batch)
        }
    }

    /// Removes the checkpoint files once the finished task file is written.
    func removeAll() {
        writer.settle()
        try? FileManager.default.removeItem(atPath: directory)
        unlink(legacyFile)
    }

    /// The attribute of `checkpoints/<step>` that marks a resume point (`save(kept: false)`).
    static let resumeOnly = "resume_only"

    /// Whether checkpoint `step` of the file at `path` is a resume point only.
    private static func isResumeOnly(_ path: String, step: Int) -> Bool {
        guard let file = try? H5File.open(path), let group = try? file.openGroup("checkpoints/\(step)") else { return false }
        return (try? group.attribute(resumeOnly, as: Int64.self)) == 1
    }

    private static func setPosition(of file: H5File, _ path: String, step: Int, epoch: Int, batch: Int) throws {
        let group = try file.openGroup(path)
        try group.setAttribute("step", Int64(step))
        try group.setAttribute("epoch", Int64(epoch))
        try group.setAttribute("batch", Int64(batch))
    }

    /// Loads `checkpoints/<step>` of `file` and copies it; the optimizer must say the same step.
    private static func read(_ file: H5File, step: Int, _ parameters: [Parameter], _ optimizer: Optimizer,
                             _ loadEntry: (H5File, String) throws -> Void) throws -> Entry {
        let path = "checkpoints/\(step)"
        try loadEntry(file, path)
        guard optimizer.stepCount == step else {
            throw RuntimeError.io(path: file.filePath, message: "\(path)/optimizer is at step \(optimizer.stepCount)")
        }
        let group = try file.openGroup(path)
        return Entry(step: step, epoch: Int(try group.attribute("epoch", as: Int64.self)),
                     batch: Int(try group.attribute("batch", as: Int64.self)),
                     params: parameters.map { $0.value.copy() }, state: optimizer.state.map { $0.tensor.copy() })
    }

    private func load(_ entry: Entry, into parameters: [Parameter], _ optimizer: Optimizer) {
        for (p, v) in zip(parameters, entry.params) { p.value.copy(from: v) }
        for (s, v) in zip(optimizer.state, entry.state) { s.tensor.copy(from: v) }
        optimizer.stepCount = entry.step
    }

    private static func steps(in path: String) -> [Int] {
        guard let file = try? H5File.open(path), let names = try? file.openGroup("checkpoints").children() else { return [] }
        return names.compactMap(Int.init).sorted()
    }

    private static func newestStep(in path: String) -> Int? { steps(in: path).last }

    /// Why a checkpoint file could not be read, in a few words and without its path:
    /// "truncated file", "file signature not found", "/checkpoints/580/model/head/weight: missing".
    static func reason(_ error: Error, file: String) -> String {
        var text: String
        switch error {
        case HDF5Error.file(_, _, let message): text = String(message.prefix { $0 != ":" })
        case HDF5Error.notFound(_, let object): text = "\(object): missing"
        default:
            text = "\(error)"
            if text.hasPrefix(file) { text = String(text.dropFirst(file.count).drop { $0 == ":" || $0 == " " }) }
        }
        return String(text.prefix { $0 != "\n" })
    }
}
