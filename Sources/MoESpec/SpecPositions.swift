/// Where each key of a loaded spec was written, kept with the spec so that checks made after
/// loading (the run's pre-flight look into the data file, the worker limits of the communicator)
/// can report `FILE:LINE:COL: KEY: message` like the loader does.
///
/// A key that was not written is placed at its enclosing mapping (or the document start).
/// Positions are not part of the experiment: two specs with the same values are equal wherever
/// their keys were written, so `==` ignores them.
public struct SpecPositions: Equatable, Sendable {
    private var locations: [String: SourceLocation]
    private var root: SourceLocation

    public init(_ locations: [String: SourceLocation] = [:], root: SourceLocation = SourceLocation(file: "spec", line: 0, column: 0)) {
        self.locations = locations
        self.root = root
    }

    /// The position of `keyPath` (its value if written, else the closest written parent).
    public func location(of keyPath: String) -> SourceLocation {
        var path = Substring(keyPath)
        while !path.isEmpty {
            if let found = locations[String(path)] { return found }
            guard let dot = path.lastIndex(of: ".") else { break }
            path = path[..<dot]
        }
        return root
    }

    /// A `SpecError` at `keyPath`.
    public func error(_ keyPath: String, _ message: String, hint: String? = nil) -> SpecError {
        SpecError(location(of: keyPath), keyPath, message, hint: hint)
    }

    public static func == (lhs: SpecPositions, rhs: SpecPositions) -> Bool { true }
}
