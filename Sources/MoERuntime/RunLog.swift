import Foundation

/// Everything a run says: plain lines to stdout (unless `--quiet`) and always to `log.txt`;
/// on a TTY a single progress line is redrawn in place between log lines.
///
/// The log file is opened for appending (`O_APPEND`), so the scheduler and its workers can all
/// add lines to it; a worker's log has `infoToFile: false` because the scheduler writes the
/// worker's stdout lines to the file. The file is best effort: a line that cannot be written (a
/// full disk) is dropped, so the log never stops a run nor hides the error that ends it.
public final class RunLog: @unchecked Sendable {
    /// The log file's descriptor, or -1.
    private var fd: Int32 = -1
    private let quiet: Bool
    private let infoToFile: Bool
    private let isTTY: Bool
    private var progressShown = false
    /// Lines of the scheduler's progress block currently on screen.
    private var blockLines = 0
    /// A worker whose scheduler draws progress on a TTY: progress lines go to stdout marked
    /// with `RunLog.progressMarker`, for the scheduler to draw.
    private let progressPipe: Bool
    private var lastProgress = Date.distantPast
    private var lastStepLine = Date.distantPast

    public init(path: String?, quiet: Bool, infoToFile: Bool = true) {
        self.quiet = quiet
        self.infoToFile = infoToFile
        isTTY = isatty(STDOUT_FILENO) == 1
        progressPipe = ProcessInfo.processInfo.environment[RunLog.progressVariable] == "pipe"
        if let path {
            fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// `date` as `2026-12-05T05:48:54Z`: UTC, whole seconds (truncated), the form of Foundation's
    /// `ISO8601DateFormatter` (whose creation costs ~0.5 ms of ICU set-up in every process).
    public static func timestamp(_ date: Date = Date()) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil else { return ISO8601DateFormatter().string(from: date) }
        var text = [CChar](repeating: 0, count: 32)
        let count = strftime(&text, text.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: text[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Appends a timestamped line to the log file; a failed write (no space left) drops it.
    /// (`FileHandle.write` would stop the process on such an error.)
    private func append(_ message: String) {
        guard fd >= 0 else { return }
        let bytes = Array("\(Self.timestamp()) \(message)\n".utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
    /// A line for people and for the log file.
    public func info(_ message: String) {
        if infoToFile { append(message) }
        guard !quiet else { return }
        clearProgress()
        print(message)
        fflush(stdout)
    }

    /// A line only for the log file.
    public func record(_ message: String) {
        append(message)
    }

    /// A line for stderr (unless `--quiet`), not for the file (the caller records it).
    public func warning(_ message: String) {
        guard !quiet else { return }
        clearProgress()
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }

    /// Set (to "pipe") in a worker's environment when its scheduler draws progress on a TTY.
    public static let progressVariable = "MOE_RUN_PROGRESS"
    /// Starts a progress line on a worker's stdout (ASCII record separator: never in log text).
    public static let progressMarker: Character = "\u{1E}"

    /// Redraws the progress line on a TTY, or hands it to the scheduler from a worker (no-op
    /// otherwise: plain runs get `info` lines instead).
    public func progress(_ line: String) {
        guard (isTTY || progressPipe), !quiet else { return }
        let now = Date()
        guard now.timeIntervalSince(lastProgress) >= 0.1 else { return }  // at most 10 redraws a second
        lastProgress = now
        if progressPipe {
            print(String(RunLog.progressMarker) + line)
            fflush(stdout)
            return
        }
        let cols = 120
        let text = line.count > cols ? String(line.prefix(cols)) : line
        print("\r\u{1B}[2K" + text, terminator: "")
        fflush(stdout)
        progressShown = true
    }

    /// A training step's status line: on a terminal (or through the scheduler) the progress line
    /// with a bar for `done` (0…1); otherwise a plain line at most every 2 s, and the `last` one;
    /// always in the log file.
    public func step(_ line: String, done: Double, last: Bool) {
        if drawsProgress {
            progress(progressBar(done) + " " + line)
            record(line)
        } else if Date().timeIntervalSince(lastStepLine) >= 2 || last {
            info(line)
            lastStepLine = Date()
        } else {
            record(line)
        }
    }

    /// Whether progress lines are drawn (so callers log plain lines otherwise).
    public var drawsProgress: Bool { (isTTY || progressPipe) && !quiet }

    /// The scheduler's block on a TTY: one line per running task and an overall line, redrawn
    /// in place (the cursor goes back up over the previous block).
    public func progressBlock(_ lines: [String]) {
        guard isTTY, !quiet else { return }
        clearProgress()
        for line in lines { print(line.count > 120 ? String(line.prefix(120)) : line) }
        blockLines = lines.count
        fflush(stdout)
    }

    private func clearProgress() {
        if progressShown {
            print("\r\u{1B}[2K", terminator: "")
            progressShown = false
        }
        if blockLines > 0 {
            print("\u{1B}[\(blockLines)A\u{1B}[J", terminator: "")
            blockLines = 0
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
