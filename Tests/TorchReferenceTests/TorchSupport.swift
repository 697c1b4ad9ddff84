import Foundation
import XCTest
import MoECore
import MoEHDF5
import MoENN

/// What the PyTorch reference checks share: finding the torch Python (or skipping, with the
/// reason, when there is none), the scripts in Tests/python/, and running a tool.
enum TorchSupport {
    /// `MOE_RUN_TORCH_PYTHON` (a Python with torch, h5py and numpy; `make test` and
    /// `make check-torch` set it). Skips when it is unset or `MOE_RUN_SKIP_TORCH=1`.
    static func python() throws -> String {
        let env = ProcessInfo.processInfo.environment
        if env["MOE_RUN_SKIP_TORCH"] == "1" {
            throw XCTSkip("torch reference check skipped (MOE_RUN_SKIP_TORCH=1)")
        }
        guard let python = env["MOE_RUN_TORCH_PYTHON"], !python.isEmpty else {
            throw XCTSkip("torch reference check skipped (MOE_RUN_TORCH_PYTHON is not set: run `make check-torch`, or set MOE_RUN_SKIP_TORCH=1)")
        }
        return python
    }

    /// A script in Tests/python/, found from this file's path.
    static func script(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("python/" + name)
    }

    /// Writes one HDF5 file per case (`write(name, path)`) into a temporary directory (or
    /// `MOE_RUN_TORCH_KEEP=DIR`, kept), runs `Tests/python/<script>` on all of them, and asserts
    /// its exit status, one "case NAME: ok" line per case and the closing "ok:" line. The files
    /// are removed when the check passed and kept (and named) when it failed.
    static func check(script: String, cases: [String], file: StaticString = #filePath, line: UInt = #line,
                      write: (_ name: String, _ path: String) throws -> Void) throws {
        let python = try python()
        let fm = FileManager.default
        let keep = ProcessInfo.processInfo.environment["MOE_RUN_TORCH_KEEP"]
        let dir = keep.map { URL(fileURLWithPath: $0) }
            ?? fm.temporaryDirectory.appendingPathComponent("moe-torch-reference-\(getpid())")
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        var passed = false
        defer { if keep == nil && passed { try? fm.removeItem(at: dir) } }

        var files: [String] = []
        for name in cases {
            let path = dir.appendingPathComponent("\(name).h5").path
            try write(name, path)
            files.append(path)
        }
        let started = Date()
        guard let (status, output) = run(python, [Self.script(script).path] + files) else {
            return XCTFail("could not start \(python)", file: file, line: line)
        }
        print(output, terminator: output.hasSuffix("\n") ? "" : "\n")
        print("\(script): \(files.count) cases checked in " + String(format: "%.1f s", Date().timeIntervalSince(started)))
        let lines = output.split(separator: "\n").map(String.init)
        XCTAssertEqual(status, 0, "\(script) failed (files kept in \(dir.path)):\n\(output)", file: file, line: line)
        for name in cases {
            XCTAssertTrue(lines.contains { $0.hasPrefix("case \(name): ok") }, "no ok line for \(name):\n\(output)",
                          file: file, line: line)
        }
        XCTAssertTrue(lines.contains { $0.hasPrefix("ok:") }, "no closing ok line:\n\(output)", file: file, line: line)
        passed = status == 0 && lines.contains { $0.hasPrefix("ok:") }
        if !passed { print("torch reference files kept in \(dir.path)") }
    }

    /// Writes `t` as a contiguous dataset `name` with its shape.
    static func put(_ file: H5File, _ name: String, _ t: Tensor) throws {
        try file.createDataset(name, from: UnsafeBufferPointer(t.buffer), shape: t.shape, storage: .contiguous)
    }

    /// Writes a layer's check: every parameter and its gradient under its name without
    /// `<prefix>/` (e.g. `router/weight` and `grad/router/weight`), then `x`, `dy`, `y`, `dx`.
    static func putLayer(_ file: H5File, _ parameters: [Parameter], prefix: String,
                         x: Tensor, dy: Tensor, y: Tensor, dx: Tensor) throws {
        for p in parameters {
            let name = String(p.name.dropFirst(prefix.count + 1))
            try put(file, name, p.value)
            try put(file, "grad/" + name, p.grad)
        }
        for (name, t) in [("x", x), ("dy", dy), ("y", y), ("dx", dx)] { try put(file, name, t) }
    }

    /// Runs a tool to completion, stdout and stderr merged.
    static func run(_ tool: String, _ arguments: [String]) -> (status: Int32, output: String)? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
