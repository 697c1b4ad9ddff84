import XCTest
@testable import MoEMPI

/// Launch detection reads only the environment (it must work before MPI_Init, and a plain
/// process must never initialise MPI).
final class MPILaunchEnvironmentTests: XCTestCase {
    func testPlainEnvironmentIsNotLaunched() {
        XCTAssertNil(MPILaunchEnvironment.detect(["PATH": "/usr/bin", "HOME": "/root"]))
        XCTAssertFalse(MPIWorld.isLaunchedByMPI(environment: [:]))
    }

    func testOpenMPIMpirun() {
        let e = MPILaunchEnvironment.detect(["OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "2", "PMIX_RANK": "2"])
        XCTAssertEqual(e, MPILaunchEnvironment(launcher: "mpirun", rank: 2, expectedSize: 4))
    }

    func testPMIxAndPMI() {
        XCTAssertEqual(MPILaunchEnvironment.detect(["PMIX_RANK": "1", "SLURM_STEP_NUM_TASKS": "3", "SLURM_STEP_ID": "0", "SLURM_PROCID": "1"]),
                       MPILaunchEnvironment(launcher: "PMIx", rank: 1, expectedSize: 3))
        XCTAssertEqual(MPILaunchEnvironment.detect(["PMI_RANK": "0", "PMI_SIZE": "2"]),
                       MPILaunchEnvironment(launcher: "PMI", rank: 0, expectedSize: 2))
    }

    func testSlurmStepOfSeveralTasksButNotABatchScript() {
        XCTAssertEqual(MPILaunchEnvironment.detect(["SLURM_STEP_ID": "0", "SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "8", "SLURM_JOB_ID": "7"]),
                       MPILaunchEnvironment(launcher: "srun", rank: 3, expectedSize: 8))
        // The batch script (no step), or a one-task step, is a plain run.
        XCTAssertNil(MPILaunchEnvironment.detect(["SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_NTASKS": "8"]))
        XCTAssertNil(MPILaunchEnvironment.detect(["SLURM_STEP_ID": "0", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"]))
    }

    func testInitializeOutsideALaunchRefusesWithoutCallingMPI() {
        XCTAssertThrowsError(try MPIWorld.initialize(environment: [:])) { error in
            XCTAssertEqual(error as? MPIError, .notLaunched)
            XCTAssertEqual("\(error)", "MPI: this process was not started by mpirun or srun (no OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK or multi-task Slurm step in the environment)")
        }
        XCTAssertNil(MPIWorld.current)
    }
}
