import Foundation

/// Everything a run says: plain lines to stdout (unless `--quiet`) and always to `log.txt`;
/// on a TTY a single progress line is redrawn in place between log lines.
public final class RunLog: @unchecked Sendable {
    private var file: FileHandle?
    private let quiet: Bool
    private let isTTY: Bool
    private var progressShown = false
    private var lastProgress = Date.distantPast
    private let formatter = ISO8601DateFormatter()

    public init(path: String?, quiet: Bool) {
        self.quiet = quiet
        isTTY = isatty(STDOUT_FILENO) == 1
        if let path {
            if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
            file = FileHandle(forWritingAtPath: path)
            file?.seekToEndOfFile()
        }
    }

    deinit { try? file?.close() }

    /// A line for people and for the log file.
    public func info(_ message: String) {
        file?.write(Data("\(formatter.string(from: Date())) \(message)\n".utf8))
        guard !quiet else { return }
        clearProgress()
        print(message)
        fflush(stdout)
    }

    /// A line only for the log file.
    public func record(_ message: String) {
        file?.write(Data("\(formatter.string(from: Date())) \(message)\n".utf8))
    }

    /// Redraws the progress line on a TTY (no-op otherwise: plain runs get `info` lines instead).
    public func progress(_ line: String) {
        guard isTTY, !quiet else { return }
        let now = Date()
        guard now.timeIntervalSince(lastProgress) >= 0.1 else { return }  // at most 10 redraws a second
        lastProgress = now
        let cols = 120
        let text = line.count > cols ? String(line.prefix(cols)) : line
        print("\r\u{1B}[2K" + text, terminator: "")
        fflush(stdout)
        progressShown = true
    }

    /// Whether progress lines are drawn (so callers log plain lines otherwise).
    public var drawsProgress: Bool { isTTY && !quiet }

    private func clearProgress() {
        if progressShown {
            print("\r\u{1B}[2K", terminator: "")
            progressShown = false
        }
    }
}

/// A text progress bar: `[#####.....] 52%`.
func progressBar(_ fraction: Double, width: Int = 20) -> String {
    let f = min(max(fraction, 0), 1)
    let filled = Int((f * Double(width)).rounded())
    return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] "
        + String(format: "%3.0f%%", f * 100)
}
