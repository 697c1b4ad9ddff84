import MoESpec
@testable import MoEPlan
import XCTest

/// Fusion in the plan (issue 6): branch experts → fuse → (finetune) → evaluate; layerwise
/// stacking → finetune → evaluate.
final class FusionPlannerTests: XCTestCase {
    private func spec(_ yaml: String) throws -> ExperimentSpec { try SpecLoader.load(yaml: yaml, file: "t.yaml") }

    func testFuseReadsTheSeedAndEveryExpertThenFinetuneThenEvaluate() throws {
        let plan = Planner.plan(try spec("""
            name: b
            experts: 2
            split: {strategy: branch, pretrain_epochs: 1}
            fusion: {method: ties, density: 0.3, finetune: {epochs: 2, lr: 0.0005}}
            """))
        XCTAssertEqual(plan.tasks.map(\.id), ["data", "pretrain", "expert-0", "expert-1", "fuse", "finetune", "evaluate"])
        XCTAssertEqual(plan.tasks.map(\.kind), [.data, .pretrain, .train, .train, .fuse, .finetune, .evaluate])
        let fuse = try XCTUnwrap(plan.task("fuse"))
        XCTAssertEqual(fuse.dependsOn, ["expert-0", "expert-1"])
        XCTAssertEqual(fuse.output, "tasks/fuse.h5")
        XCTAssertEqual(Array(fuse.inputs.prefix(3)), ["tasks/pretrain.h5:/model", "tasks/expert-0.h5:/model", "tasks/expert-1.h5:/model"])
        XCTAssertTrue(fuse.summary.contains("ties (density 0.3, lambda 1.0, uniform weights)"), fuse.summary)
        let finetune = try XCTUnwrap(plan.task("finetune"))
        XCTAssertEqual(finetune.dependsOn, ["fuse"])
        XCTAssertEqual(finetune.inputs.last, "tasks/fuse.h5:/model")
        XCTAssertTrue(finetune.summary.contains("on all of train for 2 epochs, adamw lr 0.0005"), finetune.summary)
        XCTAssertEqual(plan.task("evaluate")?.dependsOn, ["finetune"])
        XCTAssertTrue(plan.task("evaluate")!.inputs.contains("tasks/finetune.h5:/model"))
        XCTAssertTrue(plan.task("evaluate")!.inputs.contains("tasks/fuse.h5:/model"))
    }

    func testFusionWithoutFinetuneEvaluatesTheFusedModelAsFinal() throws {
        let plan = Planner.plan(try spec("name: b\nexperts: 2\nsplit: {strategy: branch, shard_by: none, seed_model: independent}\nfusion: {method: average, weights: val_loss}\n"))
        XCTAssertEqual(plan.tasks.map(\.id), ["data", "expert-0", "expert-1", "fuse", "evaluate"])
        XCTAssertEqual(plan.task("evaluate")?.dependsOn, ["fuse"])
        let s = plan.task("expert-1")!.summary
        XCTAssertTrue(s.contains("train its own random initialisation (seed 0, expert 1) on all of train"), s)
        XCTAssertTrue(plan.task("fuse")!.summary.contains("average (val_loss weights, temperature 1.0)"))
    }

    func testStackedLayerwiseModelIsFinetuned() throws {
        let plan = Planner.plan(try spec("""
            name: l
            experts: 2
            split: {strategy: layerwise}
            train: {local: true}
            fusion: {method: stack, finetune: {epochs: 1}}
            """))
        XCTAssertEqual(plan.tasks.map(\.id), ["data", "train", "finetune", "evaluate"])
        XCTAssertEqual(plan.task("finetune")?.inputs.last, "tasks/train.h5:/model")
        XCTAssertTrue(plan.task("finetune")!.summary.hasPrefix("fine-tune the stacked model"))
        XCTAssertEqual(plan.task("evaluate")?.dependsOn, ["finetune"])
    }
}
