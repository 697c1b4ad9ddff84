import XCTest
import MoESpec
@testable import MoEPlan

final class PlannerTests: XCTestCase {
    private func spec(_ yaml: String) throws -> ExperimentSpec { try SpecLoader.load(yaml: yaml, file: "t.yaml") }

    func testDensePlanIsDataTrainEvaluateInDependencyOrder() throws {
        let plan = Planner.plan(try spec("name: p\n"))
        XCTAssertEqual(plan.tasks.map(\.id), ["data", "train", "evaluate"])
        XCTAssertEqual(plan.tasks.map(\.dependsOn), [[], ["data"], ["train"]])
        XCTAssertEqual(plan.tasks.map(\.output), ["tasks/data.h5", "tasks/train.h5", "tasks/evaluate.h5"])
        // Topological: every dependency appears before its dependant, and ids are unique.
        var seen = Set<String>()
        for t in plan.tasks {
            XCTAssertTrue(t.dependsOn.allSatisfy(seen.contains), "\(t.id) before its dependencies")
            XCTAssertTrue(seen.insert(t.id).inserted)
        }
    }

    func testPlanIsAPureFunctionOfTheSpec() throws {
        let s = try spec("name: p\ntrain: {epochs: 3}\n")
        XCTAssertEqual(Planner.plan(s), Planner.plan(s))
        XCTAssertEqual(Planner.plan(s).json(), Planner.plan(s).json())
        XCTAssertNotEqual(Planner.plan(s), Planner.plan(try spec("name: p\ntrain: {epochs: 4}\n")))
    }

    func testEvaluateReadsTheRequestedSplits() throws {
        let plan = Planner.plan(try spec("name: p\neval: {splits: [test]}\n"))
        XCTAssertEqual(plan.task("evaluate")?.inputs, ["tasks/train.h5:/model", "tasks/data.h5:/data/test"])
    }

    func testJSONRoundTripsAndTextListsEveryTask() throws {
        let plan = Planner.plan(try spec("name: p\n"))
        let decoded = try JSONDecoder().decode(Plan.self, from: Data(plan.json().utf8))
        XCTAssertEqual(decoded, plan)
        XCTAssertTrue(plan.json().contains("\"depends_on\""))
        let text = plan.text()
        XCTAssertTrue(text.hasPrefix("plan for p: 3 tasks"), text)
        XCTAssertTrue(text.contains("writes tasks/train.h5"), text)
    }
}
