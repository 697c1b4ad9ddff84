// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "moe-run",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "MoECore", targets: ["MoECore"]),
        .library(name: "MoENN", targets: ["MoENN"]),
        .library(name: "MoEData", targets: ["MoEData"]),
        .library(name: "MoEHDF5", targets: ["MoEHDF5"]),
        .library(name: "MoESpec", targets: ["MoESpec"]),
        .library(name: "MoEStore", targets: ["MoEStore"]),
        .executable(name: "moe-run", targets: ["moe-run"]),
        .executable(name: "moe-bench", targets: ["moe-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // System libraries: include and link flags come from pkg-config.
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // Open MPI 4.1 (Debian: libopenmpi-dev, openmpi-bin): the MPI backend of the collectives (MoEMPI).
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        // prctl(2) for workers (header only).
        .systemLibrary(name: "CProcess", path: "Sources/CProcess"),
        // futex(2) and C11 atomics on shared memory, for the collectives (header only).
        .systemLibrary(name: "CShm", path: "Sources/CShm"),

        .target(name: "MoECore", dependencies: ["CBLAS"]),
        .target(name: "MoENN", dependencies: ["MoECore"]),
        .target(name: "MoEHDF5", dependencies: ["CHDF5"]),
        .target(name: "MoEData", dependencies: ["MoECore", "MoEHDF5"]),
        .target(name: "MoESpec", dependencies: ["Yams"]),
        .target(name: "MoEPlan", dependencies: ["MoESpec"]),
        .target(name: "MoEComm", dependencies: ["MoECore", "CShm"]),
        // The MPI backend of Communicator and the MPI world (init, split) for runs under mpirun/srun.
        .target(name: "MoEMPI", dependencies: ["MoECore", "MoEComm", "CMPI"]),
        // Step strategies that need a communicator: data, expert and pipeline parallel.
        .target(name: "MoEParallel", dependencies: ["MoECore", "MoENN", "MoEComm"]),
        .target(name: "MoEFusion", dependencies: ["MoECore"]),
        .target(name: "MoEStore", dependencies: ["MoECore", "MoENN", "MoEHDF5", "MoEData"]),
        // Compare tables and SVG plots of runs and sweeps (`moe-run report`).
        .target(name: "MoEReport", dependencies: ["MoEHDF5"]),
        .target(name: "MoERuntime", dependencies: ["MoECore", "MoENN", "MoEData", "MoEHDF5", "MoEStore", "MoESpec", "MoEPlan", "MoEComm", "MoEMPI", "MoEParallel", "MoEFusion", "CProcess"]),
        .executableTarget(name: "moe-run", dependencies: [
            "MoERuntime", "MoESpec", "MoEPlan", "MoEStore", "MoEReport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "moe-bench", dependencies: ["MoECore", "MoENN", "MoEData", "MoEHDF5", "MoEFusion", "MoEComm", "MoEMPI", "CMPI"]),
        // A process of the collectives' multi-process tests (MoECommTests start several; MoEMPITests run it under mpirun).
        .executableTarget(name: "moe-comm-peer", dependencies: ["MoEComm", "MoEMPI"]),

        .testTarget(name: "MoECoreTests", dependencies: ["MoECore"]),
        .testTarget(name: "MoENNTests", dependencies: ["MoENN", "MoEData"]),
        .testTarget(name: "MoEParallelTests", dependencies: ["MoEParallel", "MoENN", "MoEComm", "MoECore"]),
        .testTarget(name: "MoEHDF5Tests", dependencies: ["MoEHDF5"]),
        .testTarget(name: "MoEDataTests", dependencies: ["MoEData", "MoENN"]),
        .testTarget(name: "MoESpecTests", dependencies: ["MoESpec"], exclude: ["Resources"]),
        .testTarget(name: "MoEStoreTests", dependencies: ["MoEStore", "MoENN", "MoEHDF5", "MoEData"]),
        .testTarget(name: "MoEPlanTests", dependencies: ["MoEPlan", "MoESpec"]),
        .testTarget(name: "MoECommTests", dependencies: ["MoEComm"]),
        .testTarget(name: "MoEMPITests", dependencies: ["MoEMPI", "MoEComm"]),
        .testTarget(name: "MoEFusionTests", dependencies: ["MoEFusion"]),
        .testTarget(name: "MoEReportTests", dependencies: ["MoEReport"]),
        .testTarget(name: "MoERuntimeTests", dependencies: ["MoERuntime", "MoEPlan", "MoEFusion"]),
        .testTarget(name: "EndToEndTests", dependencies: ["MoEHDF5", "MoECore", "MoENN", "MoEStore", "CProcess"]),
        .testTarget(name: "TorchReferenceTests", dependencies: ["MoENN", "MoEHDF5", "MoECore", "MoEStore"]),
    ],
    swiftLanguageModes: [.v5]
)
