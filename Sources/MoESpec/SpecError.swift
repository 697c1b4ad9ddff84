/// A position in a spec file or in a `--set` override.
///
/// Lines and columns are 1-based; columns count Unicode scalars, as libyaml does. Line 0 means
/// "the whole file" (e.g. the file cannot be read).
public struct SourceLocation: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// `FILE:LINE:COL`, or `FILE` when the line is 0.
    public var description: String {
        line > 0 ? "\(file):\(line):\(column)" : file
    }
}

/// The one error `MoESpec` throws: what is wrong, where, and (optionally) how to fix it.
///
/// `description` is `FILE:LINE:COL: KEY: message`. The key part is left out when the problem is
/// not about a key (YAML syntax, tabs, an empty file), and `LINE:COL` when the whole file is
/// meant (line 0). The CLI prints `moe-run: error: ` + description, then `hint` on its own line.
public struct SpecError: Error, CustomStringConvertible, Equatable, Sendable {
    public var file: String
    /// 1-based; 0 = the whole file.
    public var line: Int
    /// 1-based, in Unicode scalars.
    public var column: Int
    /// Dotted key path (`router.k`, `train.betas[1]`); empty when no key is concerned.
    public var keyPath: String
    public var message: String
    public var hint: String?

    public init(file: String, line: Int, column: Int, keyPath: String, message: String, hint: String? = nil) {
        self.file = file
        self.line = line
        self.column = column
        self.keyPath = keyPath
        self.message = message
        self.hint = hint
    }

    init(_ location: SourceLocation, _ keyPath: String, _ message: String, hint: String? = nil) {
        self.init(file: location.file, line: location.line, column: location.column, keyPath: keyPath,
                  message: message, hint: hint)
    }

    public var location: SourceLocation { SourceLocation(file: file, line: line, column: column) }

    public var description: String {
        keyPath.isEmpty ? "\(location): \(message)" : "\(location): \(keyPath): \(message)"
    }
}
