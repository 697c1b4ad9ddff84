import Foundation
import MoEHDF5
import XCTest

/// `mpirun … moe-run …` as users start it, on this one machine: `--oversubscribe` (more ranks
/// than cores), `--mca btl tcp,self` (the TCP transport used between machines, not shared
/// memory), `--allow-run-as-root` (CI runs as root). Skips when Open MPI is not installed
/// (`make setup` installs it).
enum MPI {
    static let mpirun = "/usr/bin/mpirun"

    static func requireMPI() throws {
        guard FileManager.default.isExecutableFile(atPath: mpirun) else {
            throw XCTSkip("no \(mpirun); `make setup` installs openmpi-bin")
        }
    }

    /// Writes an executable wrapper script at `path` for mpirun's command line: world rank 1 runs
    /// `prefix "$@"` (e.g. in a namespace of its own), every other rank runs the command as it is.
    static func rankOneWrapper(_ path: String, _ prefix: String) throws -> String {
        try """
        #!/bin/sh
        if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then
          exec \(prefix) "$@"
        fi
        exec "$@"
        """.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    static func arguments(ranks: Int, _ args: [String], wrapper: [String] = []) -> [String] {
        ["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "tcp,self", "-np", String(ranks)] + wrapper + [CLI.binary] + args
    }

    /// Starts `mpirun -np ranks moe-run args…` in `directory`, with `environment` added to this
    /// process's (mpirun hands it to the ranks).
    static func start(ranks: Int, _ args: [String], in directory: String, wrapper: [String] = [], environment: [String: String] = [:],
                      stdout: Pipe = Pipe(), stderr: Pipe = Pipe()) throws -> Process {
        try requireMPI()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: mpirun)
        p.arguments = arguments(ranks: ranks, args, wrapper: wrapper)
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        p.currentDirectoryURL = URL(fileURLWithPath: directory)
        p.standardOutput = stdout
        p.standardError = stderr
        try p.run()
        return p
    }

    /// Runs `mpirun -np ranks moe-run args…` to completion (SIGTERM to mpirun after `timeout`
    /// seconds, so a hang fails the test instead of stopping the suite).
    static func run(ranks: Int, _ args: [String], in directory: String, wrapper: [String] = [], environment: [String: String] = [:],
                    timeout: Double = 180) throws -> CLI.Result {
        let out = Pipe(), err = Pipe()
        let p = try start(ranks: ranks, args, in: directory, wrapper: wrapper, environment: environment, stdout: out, stderr: err)
        let pid = p.processIdentifier
        let watchdog = DispatchWorkItem { kill(pid, SIGTERM) }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        watchdog.cancel()
        return CLI.Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    /// The moe-run ranks of a running mpirun (its children), by world rank.
    static func ranks(of mpirun: Process) -> [Int: Int32] {
        var out: [Int: Int32] = [:]
        for pid in CLI.children(of: mpirun.processIdentifier) {
            guard let env = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
            for entry in env.split(separator: 0) {
                let text = String(decoding: entry, as: UTF8.self)
                if text.hasPrefix("OMPI_COMM_WORLD_RANK="), let rank = Int(text.dropFirst("OMPI_COMM_WORLD_RANK=".count)) {
                    out[rank] = pid
                }
            }
        }
        return out
    }

    /// Every model of `run.h5` (`/models/<name>`) as float32 bit patterns, by `name/path`.
    static func allModelBits(_ runDir: String) throws -> [String: [UInt32]] {
        let file = try H5File.open(runDir + "/run.h5")
        var out: [String: [UInt32]] = [:]
        for model in try file.openGroup("models").children() {
            for (path, bits) in try CLI.modelBits(file, model) { out[model + "/" + path] = bits }
        }
        return out
    }

    /// The one run directory of experiment `name` under `dir/out`.
    static func runDirectory(_ dir: String, _ name: String) throws -> String {
        let runs = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/out/\(name)").filter { !$0.hasPrefix(".") }
        XCTAssertEqual(runs.count, 1, "\(runs)")
        return "\(dir)/out/\(name)/" + (try XCTUnwrap(runs.first))
    }

    /// run.h5's `status` attribute.
    static func status(_ runDir: String) throws -> String {
        try H5File.open(runDir + "/run.h5").stringAttribute("status")
    }
}
