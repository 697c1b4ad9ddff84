/// The layer-local step strategy (decoupled greedy learning, see `LayerwiseModel`): every stage
/// trained on its own auxiliary head's loss, on the same batch. The report's `stages` holds each
/// stage's objective and `sums` the last stage's, i.e. the stacked model's. A non-finite stage
/// loss is reported as `loss` (the first such stage's), with a non-finite gradient norm.
extension LayerwiseTrainer: StepStrategy {
    public func trainStep(on batch: Model.Batch, stop: Bool = false) -> StepReport {
        let r = trainStep(batch)
        let last = r.stageSums.last!
        var report = StepReport(loss: r.stageLoss.first { !$0.isFinite } ?? r.loss, correct: last.correct, scored: last.scored,
                                gradNorm: r.gradNorm, lr: r.lr, stop: stop)
        report.sums.lossSum = last.lossSum
        report.stages = r.stageSums
        return report
    }
}
