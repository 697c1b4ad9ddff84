import XCTest
@testable import MoECore

final class BLASEnvironmentTests: XCTestCase {
    /// Abridged from a real 2-vCPU Sapphire Rapids VM (tabs and trailing layout as the kernel
    /// prints them); the second processor's flags are deliberately different.
    static let cpuinfo = """
        processor\t: 0
        vendor_id\t: GenuineIntel
        cpu family\t: 6
        model\t\t: 143
        model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
        flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch ssbd ibrs ibpb stibp ibrs_enhanced fsgsbase tsc_adjust bmi1 hle avx2 smep bmi2 erms invpcid rtm avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid cldemote movdiri movdir64b fsrm md_clear serialize amx_bf16 avx512_fp16 amx_tile amx_int8 arch_capabilities
        vmx flags\t: vnmi preemption_timer invvpid ept_x_only
        bugs\t\t: spectre_v1 spectre_v2 spec_store_bypass swapgs eibrs_pbrsb
        bogomips\t: 5400.00
        address sizes\t: 46 bits physical, 48 bits virtual

        processor\t: 1
        vendor_id\t: GenuineIntel
        flags\t\t: fpu sse sse2 second_cpu_only
        bugs\t\t: spectre_v1

        """

    func testCPUFlagsFromCpuinfo() {
        let flags = BLASEnvironment.cpuFlags(cpuinfo: Self.cpuinfo)
        for f in ["fpu", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "amx_tile",
                  "arch_capabilities"] {
            XCTAssertTrue(flags.contains(f), "missing \(f)")
        }
        XCTAssertEqual(flags.count, 111)
        // Only the first processor; not the "vmx flags" or "bugs" lines; no empty or
        // whitespace-carrying entries.
        XCTAssertFalse(flags.contains("second_cpu_only"))
        XCTAssertFalse(flags.contains("ept_x_only"))
        XCTAssertFalse(flags.contains("spectre_v1"))
        XCTAssertFalse(flags.contains(""))
        XCTAssertTrue(flags.allSatisfy { !$0.contains(" ") && !$0.contains("\t") && !$0.contains(":") })
        XCTAssertEqual(BLASEnvironment.recommendedCoreType(cpuFlags: flags), "SkylakeX")

        XCTAssertEqual(BLASEnvironment.cpuFlags(cpuinfo: ""), [])
        XCTAssertEqual(BLASEnvironment.cpuFlags(cpuinfo: "processor\t: 0\nFeatures\t: fp asimd\n"), [])
        XCTAssertEqual(BLASEnvironment.cpuFlags(cpuinfo: "flags\t\t: avx2 fma"), ["avx2", "fma"])
    }

    func testThisMachinesCPUFlags() throws {
        guard FileManager.default.fileExists(atPath: "/proc/cpuinfo") else {
            throw XCTSkip("no /proc/cpuinfo on this system")
        }
        let flags = BLASEnvironment.cpuFlags()
        XCTAssertFalse(flags.isEmpty)
        #if arch(x86_64)
        XCTAssertTrue(flags.contains("sse2"), "every x86-64 CPU has SSE2: \(flags.sorted().prefix(10))")
        #endif
    }

    func testRecommendedCoreType() {
        let avx512: Set<String> = ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx2", "fma"]
        XCTAssertEqual(BLASEnvironment.recommendedCoreType(cpuFlags: avx512), "SkylakeX")
        XCTAssertEqual(BLASEnvironment.recommendedCoreType(cpuFlags: ["avx512f", "avx512bw", "avx512vl",
                                                                      "avx512dq"]), "SkylakeX")
        XCTAssertEqual(BLASEnvironment.recommendedCoreType(cpuFlags: ["sse2", "avx", "avx2", "fma"]), "Haswell")
        // AVX-512F alone (e.g. Knights Landing, without BW/VL/DQ) is not SkylakeX.
        XCTAssertEqual(BLASEnvironment.recommendedCoreType(cpuFlags: ["avx512f", "avx2", "fma"]), "Haswell")
        XCTAssertNil(BLASEnvironment.recommendedCoreType(cpuFlags: ["avx2"]))           // no FMA
        XCTAssertNil(BLASEnvironment.recommendedCoreType(cpuFlags: ["fma", "avx"]))     // no AVX2
        XCTAssertNil(BLASEnvironment.recommendedCoreType(cpuFlags: ["sse2", "sse4_2"]))
        XCTAssertNil(BLASEnvironment.recommendedCoreType(cpuFlags: []))
    }

    func testMissingVariables() {
        let avx512: Set<String> = ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx2", "fma"]
        let haswell: Set<String> = ["avx2", "fma"]
        func missing(_ env: [String: String], _ flags: Set<String>, cores: Int, procs: Int = 1) -> [String: String] {
            BLASEnvironment.missingVariables(environment: env, cpuFlags: flags, cores: cores, concurrentProcesses: procs)
        }
        XCTAssertEqual(missing([:], avx512, cores: 8),
                       ["OPENBLAS_CORETYPE": "SkylakeX", "OPENBLAS_NUM_THREADS": "8"])
        XCTAssertEqual(missing(["PATH": "/bin"], haswell, cores: 4),
                       ["OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "4"])
        // The user's choices win, each independently.
        XCTAssertEqual(missing(["OPENBLAS_CORETYPE": "Haswell"], avx512, cores: 8), ["OPENBLAS_NUM_THREADS": "8"])
        XCTAssertEqual(missing(["OPENBLAS_NUM_THREADS": "3"], avx512, cores: 8), ["OPENBLAS_CORETYPE": "SkylakeX"])
        XCTAssertEqual(missing(["OPENBLAS_CORETYPE": "Zen", "OPENBLAS_NUM_THREADS": "1"], avx512, cores: 8), [:])
        // No recommendation for this CPU: leave the core type to OpenBLAS.
        XCTAssertEqual(missing([:], ["sse2"], cores: 8), ["OPENBLAS_NUM_THREADS": "8"])
        // Cores divided among concurrent processes, rounded down, at least 1.
        XCTAssertEqual(missing([:], [], cores: 8, procs: 3)["OPENBLAS_NUM_THREADS"], "2")
        XCTAssertEqual(missing([:], [], cores: 8, procs: 8)["OPENBLAS_NUM_THREADS"], "1")
        XCTAssertEqual(missing([:], [], cores: 2, procs: 4)["OPENBLAS_NUM_THREADS"], "1")
        XCTAssertEqual(missing([:], [], cores: 1, procs: 1)["OPENBLAS_NUM_THREADS"], "1")
        XCTAssertEqual(missing([:], [], cores: 8, procs: 0)["OPENBLAS_NUM_THREADS"], "8")
        // Default: one process.
        XCTAssertEqual(BLASEnvironment.missingVariables(environment: [:], cpuFlags: [], cores: 6),
                       ["OPENBLAS_NUM_THREADS": "6"])
    }

    /// `cores` is the online processor count, lowered (never raised) by `MOE_RUN_CORES` when that
    /// is an integer >= 1; anything else is ignored. The variable is set here and restored after,
    /// so the test holds whether or not the runner has it set (a sweep's trials do).
    func testCoresHonoursMOE_RUN_CORES() {
        let online = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let saved = getenv(BLASEnvironment.coresVariable).map { String(cString: $0) }
        defer {
            if let saved { setenv(BLASEnvironment.coresVariable, saved, 1) } else { unsetenv(BLASEnvironment.coresVariable) }
        }
        unsetenv(BLASEnvironment.coresVariable)
        XCTAssertEqual(BLASEnvironment.cores, online)
        setenv(BLASEnvironment.coresVariable, "1", 1)
        XCTAssertEqual(BLASEnvironment.cores, 1)
        setenv(BLASEnvironment.coresVariable, String(online + 7), 1)
        XCTAssertEqual(BLASEnvironment.cores, online, "a share above the machine's cores is capped")
        for ignored in ["0", "-2", "two", "", "1.5"] {
            setenv(BLASEnvironment.coresVariable, ignored, 1)
            XCTAssertEqual(BLASEnvironment.cores, online, "MOE_RUN_CORES=\"\(ignored)\" is ignored")
        }
    }

    /// The environment as a dictionary, values containing "=" intact.
    func testCurrentEnvironment() {
        setenv("MOE_CORE_TEST_VARIABLE", "a=b=c", 1)
        defer { unsetenv("MOE_CORE_TEST_VARIABLE") }
        let env = BLASEnvironment.currentEnvironment()
        XCTAssertEqual(env["MOE_CORE_TEST_VARIABLE"], "a=b=c")
        XCTAssertEqual(env["PATH"], getenv("PATH").map { String(cString: $0) })
    }

    func testReadTextFileReadsProcFiles() throws {
        guard let text = readTextFile("/proc/self/status") else { throw XCTSkip("no /proc") }
        XCTAssertTrue(text.hasPrefix("Name:"))
        XCTAssertNil(readTextFile("/nonexistent/moe-run/file"))
    }
}

final class BLASInfoTests: XCTestCase {
    func testCoreNameConfigAndThreads() {
        XCTAssertFalse(BLASInfo.coreName.isEmpty)
        XCTAssertTrue(BLASInfo.config.contains("OpenBLAS"), BLASInfo.config)
        let before = BLASInfo.threads
        XCTAssertGreaterThanOrEqual(before, 1)
        defer { BLASInfo.setThreads(before) }
        BLASInfo.setThreads(1)
        XCTAssertEqual(BLASInfo.threads, 1)
        BLASInfo.setThreads(0)                              // clamped to 1
        XCTAssertEqual(BLASInfo.threads, 1)
    }

    /// OpenBLAS reads OPENBLAS_CORETYPE when it loads: if the test process was started with it
    /// (the Makefile exports SkylakeX on AVX-512 machines), the chosen kernel must be that one.
    func testCoreTypeFromEnvironmentIsHonoured() throws {
        guard let forced = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"], !forced.isEmpty else {
            throw XCTSkip("OPENBLAS_CORETYPE is not set; run with OPENBLAS_CORETYPE=SkylakeX to check the kernel choice")
        }
        XCTAssertEqual(BLASInfo.coreName.lowercased(), forced.lowercased(),
                       "started with OPENBLAS_CORETYPE=\(forced) but OpenBLAS chose \(BLASInfo.coreName)")
        if forced.lowercased() == "skylakex" {
            XCTAssertEqual(BLASInfo.coreName.lowercased(), "skylakex")
        }
    }

    /// A scheduler divides the cores between its workers unless the user set OPENBLAS_NUM_THREADS
    /// (README, "BLAS speed": moe-run never changes a value you set).
    func testWorkersKeepTheUsersThreadCount() {
        XCTAssertEqual(BLASEnvironment.threadsValue(environment: ["OPENBLAS_NUM_THREADS": "2"], cores: 2, share: 2), "1")
        XCTAssertEqual(BLASEnvironment.threadsValue(environment: [:], cores: 8, share: 3), "2")
        XCTAssertEqual(BLASEnvironment.threadsValue(environment: [:], cores: 2, share: 4), "1")
        XCTAssertNil(BLASEnvironment.threadsValue(environment: ["OPENBLAS_NUM_THREADS": "1", BLASEnvironment.userThreadsVariable: "1"],
                                                  cores: 2, share: 1))
    }
}
