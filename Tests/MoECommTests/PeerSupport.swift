import Foundation
import XCTest
@testable import MoEComm

/// The test pattern of `moe-comm-peer` (Sources/moe-comm-peer/main.swift has the same function).
func patternValue(rank: Int, index: Int) -> Float {
    var z = UInt64(truncatingIfNeeded: rank &* 1_000_003 &+ index) &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    z ^= z >> 31
    let unit = Float(z >> 40) / Float(1 << 24) * 2 - 1
    let scale = Float(1 << Int((z >> 8) & 15))
    return unit * scale
}

/// One `moe-comm-peer` process, started with posix_spawn so that it inherits exactly the
/// group's descriptor (at the same number), as the scheduler's workers do.
final class PeerProcess {
    let pid: pid_t
    private(set) var status: Int32?

    init(_ binary: String, _ arguments: [String], inheriting fd: Int32) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fd, fd) // clears close-on-exec in the child
        let argv = ([binary] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, binary, &actions, nil, argv, environ)
        guard rc == 0 else { throw CollectiveError.invalidArgument("posix_spawn \(binary): \(String(cString: strerror(rc)))") }
        pid = child
    }

    /// Whether the process still runs (reaps it, keeping its exit status, once it has ended).
    var isRunning: Bool {
        guard status == nil else { return false }
        var s: Int32 = 0
        let r = waitpid(pid, &s, WNOHANG)
        guard r == pid else { return r == 0 || (r == -1 && errno == EINTR) }
        status = s & 0x7f == 0 ? (s >> 8) & 0xff : 128 + (s & 0x7f)
        return false
    }

    /// Waits for the end; the exit status (128 + the signal for a killed process).
    @discardableResult
    func waitUntilExit() -> Int32 {
        while isRunning { usleep(2_000) }
        return status ?? -1
    }
}

/// A group of `moe-comm-peer` processes on one fresh `SharedMemorySegment` (an unnamed
/// memfd). `finish()` (or deinit) kills and reaps every peer still running and closes the
/// segment's descriptor.
final class PeerGroup {
    struct Outcome {
        var status: Int32
        var output: Data
        var text: String { String(decoding: output, as: UTF8.self) }
    }

    /// The peer next to the test bundle (`MOE_COMM_PEER_BIN` overrides).
    static var binary: String {
        if let b = ProcessInfo.processInfo.environment["MOE_COMM_PEER_BIN"] { return b }
        return Bundle.main.bundleURL.appendingPathComponent("moe-comm-peer").path
    }

    private(set) var segment: SharedMemorySegment?
    let world: Int
    let directory: String
    private(set) var processes: [Int: PeerProcess] = [:]

    init(world: Int, slotBytes: Int = 8 << 20) throws {
        self.world = world
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("moe-comm-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        segment = try SharedMemorySegment(worldSize: world, slotBytes: slotBytes, name: "moe-run-test")
    }

    func outfile(_ rank: Int) -> String { "\(directory)/rank\(rank).out" }

    /// Starts ranks `ranks` (default: all) with `scenario` (per rank: `scenarioFor`).
    func start(_ scenario: String, ranks: [Int]? = nil, count: Int = 1000, timeout: Double = 20,
               scenarioFor: ((Int) -> String)? = nil) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw XCTSkip("moe-comm-peer not built at \(Self.binary)")
        }
        let fd = try XCTUnwrap(segment?.descriptor, "the group was finished")
        for r in ranks ?? Array(0..<world) {
            let arguments = [scenarioFor?(r) ?? scenario, String(fd), String(r), String(world), outfile(r), String(count), String(timeout)]
            processes[r] = try PeerProcess(Self.binary, arguments, inheriting: fd)
        }
    }

    /// Aborts the group through the segment's descriptor, as the scheduler does.
    func abort() { segment?.abort() }

    /// Closes this process's descriptor of the segment (the peers keep theirs and their mappings).
    func closeSegment() { segment = nil }

    /// Waits (at most `limit` seconds) for every started peer; returns each rank's status and output.
    func wait(limit: Double = 20) -> [Int: Outcome] {
        let deadline = Date().addingTimeInterval(limit)
        var outcomes: [Int: Outcome] = [:]
        for (r, p) in processes.sorted(by: { $0.key < $1.key }) {
            while p.isRunning && Date() < deadline { usleep(5_000) }
            if p.isRunning { kill(p.pid, SIGKILL) }
            let status = p.waitUntilExit()
            let data = (try? Data(contentsOf: URL(fileURLWithPath: outfile(r)))) ?? Data()
            outcomes[r] = Outcome(status: status, output: data)
        }
        return outcomes
    }

    func kill9(_ rank: Int) {
        guard let p = processes[rank] else { return }
        kill(p.pid, SIGKILL)
    }

    /// Kills and reaps every peer, closes the segment, removes the scratch directory.
    func finish() {
        for p in processes.values where p.isRunning { kill(p.pid, SIGKILL) }
        for p in processes.values { p.waitUntilExit() }
        processes.removeAll()
        segment = nil
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { finish() }
}

extension Data {
    func floats() -> [Float] {
        withUnsafeBytes { b in (0..<(b.count / 4)).map { b.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
    }
    func doubles() -> [Double] {
        withUnsafeBytes { b in (0..<(b.count / 8)).map { b.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self) } }
    }
}
