import MoECore
import MoEComm
import MoENN

/// Moving a pipeline's state between its ranks for checkpoints, evaluation and the final model.
///
/// Every rank computes and updates only its own stage, so the other stages' entries of its
/// `model` are stale. `gather` brings every stage's current parameters (and optimizer state) to
/// rank 0, by one point-to-point message per other rank; rank 0 then holds the whole model, and
/// the whole optimizer state in an optimizer over `model.parameters` (state tensors named as a
/// dense train task names them), and writes files in the dense layout. Resuming needs no
/// message: every rank loads the whole checkpoint and takes its stage (`adopt`).
extension PipelineTrainer {
    /// Floats of a message: the stage's parameter values, then (with `state`) its optimizer's
    /// state tensors in the optimizer's order.
    private func layout(stage s: Int, state: Bool) -> (parameters: [Parameter], stateNames: [String], floats: Int) {
        let ps = model.stageParameters(s, of: ranges)
        let template = state ? config.makeOptimizer(ps).state : []
        return (ps, template.map(\.name), ps.scalarCount + template.reduce(0) { $0 + $1.tensor.count })
    }

    /// Collective (every rank calls it): rank 0's `model.parameters` end up holding every stage's
    /// current values and, when `full` is given (rank 0's optimizer over `model.parameters`),
    /// `full`'s state tensors and step count every stage's optimizer state. Other ranks send,
    /// then every rank meets at a barrier.
    public func gather(optimizer full: Optimizer? = nil, withState: Bool) throws {
        let me = communicator.rank
        guard communicator.worldSize > 1 || full != nil else { return }
        if me != 0 {
            var message: [Float] = []
            for p in parameters { message += UnsafeBufferPointer(p.value.buffer) }
            if withState { for (_, tensor) in optimizer.state { message += UnsafeBufferPointer(tensor.buffer) } }
            try message.withUnsafeBytes { try communicator.send($0, to: 0) }
            // Wait until rank 0 has everything: a rank that exits right after (an interrupt, the
            // end of training) must not end the group while rank 0 still reads its message.
            try communicator.barrier()
            return
        }
        var byName: [String: Tensor] = [:]
        if let full { for (name, tensor) in full.state { byName[name] = tensor } }
        // Rank 0's own optimizer state.
        if let full, withState {
            for (name, tensor) in optimizer.state { byName[name]!.copy(from: tensor) }
            full.stepCount = optimizer.stepCount
        }
        for s in 0..<stageCount where rank(ofStage: s) != 0 {
            let (ps, names, floats) = layout(stage: s, state: withState)
            var buffer = [Float](repeating: 0, count: floats)
            let got = try buffer.withUnsafeMutableBytes { try communicator.receive(into: $0, from: rank(ofStage: s)) }
            guard got == floats * 4 else {
                throw CollectiveError.invalidArgument("pipeline: stage \(s)'s state is \(got) bytes, expected \(floats * 4)")
            }
            buffer.withUnsafeBufferPointer { b in
                var offset = 0
                for p in ps {
                    p.value.data.update(from: b.baseAddress! + offset, count: p.value.count)
                    offset += p.value.count
                }
                if withState, full != nil {
                    for name in names {
                        let tensor = byName[name]!
                        tensor.data.update(from: b.baseAddress! + offset, count: tensor.count)
                        offset += tensor.count
                    }
                }
            }
        }
        try communicator.barrier()
    }

    /// Takes this rank's stages' optimizer state and step count from `full` (an optimizer over
    /// `model.parameters` loaded from a checkpoint). The parameters are shared with the model.
    public func adopt(optimizer full: Optimizer) {
        var byName: [String: Tensor] = [:]
        for (name, tensor) in full.state { byName[name] = tensor }
        for (name, tensor) in optimizer.state { tensor.copy(from: byName[name]!) }
        optimizer.stepCount = full.stepCount
    }
}
