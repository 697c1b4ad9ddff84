import Foundation
import XCTest
@testable import MoEReport

/// Seed statistics of `moe-run report`: the Student t distribution against tabulated quantiles
/// and closed forms, the statistics of replicates, and trials grouped by setting.
final class StatisticsTests: XCTestCase {
    /// Two-sided critical values from standard tables (R `qt`, to 12+ digits).
    func testQuantileMatchesTabulatedValues() {
        let table: [(p: Double, nu: Double, t: Double)] = [
            (0.975, 1, 12.7062047361747), (0.975, 2, 4.30265272974946), (0.975, 3, 3.18244630528371),
            (0.975, 4, 2.77644510519779), (0.975, 5, 2.57058183563631), (0.975, 9, 2.26215716279820),
            (0.975, 29, 2.04522964213270), (0.975, 30, 2.04227245630124), (0.995, 3, 5.84090930973337),
            (0.95, 10, 1.81246112281168), (0.9, 1, 3.07768353717525),
        ]
        for (p, nu, t) in table {
            XCTAssertEqual(StudentT.quantile(p, degreesOfFreedom: nu), t, accuracy: 1e-9 * t, "t(\(p), \(nu))")
            XCTAssertEqual(StudentT.quantile(1 - p, degreesOfFreedom: nu), -t, accuracy: 1e-9 * t, "symmetric")
        }
        XCTAssertEqual(StudentT.quantile(0.975, degreesOfFreedom: 1e7), 1.959963984540054, accuracy: 1e-6, "→ the normal quantile")
        XCTAssertEqual(StudentT.quantile(0.5, degreesOfFreedom: 3), 0)
    }

    /// ν = 1 (Cauchy): t_p = tan(π(p − ½)); ν = 2: t_p = (2p − 1) / √(2p(1 − p)).
    func testQuantileMatchesClosedFormsForOneAndTwoDegreesOfFreedom() {
        for p in stride(from: 0.01, through: 0.999, by: 0.0137) {
            let cauchy = tan(Double.pi * (p - 0.5))
            XCTAssertEqual(StudentT.quantile(p, degreesOfFreedom: 1), cauchy, accuracy: 1e-10 * max(1, abs(cauchy)), "p = \(p)")
            let two = (2 * p - 1) / (2 * p * (1 - p)).squareRoot()
            XCTAssertEqual(StudentT.quantile(p, degreesOfFreedom: 2), two, accuracy: 1e-10 * max(1, abs(two)), "p = \(p)")
        }
    }

    /// F(t; 2) = ½ + t / (2√(2 + t²)); F(1; 1) = ¾; F(0) = ½; F(−t) = 1 − F(t); the quantile inverts the CDF.
    func testCDF() {
        for t in [-3.0, -0.4, 0, 0.7, 2, 9] {
            XCTAssertEqual(StudentT.cdf(t, degreesOfFreedom: 2), 0.5 + t / (2 * (2 + t * t).squareRoot()), accuracy: 1e-14, "t = \(t)")
        }
        XCTAssertEqual(StudentT.cdf(1, degreesOfFreedom: 1), 0.75, accuracy: 1e-14)
        XCTAssertEqual(StudentT.cdf(0, degreesOfFreedom: 7.5), 0.5)
        XCTAssertEqual(StudentT.cdf(-1.3, degreesOfFreedom: 6) + StudentT.cdf(1.3, degreesOfFreedom: 6), 1, accuracy: 1e-14)
        for nu in [1.0, 2.5, 6, 40] {
            for p in [0.6, 0.9, 0.975, 0.999] {
                XCTAssertEqual(StudentT.cdf(StudentT.quantile(p, degreesOfFreedom: nu), degreesOfFreedom: nu), p, accuracy: 1e-12)
            }
        }
    }

    func testReplicateStatistics() throws {
        let s = try XCTUnwrap(ReplicateStatistics([0.97, 0.98, 0.975]))
        XCTAssertEqual(s.n, 3)
        XCTAssertEqual(s.mean, 0.975, accuracy: 1e-15)
        XCTAssertEqual(s.sd!, 0.005, accuracy: 1e-15)
        // 0.975 ± t₀.₉₇₅(2) · 0.005 / √3 = 0.975 ± 0.0124207.
        XCTAssertEqual(s.ci95!.low, 0.975 - 4.30265272974946 * 0.005 / 3.0.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(s.ci95!.high, 0.987420689, accuracy: 1e-9)
        XCTAssertEqual(s.meanText, "0.9750 ± 0.0050")
        XCTAssertEqual(s.intervalText, "[0.9626, 0.9874]")
        let one = try XCTUnwrap(ReplicateStatistics([0.5, .nan]))
        XCTAssertEqual(one.n, 1)
        XCTAssertNil(one.sd)
        XCTAssertNil(one.ci95)
        XCTAssertEqual(one.meanText, "0.5")
        XCTAssertEqual(one.intervalText, "")
        XCTAssertNil(ReplicateStatistics([]))
        let same = try XCTUnwrap(ReplicateStatistics([2, 2]))
        XCTAssertEqual(same.sd, 0)
        XCTAssertEqual(same.meanText, "2")
    }

    static let summary = CompareTable(
        columns: ["trial", "router.k", "seed", "status", "test_accuracy", "wall_seconds", "run_dir"],
        rows: [["1", "1", "1", "complete", "0.97", "1.5", ""], ["2", "1", "2", "complete", "0.98", "1.5", ""],
               ["3", "1", "3", "complete", "0.975", "1.5", ""], ["4", "2", "1", "complete", "0.90", "2", ""],
               ["5", "2", "2", "failed", "", "", ""], ["6", "2", "3", "complete", "0.92", "3", ""]])

    func testTrialsThatDifferOnlyInSeedAreGrouped() throws {
        let g = try XCTUnwrap(try TrialGroups(table: Self.summary, sweptKeys: ["router.k", "seed"], groupBy: nil))
        XCTAssertEqual(g.groupKeys, ["router.k"])
        XCTAssertEqual(g.pooledKeys, ["seed"])
        XCTAssertEqual(g.groups.map(\.values), [["1"], ["2"]])
        XCTAssertEqual(g.groups.map(\.trials), [["1", "2", "3"], ["4", "6"]], "the failed trial is left out")
        XCTAssertEqual(g.table.columns, ["router.k", "n", "test_accuracy", "test_accuracy_ci95"], "wall_seconds only in the CSV")
        XCTAssertEqual(g.table.rows, [["1", "3", "0.9750 ± 0.0050", "[0.9626, 0.9874]"], ["2", "2", "0.910 ± 0.014", "[0.783, 1.037]"]])
        XCTAssertEqual(g.heading, "Grouped by router.k, pooled over seed: n trials, mean ± sd, 95 % CI of the mean (Student t, n − 1 df)")
        let csv = g.csv().split(separator: "\n").map(String.init)
        XCTAssertEqual(csv[0], "router.k,n,trials,test_accuracy_n,test_accuracy_mean,test_accuracy_sd,test_accuracy_ci95_low,test_accuracy_ci95_high,"
                            + "wall_seconds_n,wall_seconds_mean,wall_seconds_sd,wall_seconds_ci95_low,wall_seconds_ci95_high")
        XCTAssertEqual(csv[1], "1,3,1 2 3,3,0.975,0.005,0.962579311,0.987420689,3,1.5,0,1.5,1.5")
        // k = 2: 0.91 ± t₀.₉₇₅(1) · 0.0141421 / √2 = 0.91 ± 0.127062.
        XCTAssertEqual(csv[2], "2,2,4 6,2,0.91,0.0141421356,0.782937953,1.03706205,2,2.5,0.707106781,-3.85310237,8.85310237")

        var sorted = g
        sorted.sort(by: "test_accuracy")
        XCTAssertEqual(sorted.groups.map(\.values), [["1"], ["2"]], "accuracy: descending")
        sorted.sort(by: "wall_seconds")
        XCTAssertEqual(sorted.groups.map(\.values), [["1"], ["2"]])
        sorted.sort(by: "router.k")
        XCTAssertEqual(sorted.groups.map(\.values), [["1"], ["2"]])
    }

    func testGroupByOtherKeysAndItsErrors() throws {
        let bySeed = try XCTUnwrap(try TrialGroups(table: Self.summary, sweptKeys: ["router.k", "seed"], groupBy: ["seed"]))
        XCTAssertEqual(bySeed.groupKeys, ["seed"])
        XCTAssertEqual(bySeed.pooledKeys, ["router.k"])
        XCTAssertEqual(bySeed.groups.map(\.trials), [["1", "4"], ["2"], ["3", "6"]])
        XCTAssertEqual(bySeed.table.rows.map { Array($0.prefix(2)) }, [["1", "2"], ["2", "1"], ["3", "2"]])
        XCTAssertEqual(bySeed.table.rows[1][3], "", "one trial: no interval")

        XCTAssertNil(try TrialGroups(table: Self.summary, sweptKeys: ["router.k"], groupBy: nil), "nothing to pool without a seed key")
        let every = try XCTUnwrap(try TrialGroups(table: Self.summary, sweptKeys: ["router.k", "seed"], groupBy: ["router.k", "seed"]))
        XCTAssertEqual(every.groups.count, 5)
        XCTAssertTrue(every.heading.contains("pooled over nothing (one trial per group)"))
        XCTAssertThrowsError(try TrialGroups(table: Self.summary, sweptKeys: ["router.k", "seed"], groupBy: ["experts"])) {
            XCTAssertEqual(($0 as? ReportError)?.description, "--group-by: \"experts\" is not a swept key; the swept keys are: router.k, seed")
            XCTAssertEqual(($0 as? ReportError)?.exitCode, 2)
        }
        XCTAssertTrue(Report.isReplicateKey("data.seed") && Report.isReplicateKey("seed") && !Report.isReplicateKey("seeds"))
    }
}
