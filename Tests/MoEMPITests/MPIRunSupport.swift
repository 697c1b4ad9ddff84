import Foundation
import XCTest

/// Runs `moe-comm-peer` under Open MPI's `mpirun` on this machine (`--oversubscribe`: more ranks
/// than cores; `--allow-run-as-root`: CI runs as root). `mpirun` is found on PATH (`make setup`
/// installs openmpi-bin); without it the MPI tests skip, saying so.
enum MPIRun {
    /// The peer next to the test bundle (`MOE_COMM_PEER_BIN` overrides).
    static var peer: String {
        if let b = ProcessInfo.processInfo.environment["MOE_COMM_PEER_BIN"] { return b }
        return Bundle.main.bundleURL.appendingPathComponent("moe-comm-peer").path
    }

    static var mpirun: String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let p = "\(dir)/mpirun"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    static func requireMPIRun() throws -> String {
        guard let m = mpirun else { throw XCTSkip("mpirun is not on PATH (Debian: openmpi-bin; `make setup` installs it)") }
        return m
    }

    struct Outcome {
        var status: Int32
        var output: String
    }

    /// `mpirun -np N [--mca btl BTL] peer ARGS…`, with a time-out that kills the whole job.
    /// The Open MPI variables of the test's own environment are removed (a test run under mpirun
    /// must not make the nested job think it is a rank of the outer one).
    static func run(ranks: Int, btl: String?, _ arguments: [String], timeout: Double = 60) throws -> Outcome {
        let mpirun = try requireMPIRun()
        var argv = ["--oversubscribe", "--allow-run-as-root", "-np", "\(ranks)"]
        if let btl { argv += ["--mca", "btl", btl] }
        argv += [peer] + arguments
        let p = Process()
        p.executableURL = URL(fileURLWithPath: mpirun)
        p.arguments = argv
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") && !$0.key.hasPrefix("PMI_") }
        // Quiet and fast on one machine: no InfiniBand/UCX probing.
        env["OMPI_MCA_pml"] = "ob1"
        env["OMPI_MCA_btl_base_warn_component_unused"] = "0"
        p.environment = env
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("mpirun-\(UUID().uuidString).log").path
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: log) }
        guard let sink = FileHandle(forWritingAtPath: log) else { throw NSError(domain: "MPIRun", code: 1, userInfo: [NSLocalizedDescriptionKey: "cannot write \(log)"]) }
        defer { try? sink.close() }
        p.standardOutput = sink
        p.standardError = sink
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { usleep(10_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGTERM)
            usleep(500_000)
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            XCTFail("mpirun -np \(ranks) \(arguments.joined(separator: " ")) did not end within \(timeout) s:\n\(output)")
            return Outcome(status: -1, output: output)
        }
        p.waitUntilExit()
        let data = FileManager.default.contents(atPath: log) ?? Data()
        return Outcome(status: p.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    /// A fresh temporary directory for the ranks' output files.
    static func temporaryDirectory() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("moe-mpi-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// Processes still running this peer binary (every rank must be gone after a job).
    static func leftoverPeers() -> [Int32] {
        let me = getpid()
        var found: [Int32] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), pid != me,
                  let cmd = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8) else { continue }
            if cmd.split(separator: "\0").first.map(String.init) == peer { found.append(pid) }
        }
        return found
    }
}
