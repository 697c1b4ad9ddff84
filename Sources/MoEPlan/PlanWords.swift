import MoESpec

/// Words the task summaries share.
extension ExperimentSpec {
    /// How long a training task runs: `train.steps` ("2000 steps") when given, else `epochs`
    /// ("3 epochs", "1 epoch").
    func trainingLength(epochs: Int) -> String {
        if let steps = train.steps { return "\(steps) step\(steps == 1 ? "" : "s")" }
        return "\(epochs) epoch\(epochs == 1 ? "" : "s")"
    }
}
