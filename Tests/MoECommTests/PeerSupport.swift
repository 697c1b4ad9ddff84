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

/// A group of `moe-comm-peer` processes on one fresh /dev/shm file. `finish()` (or deinit)
/// kills and reaps every peer still running and removes the file.
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

    let path: String
    let world: Int
    let directory: String
    private(set) var processes: [Int: Process] = [:]

    init(world: Int, slotBytes: Int = 8 << 20) throws {
        self.world = world
        path = "/dev/shm/moe-run-test-\(getpid())-\(UUID().uuidString.prefix(8))"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("moe-comm-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try SharedMemoryGroup.create(path: path, worldSize: world, slotBytes: slotBytes)
    }

    func outfile(_ rank: Int) -> String { "\(directory)/rank\(rank).out" }

    /// Starts ranks `ranks` (default: all) with `scenario` (per rank: `scenarioFor`).
    func start(_ scenario: String, ranks: [Int]? = nil, count: Int = 1000, timeout: Double = 20,
               scenarioFor: ((Int) -> String)? = nil) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw XCTSkip("moe-comm-peer not built at \(Self.binary)")
        }
        for r in ranks ?? Array(0..<world) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Self.binary)
            p.arguments = [scenarioFor?(r) ?? scenario, path, String(r), String(world), outfile(r), String(count), String(timeout)]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            processes[r] = p
        }
    }

    /// Waits (at most `limit` seconds) for every started peer; returns each rank's status and output.
    func wait(limit: Double = 20) -> [Int: Outcome] {
        let deadline = Date().addingTimeInterval(limit)
        var outcomes: [Int: Outcome] = [:]
        for (r, p) in processes.sorted(by: { $0.key < $1.key }) {
            while p.isRunning && Date() < deadline { usleep(5_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
            p.waitUntilExit()
            let data = (try? Data(contentsOf: URL(fileURLWithPath: outfile(r)))) ?? Data()
            outcomes[r] = Outcome(status: p.terminationStatus, output: data)
        }
        return outcomes
    }

    func kill9(_ rank: Int) {
        guard let p = processes[rank] else { return }
        kill(p.processIdentifier, SIGKILL)
    }

    /// Kills and reaps every peer, removes the group file and the scratch directory.
    func finish() {
        for p in processes.values where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        for p in processes.values { p.waitUntilExit() }
        processes.removeAll()
        SharedMemoryGroup.remove(path: path)
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
