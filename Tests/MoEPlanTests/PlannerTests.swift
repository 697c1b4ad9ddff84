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

/// `split.strategy: branch`: data → (pretrain) → independent experts → one evaluate.
final class BranchPlannerTests: XCTestCase {
    private func spec(_ yaml: String) throws -> ExperimentSpec { try SpecLoader.load(yaml: yaml, file: "t.yaml") }

    func testBranchWithoutPretrainingHasIndependentExpertsAfterData() throws {
        let plan = Planner.plan(try spec("name: b\nexperts: 3\nsplit: {strategy: branch}\nparallelism: {mode: branch}\n"))
        XCTAssertEqual(plan.tasks.map(\.id), ["data", "expert-0", "expert-1", "expert-2", "evaluate"])
        XCTAssertEqual(plan.tasks.map(\.dependsOn), [[], ["data"], ["data"], ["data"], ["expert-0", "expert-1", "expert-2"]])
        XCTAssertEqual(plan.tasks.map(\.kind), [.data, .train, .train, .train, .evaluate])
        XCTAssertEqual(plan.task("expert-1")?.output, "tasks/expert-1.h5")
        XCTAssertEqual(plan.task("expert-1")?.inputs, ["tasks/data.h5:/data/train", "tasks/data.h5:/data/val"])
        XCTAssertNil(plan.task("train"), "no fused model yet")
        XCTAssertTrue(plan.task("expert-2")!.summary.contains("shard 2/3 of train (by domain)"), plan.task("expert-2")!.summary)
        XCTAssertTrue(plan.task("evaluate")!.inputs.contains("tasks/expert-0.h5:/model"))
    }

    func testPretrainedSeedPrecedesEveryExpertAndOverridesShowInTheSummaries() throws {
        let plan = Planner.plan(try spec("""
            name: b
            experts: 2
            train: {epochs: 3, lr: 0.01}
            split:
              strategy: branch
              shard_by: index
              pretrain_epochs: 2
              overrides: [{epochs: 1, seed: 9}, {lr: 0.02, batch_size: 16}]
            """))
        XCTAssertEqual(plan.tasks.map(\.id), ["data", "pretrain", "expert-0", "expert-1", "evaluate"])
        XCTAssertEqual(plan.task("expert-0")?.dependsOn, ["data", "pretrain"])
        XCTAssertEqual(plan.task("expert-1")?.inputs.last, "tasks/pretrain.h5:/model")
        let s0 = plan.task("expert-0")!.summary, s1 = plan.task("expert-1")!.summary
        XCTAssertTrue(s0.contains("pre-trained seed model") && s0.contains("for 1 epoch,") && s0.contains("seed 9"), s0)
        XCTAssertTrue(s1.contains("for 3 epochs") && s1.contains("lr 0.02") && s1.contains("batch 16"), s1)
        XCTAssertTrue(plan.task("evaluate")!.summary.contains("and the seed model"))
    }

    /// data, expert and pipeline modes: the train task is one task run by a group of workers.
    func testCoupledModesMakeTheTrainTaskAGroup() throws {
        let data = Planner.plan(try spec("name: p\nparallelism: {mode: data, workers: 3, compression: int8}\n"))
        XCTAssertEqual(data.task("train")?.workers, 3)
        XCTAssertTrue(data.task("train")!.summary.hasSuffix(", data-parallel over 3 workers (int8-compressed gradients)"), data.task("train")!.summary)
        XCTAssertEqual(data.task("data")?.workers, 1)
        let expert = Planner.plan(try spec("name: p\nexperts: 4\nsplit: {strategy: replicate}\nparallelism: {mode: expert, workers: 2}\n"))
        XCTAssertEqual(expert.task("train")?.workers, 2)
        XCTAssertTrue(expert.task("train")!.summary.hasSuffix(", expert-parallel over 2 workers"), expert.task("train")!.summary)
        let pipe = Planner.plan(try spec("name: p\nexperts: 2\nmodel: {blocks: 4}\nsplit: {strategy: layerwise}\nparallelism: {mode: pipeline, workers: 2, microbatches: 4}\n"))
        XCTAssertEqual(pipe.task("train")?.workers, 2)
        XCTAssertTrue(pipe.task("train")!.summary.hasPrefix("GPipe pipeline training of 2 stages (blocks 0-1, 2-3) of a dense residual MLP"), pipe.task("train")!.summary)
        XCTAssertTrue(pipe.task("train")!.summary.contains("over 2 workers, 4 micro-batches per batch"), pipe.task("train")!.summary)
        let branch = Planner.plan(try spec("name: p\nexperts: 2\nsplit: {strategy: branch}\nparallelism: {mode: branch, workers: 2}\n"))
        XCTAssertEqual(branch.tasks.map(\.workers), branch.tasks.map { _ in 1 }, "branch experts are independent one-process tasks")
    }
}

/// `split.pretrain_steps`: the pretrain task trains for steps, and its summary says so.
final class PretrainStepsPlannerTests: XCTestCase {
    func testPretrainTaskShowsSteps() throws {
        let spec = try SpecLoader.load(yaml: "name: p\nexperts: 4\nsplit: {strategy: replicate, pretrain_steps: 40}\n", file: "t.yaml")
        let plan = Planner.plan(spec)
        XCTAssertEqual(plan.tasks.map(\.id), ["data", "pretrain", "train", "evaluate"])
        XCTAssertEqual(plan.task("pretrain")?.summary, "pre-train the dense residual MLP (hidden 128, ffn 512) for 40 steps, to upcycle")
        XCTAssertEqual(plan.task("train")?.dependsOn, ["pretrain"])
        let none = Planner.plan(try SpecLoader.load(yaml: "name: p\nexperts: 4\nsplit: {strategy: replicate, pretrain_steps: 0}\n", file: "t.yaml"))
        XCTAssertEqual(none.tasks.map(\.id), ["data", "train", "evaluate"], "0 steps: no pre-training")
    }
}
