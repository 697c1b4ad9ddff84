import Foundation
@testable import MoERuntime
import XCTest

/// `RunLog.timestamp`: the log's and run.h5's time stamps without Foundation's formatter, in
/// exactly its form.
final class RunLogTimestampTests: XCTestCase {
    func testTimestampsAreThoseOfISO8601DateFormatter() {
        let iso = ISO8601DateFormatter()
        for seconds in [0, 951_782_400, 1_764_913_734, 1_764_913_734.999, 4_102_444_799.5] as [Double] {
            let date = Date(timeIntervalSince1970: seconds)
            XCTAssertEqual(RunLog.timestamp(date), iso.string(from: date), "\(seconds)")
        }
        XCTAssertEqual(RunLog.timestamp(Date(timeIntervalSince1970: 1_764_913_734.999)), "2025-12-05T05:48:54Z")
    }
}
