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
        .executable(name: "moe-bench", targets: ["moe-bench"]),
    ],
    targets: [
        // System libraries: flags come from pkg-config, never unsafeFlags.
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),

        .target(name: "MoECore", dependencies: ["CBLAS"]),
        .target(name: "MoENN", dependencies: ["MoECore"]),
        .target(name: "MoEHDF5", dependencies: ["CHDF5"]),
        .target(name: "MoEData", dependencies: ["MoECore", "MoEHDF5"]),
        .executableTarget(name: "moe-bench", dependencies: ["MoECore", "MoENN", "MoEData"]),

        .testTarget(name: "MoECoreTests", dependencies: ["MoECore"]),
        .testTarget(name: "MoENNTests", dependencies: ["MoENN", "MoEData"]),
        .testTarget(name: "MoEHDF5Tests", dependencies: ["MoEHDF5"]),
        .testTarget(name: "MoEDataTests", dependencies: ["MoEData", "MoENN"]),
    ],
    swiftLanguageModes: [.v5]
)
