#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Chooses OpenBLAS's kernel family and thread count for this process.
///
/// Debian 12's OpenBLAS 0.3.21 does not recognise recent Intel CPUs (Sapphire/Emerald Rapids)
/// and silently falls back to its generic "Prescott" kernel, about six times slower than the
/// AVX-512 one. OpenBLAS reads `OPENBLAS_CORETYPE` once, when the library is loaded, which happens
/// before any Swift code runs; so the only way to fix it from inside is to set the variable and
/// re-exec the same binary. `prepareProcess()` does exactly that, once, unless the user already
/// set `OPENBLAS_CORETYPE` (their choice always wins).
public enum BLASEnvironment {
    /// Environment variable set on the re-exec'd process so it never re-execs twice.
    public static let marker = "MOE_RUN_BLAS_CONFIGURED"
    /// Set to 1 by the first moe-run process when `OPENBLAS_NUM_THREADS` came from the user, so
    /// its schedulers and sweeps keep that value instead of dividing the cores themselves.
    public static let userThreadsVariable = "MOE_RUN_USER_BLAS_THREADS"

    /// The `OPENBLAS_NUM_THREADS` of a process that shares this one's cores with `share − 1`
    /// others (a scheduler's workers): cores / share (at least 1), or nil when the user set the
    /// variable (`userThreadsVariable` in `environment`): then every process keeps the user's value.
    public static func threadsValue(environment: [String: String], cores: Int, share: Int) -> String? {
        environment[userThreadsVariable] == "1" ? nil : String(max(1, cores / max(1, share)))
    }

    /// The OpenBLAS core type for a CPU with these `/proc/cpuinfo` flags:
    /// AVX-512 (F, BW, VL, DQ) → `SkylakeX`, AVX2 + FMA → `Haswell`, otherwise nil (let OpenBLAS decide).
    public static func recommendedCoreType(cpuFlags: Set<String>) -> String? {
        if ["avx512f", "avx512bw", "avx512vl", "avx512dq"].allSatisfy(cpuFlags.contains) { return "SkylakeX" }
        if cpuFlags.contains("avx2") && cpuFlags.contains("fma") { return "Haswell" }
        return nil
    }

    /// The flags of the first processor listed in `cpuinfo` (the text of `/proc/cpuinfo`).
    public static func cpuFlags(cpuinfo: String) -> Set<String> {
        for line in cpuinfo.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        }
        return []
    }

    /// The flags of this machine's CPU (empty where `/proc/cpuinfo` does not exist).
    public static func cpuFlags() -> Set<String> {
        guard let text = readTextFile("/proc/cpuinfo") else { return [] }
        return cpuFlags(cpuinfo: text)
    }

    /// Online processor cores, or fewer when the environment variable `MOE_RUN_CORES` (an
    /// integer >= 1) says so: `moe-run sweep` gives each of its concurrent trials its share.
    public static var cores: Int {
        let online = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        guard let text = getenv(coresVariable), let share = Int(String(cString: text)), share >= 1 else { return online }
        return min(online, share)
    }

    /// The variable that limits `cores` for this process and its children.
    public static let coresVariable = "MOE_RUN_CORES"

    /// The variables this process should have before OpenBLAS loads, given its environment:
    /// `OPENBLAS_CORETYPE` from the CPU flags unless already set, and `OPENBLAS_NUM_THREADS`
    /// = cores / `concurrentProcesses` (at least 1) unless already set. Empty when nothing is missing.
    public static func missingVariables(environment: [String: String], cpuFlags: Set<String>,
                                        cores: Int, concurrentProcesses: Int = 1) -> [String: String] {
        var out: [String: String] = [:]
        if environment["OPENBLAS_CORETYPE"] == nil, let core = recommendedCoreType(cpuFlags: cpuFlags) {
            out["OPENBLAS_CORETYPE"] = core
        }
        if environment["OPENBLAS_NUM_THREADS"] == nil {
            out["OPENBLAS_NUM_THREADS"] = String(max(1, cores / max(1, concurrentProcesses)))
        }
        return out
    }

    /// Call first thing in `main`. If this process lacks a suitable `OPENBLAS_CORETYPE`, sets it
    /// (and `OPENBLAS_NUM_THREADS`) and replaces the process with a fresh copy of itself
    /// (`execv("/proc/self/exe", argv)`), so that OpenBLAS loads with the right kernel. Returns
    /// normally when nothing needs to change, on the second pass, or if exec fails (then with a
    /// warning on stderr: the run still works, only slower).
    public static func prepareProcess() {
        let env = currentEnvironment()
        if env[marker] != nil { return }
        if env["OPENBLAS_NUM_THREADS"] != nil { setenv(userThreadsVariable, "1", 1) }
        let missing = missingVariables(environment: env, cpuFlags: cpuFlags(), cores: cores,
                                       concurrentProcesses: ranksOnThisHost(environment: env))
        for (k, v) in missing { setenv(k, v, 1) }
        setenv(marker, "1", 1)
        // Threads alone can be changed without a re-exec; the kernel family cannot.
        guard missing["OPENBLAS_CORETYPE"] != nil else {
            if let t = missing["OPENBLAS_NUM_THREADS"], let n = Int(t) { BLASInfo.setThreads(n) }
            return
        }
        fflush(stdout)
        fflush(stderr)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        let reason = String(cString: strerror(errno))
        fputs("moe-run: warning: could not re-exec to select the OpenBLAS kernel (\(reason)); set OPENBLAS_CORETYPE=\(missing["OPENBLAS_CORETYPE"]!) for full speed\n", stderr)
    }

    /// The processes an MPI launcher started on this host (`OMPI_COMM_WORLD_LOCAL_SIZE` of
    /// Open MPI's mpirun, `MPI_LOCALNRANKS` of MPICH's Hydra), which share its cores; 1 otherwise.
    public static func ranksOnThisHost(environment: [String: String]) -> Int {
        let n = environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? environment["MPI_LOCALNRANKS"].flatMap(Int.init) ?? 1
        return max(1, n)
    }

    /// The process environment as a dictionary.
    public static func currentEnvironment() -> [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") {
                out[String(s[..<eq])] = String(s[s.index(after: eq)...])
            }
            p += 1
        }
        return out
    }
}

/// Reads a whole text file with POSIX calls (works for /proc files, whose size is reported as 0).
func readTextFile(_ path: String) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, f)
        if n <= 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}
