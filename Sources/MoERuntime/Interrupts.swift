#if canImport(Glibc)
import Glibc
#endif

nonisolated(unsafe) private var pendingSignal: Int32 = 0

/// SIGINT/SIGTERM become a flag the training loop polls between steps, so an interrupted run
/// saves a checkpoint, marks itself `interrupted` and exits 130 instead of dying mid-write.
public enum Interrupts {
    public static func install() {
        signal(SIGINT) { pendingSignal = $0 }
        signal(SIGTERM) { pendingSignal = $0 }
    }

    /// The signal received, if any.
    public static var receivedSignal: Int32? { pendingSignal == 0 ? nil : pendingSignal }
    public static var requested: Bool { pendingSignal != 0 }
}
