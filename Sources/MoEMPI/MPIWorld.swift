import CMPI
import Foundation

/// The MPI world of this process (ARCHITECTURE §5.5): initialised at most once, only when an
/// MPI launcher started the process (`MPIWorld.isLaunchedByMPI`), finalized at most once.
///
///     if MPIWorld.isLaunchedByMPI() {
///         let world = try MPIWorld.initialize()          // MPI_Init_thread(MULTIPLE requested)
///         let group = try world.group.split(color: task, key: world.rank)   // a task's ranks
///         let comm = try MPICommunicator(group: group!)   // the Communicator of the task
///         …
///         world.finalize()
///     }
///
/// Errors of every MPI call return to the caller (`MPI_ERRORS_RETURN` on every communicator made
/// here) instead of aborting the job, so they can be reported as one line; `abort(code:)` ends
/// every rank of the job (MPI_Abort), the way to stop peers blocked in a collective.
public final class MPIWorld {
    /// MPI's thread-support levels (MPI_Init_thread's `required`/`provided`), in increasing order.
    public enum ThreadLevel: Int, Comparable, CustomStringConvertible, Sendable {
        case single, funneled, serialized, multiple
        init(mpi level: Int32) {
            switch level {
            case moe_MPI_THREAD_MULTIPLE(): self = .multiple
            case moe_MPI_THREAD_SERIALIZED(): self = .serialized
            case moe_MPI_THREAD_FUNNELED(): self = .funneled
            default: self = .single
            }
        }
        public static func < (a: ThreadLevel, b: ThreadLevel) -> Bool { a.rawValue < b.rawValue }
        public var description: String {
            ["MPI_THREAD_SINGLE", "MPI_THREAD_FUNNELED", "MPI_THREAD_SERIALIZED", "MPI_THREAD_MULTIPLE"][rawValue]
        }
    }

    /// This process's rank in MPI_COMM_WORLD.
    public let rank: Int
    /// The number of processes in MPI_COMM_WORLD.
    public let size: Int
    /// The host this rank runs on (MPI_Get_processor_name), for messages naming a rank's host.
    public let processorName: String
    /// The thread support MPI granted; MPI_THREAD_MULTIPLE was requested. Below `.multiple`,
    /// only one thread at a time may make MPI calls (`.serialized`), or only the main thread.
    public let threadLevel: ThreadLevel
    /// Who launched the job (from the environment, as detected before MPI_Init).
    public let launch: MPILaunchEnvironment
    /// MPI_COMM_WORLD as a group handle (never freed).
    public let group: MPIGroup

    private static let lock = NSLock()
    nonisolated(unsafe) private static var sharedWorld: MPIWorld?
    nonisolated(unsafe) private static var finalizedFlag = false

    /// The world once `initialize` has succeeded (and until `finalize`), else nil.
    public static var current: MPIWorld? {
        lock.lock(); defer { lock.unlock() }
        return finalizedFlag ? nil : sharedWorld
    }

    /// Whether `finalize` has run in this process (no MPI call is allowed after it).
    public static var isFinalized: Bool {
        lock.lock(); defer { lock.unlock() }
        return finalizedFlag
    }

    /// Whether an MPI launcher started this process (see `MPILaunchEnvironment` for the variables
    /// read). Never calls MPI: safe before `initialize`, and in any plain process.
    public static func isLaunchedByMPI(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        MPILaunchEnvironment.detect(environment) != nil
    }

    /// Initialises MPI once (MPI_Init_thread requesting MPI_THREAD_MULTIPLE; the level granted
    /// is `threadLevel`) and sets MPI_ERRORS_RETURN on MPI_COMM_WORLD; later calls return the
    /// same world. Throws `.notLaunched` when no launcher started this process (MPI is then never
    /// initialised), `.finalized` after `finalize`, `.initialization` when MPI_Init_thread fails
    /// or the world's size differs from the size the launcher announced (e.g. `srun` without PMI
    /// wiring gives each task a world of one).
    public static func initialize(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> MPIWorld {
        lock.lock(); defer { lock.unlock() }
        if finalizedFlag { throw MPIError.finalized }
        if let w = sharedWorld { return w }
        guard let launch = MPILaunchEnvironment.detect(environment) else { throw MPIError.notLaunched }
        var provided: Int32 = 0
        let rc = MPI_Init_thread(nil, nil, moe_MPI_THREAD_MULTIPLE(), &provided)
        guard rc == MPI_SUCCESS else {
            throw MPIError.initialization("MPI_Init_thread failed under \(launch.launcher): \(mpiErrorText(rc))")
        }
        let world: MPI_Comm = moe_MPI_COMM_WORLD()
        try checkMPI(MPI_Comm_set_errhandler(world, moe_MPI_ERRORS_RETURN()), "MPI_Comm_set_errhandler")
        var r: Int32 = 0, n: Int32 = 0
        try checkMPI(MPI_Comm_rank(world, &r), "MPI_Comm_rank")
        try checkMPI(MPI_Comm_size(world, &n), "MPI_Comm_size")
        if let expected = launch.expectedSize, expected != Int(n) {
            throw MPIError.initialization("\(launch.launcher) started \(expected) processes but MPI sees a world of \(n) (no PMI wiring between them; under Slurm use srun --mpi=pmix)")
        }
        var name = [CChar](repeating: 0, count: Int(moe_MPI_MAX_PROCESSOR_NAME()) + 1)
        var length: Int32 = 0
        try checkMPI(MPI_Get_processor_name(&name, &length), "MPI_Get_processor_name")
        let w = MPIWorld(rank: Int(r), size: Int(n), processorName: String(cString: name),
                         threadLevel: ThreadLevel(mpi: provided), launch: launch,
                         group: MPIGroup(comm: world, rank: Int(r), size: Int(n), owned: false))
        sharedWorld = w
        return w
    }

    private init(rank: Int, size: Int, processorName: String, threadLevel: ThreadLevel, launch: MPILaunchEnvironment, group: MPIGroup) {
        self.rank = rank
        self.size = size
        self.processorName = processorName
        self.threadLevel = threadLevel
        self.launch = launch
        self.group = group
    }

    /// MPI_Finalize, once (every rank must call it; later calls do nothing). Groups split off
    /// before must not be used afterwards (their handles are then left to MPI's clean-up).
    public func finalize() {
        Self.lock.lock(); defer { Self.lock.unlock() }
        guard !Self.finalizedFlag else { return }
        Self.finalizedFlag = true
        _ = MPI_Finalize()
    }

    /// Ends every process of the job with exit status `code` (MPI_Abort on MPI_COMM_WORLD): the
    /// way to stop peers that are blocked in a collective when one rank fails. Does not return.
    public func abort(code: Int32) -> Never {
        _ = MPI_Abort(moe_MPI_COMM_WORLD(), code)
        exit(code)
    }

    /// Splits the world (`group.split(color:key:)`).
    public func split(color: Int?, key: Int) throws -> MPIGroup? {
        try group.split(color: color, key: key)
    }
}
