/// How an MoE layer's routed rows reach their experts and come back (the dispatch → compute →
/// return part of route → dispatch → compute → combine, as the token dispatchers of megablocks
/// and Megatron-Core split it). `MoELayer` routes, gathers each assignment's input row grouped
/// by expert (`router.routing`), hands the rows to its `dispatcher`, then combines the returned
/// rows with the gates. The layer is the same whatever the dispatcher; swapping the dispatcher
/// changes only where the experts run.
///
/// `LocalExpertDispatcher` (the default) runs every expert in this process. Expert parallelism
/// (`ExpertParallelDispatcher`, MoEParallel) sends the rows to the rank that owns each expert;
/// that module owns the communicator, so this one never imports it. Layers cannot throw, so a
/// dispatcher that can fail keeps its error for the step to throw after the pass.
public protocol ExpertDispatcher: AnyObject {
    /// Writes into `output` each assignment's expert output, in the order of `input` (the rows of
    /// `layer.router.routing`, grouped by expert). `training` as in `ForwardContext`; a training
    /// pass keeps what `backward` needs.
    func forward(_ layer: MoELayer, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, training: Bool)
    /// The backward of the last training `forward` on the same `input`: accumulates the experts'
    /// weight gradients and writes ∂L/∂input into `dIn` from ∂L/∂output in `dOut` (both in
    /// assignment order).
    func backward(_ layer: MoELayer, input: UnsafePointer<Float>, dOut: UnsafePointer<Float>, dIn: UnsafeMutablePointer<Float>)
}

/// Every expert in this process, one GEMM pair per expert on its contiguous rows, in the
/// layer's own buffers (the default dispatcher).
public final class LocalExpertDispatcher: ExpertDispatcher {
    public init() {}

    public func forward(_ layer: MoELayer, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, training: Bool) {
        layer.expertsForward(0..<layer.config.experts, offsets: layer.router.routing.offsets, input: input,
                             pre: layer.pre.data, act: layer.act.data, out: output, training: training)
    }

    public func backward(_ layer: MoELayer, input: UnsafePointer<Float>, dOut: UnsafePointer<Float>, dIn: UnsafeMutablePointer<Float>) {
        layer.expertsBackward(0..<layer.config.experts, offsets: layer.router.routing.offsets, dOut: dOut, dAct: layer.dAct.data,
                              input: input, pre: layer.pre.data, act: layer.act.data, dIn: dIn)
    }
}
