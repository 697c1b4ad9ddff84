import MoESpec
@testable import MoEPlan
import XCTest

/// The plans of `fusion.method: mix` / `ensemble` (branch) and of expert merging (`replicate` with
/// `fusion.method: average`).
final class MixMergePlannerTests: XCTestCase {
    private func spec(_ yaml: String) throws -> ExperimentSpec { try SpecLoader.load(yaml: yaml, file: "t.yaml") }

    func testMixFusesIntoAnMoEThenFinetunesIt() throws {
        let plan = Planner.plan(try spec("""
            name: b
            experts: 3
            model: {blocks: 3, moe_blocks: [1, 2]}
            split: {strategy: branch}
            router: {type: topk, k: 1}
            fusion: {method: mix, finetune: {epochs: 1}}
            """))
        XCTAssertEqual(plan.tasks.map(\.id), ["data", "expert-0", "expert-1", "expert-2", "fuse", "finetune", "evaluate"])
        let fuse = try XCTUnwrap(plan.task("fuse"))
        XCTAssertTrue(fuse.summary.contains("mix (BTX: the experts' FFNs of blocks 1, 2 become the experts of MoE blocks with a topk router (k 1)"), fuse.summary)
        XCTAssertTrue(plan.task("finetune")!.summary.contains("the mixed MoE model"), plan.task("finetune")!.summary)
    }

    func testEnsembleIsFusedAndEvaluatedWithoutFinetuning() throws {
        let plan = Planner.plan(try spec("name: b\nexperts: 2\nsplit: {strategy: branch}\nfusion: {method: ensemble}\n"))
        XCTAssertEqual(plan.tasks.map(\.id), ["data", "expert-0", "expert-1", "fuse", "evaluate"])
        XCTAssertEqual(plan.task("evaluate")?.dependsOn, ["fuse"])
    }

    func testReplicateAverageMergesTheTrainedMoEAfterTrain() throws {
        let plan = Planner.plan(try spec("name: m\nexperts: 4\nsplit: {strategy: replicate}\nfusion: {method: average, weights: data_size}\n"))
        XCTAssertEqual(plan.tasks.map(\.id), ["data", "train", "fuse", "evaluate"])
        XCTAssertEqual(plan.tasks.map(\.kind), [.data, .train, .fuse, .evaluate])
        let fuse = try XCTUnwrap(plan.task("fuse"))
        XCTAssertEqual(fuse.dependsOn, ["train"])
        XCTAssertEqual(Array(fuse.inputs.prefix(2)), ["tasks/train.h5:/model", "tasks/train.h5:/router"])
        XCTAssertTrue(fuse.summary.contains("merge each MoE layer's 4 experts into one dense FFN (weighted by routing load)"), fuse.summary)
        XCTAssertEqual(plan.task("evaluate")?.dependsOn, ["fuse"])
        XCTAssertEqual(Array(plan.task("evaluate")!.inputs.prefix(2)), ["tasks/train.h5:/model", "tasks/fuse.h5:/model"])
    }
}
