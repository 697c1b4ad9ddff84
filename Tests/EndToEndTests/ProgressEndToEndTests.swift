import Foundation
import XCTest

/// On a terminal the scheduler draws one progress line per running task and an overall bar; the
/// workers hand it their progress through their stdout. Without a terminal, plain lines only.
final class ProgressEndToEndTests: XCTestCase {
    func testProgressBlockOnATerminalAndPlainLinesOtherwise() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else { throw XCTSkip("no /usr/bin/script (util-linux)") }
        let dir = try CLI.workspace(tinySpec(epochs: 30).replacingOccurrences(of: "samples: 600", with: "samples: 4000"))
        // `script` gives the command a pseudo-terminal and copies what it draws.
        let tty = try CLI.tool("/usr/bin/script", ["-qec", "cd '\(dir)' && '\(CLI.binary)' spec.yaml", "/dev/null"])
        XCTAssertEqual(tty.status, 0, tty.stdout + tty.stderr)
        XCTAssertTrue(tty.stdout.contains("overall: 1/3 tasks complete"), tty.stdout)
        XCTAssertTrue(tty.stdout.contains("] ") && tty.stdout.contains("train: epoch"), tty.stdout)
        XCTAssertTrue(tty.stdout.contains("\u{1B}[J"), "the block is redrawn in place")
        XCTAssertFalse(tty.stdout.contains("\u{1E}"), "progress markers never reach the screen")
        let runDir = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir + "/out/tiny").first)
        let log = try String(contentsOfFile: dir + "/out/tiny/\(runDir)/log.txt", encoding: .utf8)
        XCTAssertFalse(log.contains("\u{1E}"), "nor the log file")
        XCTAssertTrue(log.contains("train: epoch"), "the log keeps plain progress lines")

        // Through a pipe (no terminal): no escape sequences, no bar.
        let plain = try CLI.run(["spec.yaml", "--force"], in: dir)
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(plain.stdout.contains("\u{1B}["), plain.stdout)
        XCTAssertFalse(plain.stdout.contains("overall:"), plain.stdout)
    }
}
