import Foundation
import MoECore
import MoEHDF5
import MoENN
@testable import MoERuntime
import MoEStore
import XCTest

/// `CheckpointStore`: one file per kept checkpoint, and `--resume` from the newest intact one
/// whatever happened to the others (truncated, garbage, a dataset missing).
final class CheckpointStoreTests: XCTestCase {
    private var layout: RunLayout!
    private let parameters = [Parameter(name: "w", shape: [2, 3]), Parameter(name: "b", shape: [3])]
    private lazy var optimizer = SGD(parameters: parameters)
    /// What `loadState` read last (the task state beside the model: here one number).
    private var state = -1.0

    override func setUpWithError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString)").path
        layout = RunLayout(directory: dir)
        try layout.create()
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: layout.directory) }

    /// Sets parameters and optimizer to values that identify `step`, then saves a checkpoint and
    /// waits until its file is on the disk (the store writes files on a thread of its own).
    private func save(_ store: inout CheckpointStore, step: Int, omit: String? = nil, toDisk: Bool = true) throws {
        for (i, p) in parameters.enumerated() { for j in 0..<p.value.count { p.value.data[j] = Float(step * 100 + i * 10 + j) } }
        for (_, t) in optimizer.state { for j in 0..<t.count { t.data[j] = Float(-step) } }
        optimizer.stepCount = step
        try store.save(parameters, optimizer, epoch: step / 10, batch: step % 10, toDisk: toDisk, writeState: { file in
            if omit != "window" { try file.createDataset("metrics/window", [Double(step)]) }
        }, writeEntry: { file, path in
            let model = try file.createGroup(path + "/model")
            for p in self.parameters where p.name != omit {
                try model.createDataset(p.name, from: UnsafeBufferPointer(p.value.buffer), shape: p.shape)
            }
            if omit != "optimizer" { try Checkpoint.writeOptimizer(self.optimizer, kind: .sgd, to: file, at: path + "/optimizer") }
        })
        try store.finishWriting()
    }

    private func restore(_ store: inout CheckpointStore) throws -> (position: (epoch: Int, batch: Int)?, warnings: [String]) {
        var warnings: [String] = []
        for p in parameters { p.value.fill(0) }
        let position = try store.restore(parameters, optimizer, isLead: true, warn: { warnings.append($0) }, loadState: { file in
            self.state = try file.read("metrics/window", as: Double.self).values[0]
        }, loadEntry: { file, path in
            try Checkpoint.loadParameters(into: self.parameters, from: file, at: path + "/model")
            try Checkpoint.loadOptimizer(into: self.optimizer, from: file, at: path + "/optimizer")
        })
        return (position, warnings)
    }

    private func assertLoaded(step: Int, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(optimizer.stepCount, step, file: file, line: line)
        XCTAssertEqual(parameters[1].value.data[2], Float(step * 100 + 12), file: file, line: line)
        XCTAssertEqual(optimizer.state[0].tensor.data[0], Float(-step), file: file, line: line)
        XCTAssertEqual(state, Double(step), "the task state comes from the same file", file: file, line: line)
    }

    private func store(keep: Int = 3) -> CheckpointStore { CheckpointStore(layout: layout, task: "train", keep: keep) }
    private func path(_ step: Int) -> String { layout.tasksDirectory + "/train.checkpoints/\(step).h5" }

    func testKeepsOneFileForEachOfTheNewestCheckpoints() throws {
        var s = store(keep: 2)
        XCTAssertNil(try restore(&s).position, "nothing to resume from: a fresh start")
        for step in [10, 20, 30] { try save(&s, step: step) }
        XCTAssertEqual(s.steps, [20, 30])
        XCTAssertEqual(s.entries.map(\.step), [20, 30])
        let file = try H5File.open(path(30))
        XCTAssertEqual(try file.openGroup("checkpoints").children(), ["30"], "each file holds its own checkpoint only")
        XCTAssertEqual(try file.openGroup("checkpoints/30").attribute("batch", as: Int64.self), 0)

        var resumed = store(keep: 2)
        let r = try restore(&resumed)
        XCTAssertEqual(r.position?.epoch, 3)
        XCTAssertEqual(r.warnings, [])
        assertLoaded(step: 30)
        XCTAssertEqual(resumed.entries.map(\.step), [20, 30], "the older kept checkpoint is read back for the task file")
        XCTAssertEqual(resumed.entries[0].params[0].data[0], 2000)
    }

    func testATruncatedNewestCheckpointIsSkippedAndRemoved() throws {
        var s = store()
        for step in [10, 20, 30] { try save(&s, step: step) }
        let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: path(30))[.size] as? Int)
        XCTAssertEqual(truncate(path(30), off_t(size / 2)), 0)
        var resumed = store()
        let r = try restore(&resumed)
        XCTAssertEqual(r.warnings, ["warning: tasks/train.checkpoints/30.h5 is corrupt (truncated file); resuming from step 20"])
        XCTAssertEqual(r.position?.epoch, 2)
        assertLoaded(step: 20)
        XCTAssertEqual(resumed.steps, [10, 20], "the corrupt newer file is gone: the run redoes its steps")
        XCTAssertEqual(resumed.entries.map(\.step), [10, 20])
    }

    func testGarbageAndMissingDatasetsMakeACheckpointCorrupt() throws {
        var s = store(keep: 5)
        try save(&s, step: 10)
        try save(&s, step: 20, omit: "window")
        try save(&s, step: 30, omit: "optimizer")
        try save(&s, step: 40, omit: "b")
        try save(&s, step: 50)
        try Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7919) }).write(to: URL(fileURLWithPath: path(50)))
        var resumed = store(keep: 5)
        let r = try restore(&resumed)
        XCTAssertEqual(r.warnings, [
            "warning: tasks/train.checkpoints/50.h5 is corrupt (file signature not found); resuming from step 10",
            "warning: tasks/train.checkpoints/40.h5 is corrupt (/checkpoints/40/model/b: missing); resuming from step 10",
            "warning: tasks/train.checkpoints/30.h5 is corrupt (/checkpoints/30/optimizer: missing); resuming from step 10",
            "warning: tasks/train.checkpoints/20.h5 is corrupt (/metrics/window: missing); resuming from step 10",
        ])
        assertLoaded(step: 10)
        XCTAssertEqual(resumed.steps, [10])
    }

    func testACorruptOlderCheckpointIsNoLongerKept() throws {
        var s = store()
        for step in [10, 20, 30] { try save(&s, step: step) }
        XCTAssertEqual(truncate(path(20), 100), 0)
        var resumed = store()
        let r = try restore(&resumed)
        XCTAssertEqual(r.warnings, ["warning: tasks/train.checkpoints/20.h5 is corrupt (truncated file); it is no longer kept"])
        assertLoaded(step: 30)
        XCTAssertEqual(resumed.entries.map(\.step), [10, 30])
    }

    func testNoIntactCheckpointEndsWithTheForceHint() throws {
        var s = store()
        for step in [10, 20] { try save(&s, step: step) }
        XCTAssertEqual(truncate(path(20), 100), 0)
        try Data("not hdf5".utf8).write(to: URL(fileURLWithPath: path(10)))
        var resumed = store()
        XCTAssertThrowsError(try restore(&resumed)) { error in
            XCTAssertEqual("\(error)", "train: no intact checkpoint to resume from in tasks/train.checkpoints "
                + "(tasks/train.checkpoints/20.h5: truncated file; tasks/train.checkpoints/10.h5: file signature not found); "
                + "rerun with --force to start the run over")
            XCTAssertEqual((error as? RuntimeError)?.exitCode, 1)
        }
        XCTAssertEqual(resumed.steps, [10, 20], "nothing is removed when nothing can be resumed")
    }

    /// A run interrupted by moe-run before one file per checkpoint (`tasks/train.partial.h5`
    /// holding every kept checkpoint and the newest one's state) still resumes; the first new
    /// checkpoint replaces the old file.
    func testResumesFromTheOldSingleFileLayout() throws {
        var s = store()
        try save(&s, step: 10)
        try save(&s, step: 20)
        let new = path(20), old = path(10)
        try H5File.createAtomically(layout.partialFile("train")) { legacy in
            try legacy.createDataset("metrics/window", [20.0])
            for (step, source) in [(10, old), (20, new)] {
                let from = try H5File.open(source)
                let model = try legacy.createGroup("checkpoints/\(step)/model")
                for p in parameters { try model.createDataset(p.name, try from.read("checkpoints/\(step)/model/\(p.name)", as: Float.self).values, shape: p.shape) }
                let optimizer = try legacy.createGroup("checkpoints/\(step)/optimizer")
                try optimizer.setAttribute("step", Int64(step))
                for (name, t) in self.optimizer.state {
                    try optimizer.createDataset(name, try from.read("checkpoints/\(step)/optimizer/\(name)", as: Float.self).values, shape: t.shape)
                }
                for key in ["epoch", "batch"] {
                    try legacy.openGroup("checkpoints/\(step)").setAttribute(key, try from.openGroup("checkpoints/\(step)").attribute(key, as: Int64.self))
                }
            }
        }
        try FileManager.default.removeItem(atPath: layout.tasksDirectory + "/train.checkpoints")
        var resumed = store()
        XCTAssertTrue(resumed.exists)
        let r = try restore(&resumed)
        XCTAssertEqual(r.warnings, [])
        assertLoaded(step: 20)
        XCTAssertEqual(resumed.entries.map(\.step), [10, 20])
        try save(&resumed, step: 30)
        XCTAssertFalse(FileManager.default.fileExists(atPath: layout.partialFile("train")))
        XCTAssertEqual(resumed.steps, [30])
        XCTAssertEqual(resumed.entries.map(\.step), [10, 20, 30])
    }

    func testAnInterruptedWriteIsNoCheckpoint() throws {
        try FileManager.default.createDirectory(atPath: layout.tasksDirectory + "/train.checkpoints", withIntermediateDirectories: true)
        try Data("half".utf8).write(to: URL(fileURLWithPath: path(10) + ".tmp"))
        var s = store()
        XCTAssertFalse(s.exists)
        XCTAssertNil(try restore(&s).position)
    }

    /// A file the writer thread fails to write (here its directory vanished after the bytes were
    /// built) fails the task at the next checkpoint or at the end, naming the file, and leaves no
    /// tmp file; the checkpoints already on the disk stay.
    func testAFailedBackgroundWriteIsThrownNamingTheFile() throws {
        var s = store()
        try save(&s, step: 10)
        let directory = layout.tasksDirectory + "/train.checkpoints"
        let moved = directory + ".moved"
        optimizer.stepCount = 20
        try s.save(parameters, optimizer, epoch: 2, batch: 0, writeState: { _ in
            try FileManager.default.moveItem(atPath: directory, toPath: moved)
        }, writeEntry: { file, path in try file.createGroup(path + "/model").close() })
        XCTAssertThrowsError(try s.finishWriting()) { error in
            XCTAssertEqual("\(error)", "no such file or directory while writing \(directory)/20.h5")
        }
        XCTAssertThrowsError(try s.finishWriting(), "the failure stays: the task must not go on as if it were saved")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: moved), ["10.h5"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory))
    }

    /// Checkpoints kept in memory only (the default cadence between files) go into the next file
    /// written, so `--resume` from it has the same kept checkpoints as the run had; files of
    /// checkpoints no longer kept are removed once it is on the disk.
    func testCheckpointsKeptInMemoryGoIntoTheNextFile() throws {
        var s = store(keep: 3)
        try save(&s, step: 10)
        for step in [20, 30] { try save(&s, step: step, toDisk: false) }
        XCTAssertEqual(s.steps, [10], "kept in memory only: no file")
        try save(&s, step: 40)
        XCTAssertEqual(s.steps, [40], "10 is no longer kept")
        XCTAssertEqual(try H5File.open(path(40)).openGroup("checkpoints").children().sorted(), ["20", "30", "40"])
        var again = store(keep: 3)
        let r = try restore(&again)
        XCTAssertEqual(r.warnings, [])
        XCTAssertEqual(r.position?.epoch, 4)
        assertLoaded(step: 40)
        XCTAssertEqual(again.entries.map(\.step), [20, 30, 40])
        XCTAssertEqual(again.entries[0].params[1].data[2], Float(20 * 100 + 12))
        XCTAssertEqual(again.entries[1].state[0].data[0], Float(-30))
    }
}
