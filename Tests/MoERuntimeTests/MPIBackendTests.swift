import Foundation
@testable import MoERuntime
@testable import MoESpec
import XCTest

/// `parallelism.backend` (ARCHITECTURE §5.5): which backend a run takes from the spec and the
/// environment an MPI launcher leaves, and the one-line refusals (exit 2) of launches that cannot work.
final class MPIBackendTests: XCTestCase {
    private func spec(_ backend: String) throws -> ExperimentSpec {
        try SpecLoader.load(yaml: "name: x\nparallelism: {mode: data, workers: 2, backend: \(backend)}\n", file: "spec.yaml")
    }

    private let mpirun = ["OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"]
    private let srun = ["SLURM_STEP_ID": "0", "SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4"]

    func testAutoIsMPIExactlyWhenALauncherStartedTheProcess() throws {
        XCTAssertNil(try MPIRun.launch(for: try spec("auto"), environment: [:]))
        XCTAssertEqual(try MPIRun.launch(for: try spec("auto"), environment: mpirun)?.launcher, "mpirun")
        XCTAssertEqual(try MPIRun.launch(for: try spec("auto"), environment: srun)?.rank, 3)
        XCTAssertEqual(try MPIRun.launch(for: try spec("mpi"), environment: mpirun)?.expectedSize, 2)
        XCTAssertNil(try MPIRun.launch(for: try spec("shm"), environment: [:]))
        XCTAssertNil(try MPIRun.launch(for: try spec("shm"), environment: ["OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0"]),
                     "one rank under mpirun runs the shm way when asked to")
    }

    func testMPIWithoutALaunchIsRefused() throws {
        XCTAssertThrowsError(try MPIRun.launch(for: try spec("mpi"), environment: ["SLURM_JOB_ID": "7"])) { error in
            XCTAssertEqual((error as? RuntimeError)?.exitCode, 2)
            XCTAssertEqual("\(error)", "parallelism.backend: mpi, but this moe-run was not started by mpirun or srun; run `mpirun -np N moe-run SPEC.yaml` (or `srun -n N moe-run SPEC.yaml`), or set parallelism.backend: auto")
        }
    }

    func testSharedMemoryUnderSeveralRanksIsRefused() throws {
        XCTAssertThrowsError(try MPIRun.launch(for: try spec("shm"), environment: srun)) { error in
            XCTAssertEqual((error as? RuntimeError)?.exitCode, 2)
            XCTAssertEqual("\(error)", "parallelism.backend: shm, but srun started 4 processes of moe-run (each would run the whole plan); run moe-run without srun, or set parallelism.backend: auto or mpi")
        }
    }

    func testBackendIsAChoice() throws {
        XCTAssertThrowsError(try spec("mpich")) { error in
            XCTAssertEqual("\(error)", "spec.yaml:2:48: parallelism.backend: unknown value \"mpich\"; allowed: auto, shm, mpi")
            XCTAssertEqual((error as? SpecError)?.hint, "did you mean mpi?")
        }
    }
}
