import Foundation
import MoECore
@testable import MoERuntime
import XCTest

/// What a sweep hands its trial processes (`SweepRunner.trialEnvironment`).
final class SweepEnvironmentTests: XCTestCase {
    func testTrialsGetTheirShareOfTheCoresAndOneBLASThreadForThemselves() {
        let base = ["PATH": "/usr/bin", "OPENBLAS_CORETYPE": "SkylakeX", RunLog.progressVariable: "pipe"]
        let two = SweepRunner.trialEnvironment(base, cores: 8, jobs: 2)
        XCTAssertEqual(two[BLASEnvironment.coresVariable], "4", "8 cores for 2 trials at once")
        XCTAssertEqual(two["OPENBLAS_NUM_THREADS"], "1", "the trial process only schedules")
        XCTAssertNil(two[RunLog.progressVariable])
        XCTAssertEqual(two["PATH"], "/usr/bin")
        XCTAssertEqual(two["OPENBLAS_CORETYPE"], "SkylakeX")
        XCTAssertEqual(SweepRunner.trialEnvironment(base, cores: 2, jobs: 4)[BLASEnvironment.coresVariable], "1", "at least one core")
    }

    func testAUsersOwnBLASThreadCountIsLeftAlone() {
        let user = ["OPENBLAS_NUM_THREADS": "3", BLASEnvironment.userThreadsVariable: "1"]
        XCTAssertEqual(SweepRunner.trialEnvironment(user, cores: 4, jobs: 1)["OPENBLAS_NUM_THREADS"], "3")
    }
}
