import MoESpec

/// Words the task summaries share.
extension ExperimentSpec {
    /// How long a training task runs: `train.steps` ("2000 steps") when given, else `epochs`
    /// ("3 epochs", "1 epoch").
    func trainingLength(epochs: Int) -> String {
        if let steps = train.steps { return "\(steps) step\(steps == 1 ? "" : "s")" }
        return "\(epochs) epoch\(epochs == 1 ? "" : "s")"
    }

    /// The pre-training length: "`split.pretrain_steps` steps" or "`split.pretrain_epochs` epochs".
    var pretrainLength: String {
        let (n, unit) = split.pretrainSteps > 0 ? (split.pretrainSteps, "step") : (split.pretrainEpochs, "epoch")
        return "\(n) \(unit)\(n == 1 ? "" : "s")"
    }

    /// The model a task trains, with its shape: "residual MLP (hidden 128, ffn 512)" or
    /// "transformer LM (context 64, hidden 128, 4 heads, ffn 512)"; `blocks` adds ", 2 blocks".
    func modelWords(blocks: Bool = false) -> String {
        let m = model
        let count = blocks ? ", \(m.blocks) block\(m.blocks == 1 ? "" : "s")" : ""
        guard let t = m.transformer else { return "residual MLP (hidden \(m.hidden), ffn \(m.ffn)\(count))" }
        return "transformer LM (context \(t.context), hidden \(m.hidden), \(t.heads) head\(t.heads == 1 ? "" : "s"), ffn \(m.ffn)\(count))"
    }
}
