import Foundation

/// Everything a run says: plain lines to stdout (unless `--quiet`) and always to `log.txt`;
/// on a TTY a single progress line is redrawn in place between log lines.
///
/// The log file is opened for appending (`O_APPEND`), so the scheduler and its workers can all
/// add lines to it; a worker's log has `infoToFile: false` because the scheduler writes the
/// worker's stdout lines to the file.
public final class RunLog: @unchecked Sendable {
    private var file: FileHandle?
    private let quiet: Bool
    private let infoToFile: Bool
    private let isTTY: Bool
    private var progressShown = false
    private var lastProgress = Date.distantPast
    private let formatter = ISO8601DateFormatter()

    public init(path: String?, quiet: Bool, infoToFile: Bool = true) {
        self.quiet = quiet
        self.infoToFile = infoToFile
        isTTY = isatty(STDOUT_FILENO) == 1
        if let path {
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            if fd >= 0 { file = FileHandle(fileDescriptor: fd, closeOnDealloc: true) }
        }
    }

    deinit { try? file?.close() }

    /// A line for people and for the log file.
    public func info(_ message: String) {
        if infoToFile { file?.write(Data("\(formatter.string(from: Date())) \(message)\n".utf8)) }
        guard !quiet else { return }
        clearProgress()
        print(message)
        fflush(stdout)
    }

    /// A line only for the log file.
    public func record(_ message: String) {
        file?.write(Data("\(formatter.string(from: Date())) \(message)\n".utf8))
    }

    /// A line for stderr (unless `--quiet`), not for the file (the caller records it).
    public func warning(_ message: String) {
        guard !quiet else { return }
        clearProgress()
        FileHandle.standardError.write(Data((message + "\n").utf8))
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
