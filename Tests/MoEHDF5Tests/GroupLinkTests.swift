import MoEHDF5
import XCTest

final class GroupLinkTests: HDF5TestCase {
    func testGroupsExistenceChildrenAndKinds() throws {
        let file = try H5File.create(path("groups.h5"))
        let deep = try file.createGroup("a/b/c")  // intermediate groups created
        XCTAssertEqual(deep.path, "/a/b/c")
        try deep.createDataset("x", [Float(1)])
        try file.createDataset("d/e/y", [Int64(2)])  // datasets create parents too
        XCTAssertTrue(file.exists("a"))
        XCTAssertTrue(file.exists("/a/b/c/x"))
        XCTAssertTrue(file.exists("/"))
        XCTAssertFalse(file.exists("a/missing/c"))
        XCTAssertFalse(file.exists("a/b/c/x/below"))
        XCTAssertEqual(try file.children(), ["a", "d"])
        XCTAssertEqual(try file.children(of: "a/b/c"), ["x"])
        let b = try file.openGroup("a/b")
        XCTAssertEqual(try b.children(), ["c"])
        XCTAssertEqual(b.absolutePath("c/x"), "/a/b/c/x")
        XCTAssertTrue(b.exists("c/x"))
        XCTAssertEqual(file.kind(of: "a/b"), .group)
        XCTAssertEqual(file.kind(of: "d/e/y"), .dataset)
        XCTAssertNil(file.kind(of: "nope"))
        XCTAssertNoThrow(try file.requireGroup("a/b"))
        XCTAssertEqual(try file.requireGroup("new/g").path, "/new/g")
        XCTAssertThrowsError(try file.createGroup("a/b"), "already exists")
        b.close()
        b.close()  // idempotent
    }

    func testSoftLinks() throws {
        let file = try H5File.create(path("soft.h5"))
        try file.createDataset("models/expert-0/w", [Float(1), 2, 3])
        try file.createSoftLink("models/final", target: "/models/expert-0")
        try file.createSoftLink("dangling", target: "/nowhere")
        XCTAssertEqual(try file.read("models/final/w", as: Float.self).values, [1, 2, 3])
        XCTAssertFalse(file.exists("dangling"))
        try file.deleteLink("dangling")
        XCTAssertEqual(try file.children(), ["models"])
    }

    func testExternalLinksResolveRelativeToTheLinkingFile() throws {
        // The target is named relative to the linking file's directory, not the working directory.
        let tasks = directory.appendingPathComponent("tasks")
        try FileManager.default.createDirectory(at: tasks, withIntermediateDirectories: true)
        let task = try H5File.create(tasks.appendingPathComponent("train.h5").path)
        try task.createDataset("metrics/loss", [0.5, 0.25])
        try task.setAttribute("status", "complete")
        task.close()

        let run = try H5File.create(path("run.h5"))
        try run.createExternalLink("tasks/train", file: "tasks/train.h5", object: "/")
        try run.createExternalLink("models/final", file: "tasks/train.h5", object: "/metrics")
        try run.createExternalLink("broken", file: "tasks/missing.h5", object: "/")
        run.close()

        XCTAssertNotEqual(FileManager.default.currentDirectoryPath, directory.path)
        let reopened = try H5File.open(path("run.h5"))
        XCTAssertEqual(try reopened.read("tasks/train/metrics/loss", as: Double.self).values, [0.5, 0.25])
        XCTAssertEqual(try reopened.read("models/final/loss", as: Double.self).values, [0.5, 0.25])
        XCTAssertEqual(try reopened.openGroup("tasks/train").stringAttribute("status"), "complete")
        XCTAssertEqual(try reopened.children(of: "tasks/train"), ["metrics"])
        XCTAssertEqual(reopened.kind(of: "tasks/train"), .group)
        XCTAssertFalse(reopened.exists("broken"))
        XCTAssertEqual(try reopened.children(), ["broken", "models", "tasks"])
    }
}
