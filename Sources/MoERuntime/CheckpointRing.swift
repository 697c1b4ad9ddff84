import MoECore
import MoEHDF5
import MoENN

/// The last `keep` checkpoints of a training task, held in memory and written whole into the
/// task's partial and final files as `/checkpoints/<step>/…` with the data position (attributes
/// `step`, `epoch`, `batch`: the next batch to train on). Shared by every training task, so
/// checkpointing and exact resume work the same way everywhere.
struct CheckpointRing {
    struct Entry {
        var step: Int, epoch: Int, batch: Int
        var params: [Tensor], state: [Tensor]
    }

    let keep: Int
    private(set) var entries: [Entry] = []

    init(keep: Int) { self.keep = keep }

    /// Copies the current state as the newest checkpoint; false when this step is already kept.
    mutating func record(_ parameters: [Parameter], _ optimizer: Optimizer, epoch: Int, batch: Int) -> Bool {
        if entries.last?.step == optimizer.stepCount { return false }
        entries.append(Entry(step: optimizer.stepCount, epoch: epoch, batch: batch,
                             params: parameters.map { $0.value.copy() }, state: optimizer.state.map { $0.tensor.copy() }))
        if entries.count > keep { entries.removeFirst(entries.count - keep) }
        return true
    }

    /// Writes every kept checkpoint: each is loaded into `parameters` and `optimizer` in turn and
    /// `writeEntry(path)` stores what the task needs under `checkpoints/<step>`; the live state is
    /// put back afterwards.
    func write(_ parameters: [Parameter], _ optimizer: Optimizer, to file: H5File,
               writeEntry: (String) throws -> Void) throws {
        let liveParams = parameters.map { $0.value.copy() }
        let liveState = optimizer.state.map { $0.tensor.copy() }
        let liveStep = optimizer.stepCount
        defer { load(liveParams, liveState, step: liveStep, into: parameters, optimizer) }
        for c in entries {
            load(c.params, c.state, step: c.step, into: parameters, optimizer)
            let path = "checkpoints/\(c.step)"
            try writeEntry(path)
            let group = try file.openGroup(path)
            try group.setAttribute("step", Int64(c.step))
            try group.setAttribute("epoch", Int64(c.epoch))
            try group.setAttribute("batch", Int64(c.batch))
        }
    }

    /// Reads every checkpoint of `file` (oldest first) through `loadEntry(path)`, which fills
    /// `parameters` and `optimizer`; leaves the newest loaded and returns its data position.
    mutating func restore(from file: H5File, path: String, _ parameters: [Parameter], _ optimizer: Optimizer,
                          loadEntry: (String) throws -> Void) throws -> (epoch: Int, batch: Int) {
        let steps = try file.openGroup("checkpoints").children().compactMap(Int.init).sorted()
        guard !steps.isEmpty else { throw RuntimeError.io(path: path, message: "holds no checkpoint") }
        entries = []
        var position = (0, 0)
        for step in steps {
            let entry = "checkpoints/\(step)"
            try loadEntry(entry)
            let group = try file.openGroup(entry)
            position = (Int(try group.attribute("epoch", as: Int64.self)), Int(try group.attribute("batch", as: Int64.self)))
            entries.append(Entry(step: step, epoch: position.0, batch: position.1,
                                 params: parameters.map { $0.value.copy() }, state: optimizer.state.map { $0.tensor.copy() }))
        }
        return position
    }

    private func load(_ params: [Tensor], _ state: [Tensor], step: Int, into parameters: [Parameter], _ optimizer: Optimizer) {
        for (p, v) in zip(parameters, params) { p.value.copy(from: v) }
        for (s, v) in zip(optimizer.state, state) { s.tensor.copy(from: v) }
        optimizer.stepCount = step
    }
}
