import Foundation
import MoEHDF5
import XCTest

/// `make install` (issue 11 item 13): the binary it installs works on its own, from any
/// directory, with nothing of the build tree next to it.
final class InstallEndToEndTests: XCTestCase {
    /// Installs the built binary into a temporary PREFIX with the Makefile's own `install` target
    /// (`-o app`: the binary of this test run, not rebuilt), then runs `validate` and a short
    /// run by the name `moe-run` on PATH from an unrelated directory, without OPENBLAS_CORETYPE
    /// (so the binary re-executes itself through /proc/self/exe from its installed place, and its
    /// workers are that installed binary too); then `make uninstall` removes it.
    func testMakeInstallPutsAWorkingMoeRunOnPath() throws {
        let prefix = FileManager.default.temporaryDirectory.appendingPathComponent("moe-run-prefix-\(UUID().uuidString)").path
        let buildDirectory = URL(fileURLWithPath: CLI.binary).deletingLastPathComponent().path
        let make = ["-C", CLI.repositoryRoot.path, "--no-print-directory", "-o", "app", "-o", "setup", "PREFIX=" + prefix, "APP=" + buildDirectory]
        let install = try CLI.tool("/usr/bin/make", make + ["install"])
        XCTAssertEqual(install.status, 0, install.stdout + install.stderr)
        let installed = prefix + "/bin/moe-run"
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: installed), install.stdout)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: installed)[.type] as? FileAttributeType, .typeRegular,
                       "a copy, not a link into the build tree")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: prefix + "/bin"), ["moe-run"])

        let dir = try CLI.workspace(tinySpec(epochs: 1))
        let script = "moe-run validate spec.yaml\nmoe-run spec.yaml --quiet\n"
        let r = try DocsEndToEndTests.shell(script, in: dir, path: prefix + "/bin",
                                            unset: ["OPENBLAS_CORETYPE", "MOE_RUN_BLAS_CONFIGURED", "MOE_RUN_BIN"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "spec.yaml: valid (tiny)")
        let runDir = dir + "/" + (lines.last ?? "")
        XCTAssertEqual(try H5File.open(runDir + "/run.h5").stringAttribute("status"), "complete", r.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: runDir + "/tasks/train.h5"))
        CLI.assertNoProcesses(in: dir)

        let uninstall = try CLI.tool("/usr/bin/make", make + ["uninstall"])
        XCTAssertEqual(uninstall.status, 0, uninstall.stdout + uninstall.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: installed))
    }
}
