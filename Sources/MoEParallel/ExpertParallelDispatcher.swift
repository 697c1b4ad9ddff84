import MoECore
import MoEComm
import MoENN

/// The experts of the MoE layers sharded over the ranks of a group: expert parallelism
/// (GShard, Lepikhin et al. 2021; Switch Transformer, Fedus et al. 2022 §2.2).
///
/// Rank r owns the experts `ranges[r]` (contiguous, as even as possible, like `numpy.array_split`)
/// and runs them for every rank's tokens. In a training pass of an MoE layer each rank routes its
/// own tokens, then:
///
///     1. all ranks learn every rank's assignments per expert (all-gather of E counts);
///     2. all-to-all: each assignment's input row travels to its expert's owner;
///     3. the owner runs each owned expert once (one GEMM pair) on the rows of all ranks,
///        ordered by source rank, then token (the global token order, as one process has it);
///     4. all-to-all back: each output row returns to the rank of its token, which combines.
///
/// The backward pass sends ∂L/∂output to the owners, which accumulate the expert weights'
/// gradients and return ∂L/∂input. Only the owner adds gradient to an expert; the group's
/// all-reduce of gradients then gives every rank the same full gradient (the other ranks add
/// zeros), so every replica applies the same update. Expert computation is sharded; the expert
/// weights themselves are kept by every rank (memory is not sharded in this version).
///
/// One dispatcher per MoE layer (`MoELayer.dispatcher`); evaluation passes run every expert
/// locally. The layer's passes cannot throw (`FeedForwardLayer`), so the first failed
/// collective is parked in `error` and later collectives of the pass are skipped; the step
/// throws it after the pass (`DataParallelGroup.throwPending`).
public final class ExpertParallelDispatcher: ExpertDispatcher {
    public let communicator: Communicator
    /// The experts of each rank.
    public let ranges: [Range<Int>]
    /// The first collective that failed inside a pass (layers cannot throw); the step throws it.
    public internal(set) var error: Error?

    /// `[source rank][expert]` assignments of the current pass.
    var counts: [[Int]]
    /// Rows of this rank's experts in the expert-major buffers: expert `owned.lowerBound + i`
    /// holds rows `expertOffsets[i] ..< expertOffsets[i + 1]`.
    var expertOffsets: [Int] = []
    // Per-pass scratch, allocated once: this rank's counts, the next free row of each owned
    // expert while permuting, and the all-to-all counts.
    private var myCounts: [Int32] = []
    private var nextRow: [Int] = []
    private var sendCountsBuffer: [Int] = []
    private var returnCountsBuffer: [Int] = []

    /// Evaluation passes (and nothing else) run here, on every rank.
    private let local = LocalExpertDispatcher()
    private let buffers: ShardBuffers

    public init(communicator: Communicator, layer: MoELayer) {
        self.communicator = communicator
        let n = communicator.worldSize, experts = layer.config.experts
        ranges = EvenSplit.ranges(experts, parts: n)
        counts = Array(repeating: Array(repeating: 0, count: experts), count: n)
        buffers = ShardBuffers(hidden: layer.hidden, ffn: layer.ffn)
    }

    public var owned: Range<Int> { ranges[communicator.rank] }

    /// Throws the error a pass met, if any, and clears it.
    public func throwPending() throws {
        if let e = error { error = nil; throw e }
    }

    func attempt(_ body: () throws -> Void) {
        guard error == nil else { return }
        do { try body() } catch { self.error = error }
    }

    /// Step 1: every rank's per-expert counts, from this rank's routing.
    func exchangeCounts(_ routing: Routing) {
        let e = routing.experts
        if myCounts.count != e { myCounts = [Int32](repeating: 0, count: e) }
        for i in 0..<e { myCounts[i] = Int32(routing.count(i)) }
        attempt {
            try myCounts.withUnsafeBytes { bytes in
                try communicator.allGatherV(bytes) { source, data in
                    guard data.count == 4 * e else {
                        throw CollectiveError.invalidArgument("expert counts of rank \(source): \(data.count) bytes, expected \(4 * e)")
                    }
                    for i in 0..<e { counts[source][i] = Int(data.load(fromByteOffset: 4 * i, as: Int32.self)) }
                }
            }
        }
        if expertOffsets.count != owned.count + 1 { expertOffsets = [Int](repeating: 0, count: owned.count + 1) }
        for (i, ex) in owned.enumerated() {
            expertOffsets[i + 1] = expertOffsets[i] + (0..<communicator.worldSize).reduce(0) { $0 + counts[$1][ex] }
        }
    }

    /// Floats this rank sends each rank when the rows of `routing` go to their experts' owners.
    func sendCounts(_ routing: Routing, width: Int) -> [Int] {
        if sendCountsBuffer.count != ranges.count { sendCountsBuffer = [Int](repeating: 0, count: ranges.count) }
        for (d, range) in ranges.enumerated() { sendCountsBuffer[d] = range.reduce(0) { $0 + routing.count($1) } * width }
        return sendCountsBuffer
    }

    /// Floats this rank sends back to each source (the rows it received from it).
    func returnCounts(width: Int) -> [Int] {
        let n = communicator.worldSize
        if returnCountsBuffer.count != n { returnCountsBuffer = [Int](repeating: 0, count: n) }
        for source in 0..<n { returnCountsBuffer[source] = owned.reduce(0) { $0 + counts[source][$1] } * width }
        return returnCountsBuffer
    }

    /// Rows received, in total, for this rank's experts.
    var receivedRows: Int { expertOffsets.last ?? 0 }

    /// Copies rows between the source-major order of an all-to-all (source rank, then expert,
    /// then token) and the expert-major order of the GEMMs (expert, then source, then token).
    func permute(_ from: UnsafePointer<Float>, _ to: UnsafeMutablePointer<Float>, width: Int, toExpertMajor: Bool) {
        var sourceRow = 0
        if nextRow.count != expertOffsets.count { nextRow = expertOffsets }
        for i in expertOffsets.indices { nextRow[i] = expertOffsets[i] }  // the next expert-major row of each owned expert
        for source in 0..<communicator.worldSize {
            for (i, ex) in owned.enumerated() {
                let rows = counts[source][ex]
                let s = sourceRow * width, t = nextRow[i] * width
                if toExpertMajor { (to + t).update(from: from + s, count: rows * width) }
                else { (to + s).update(from: from + t, count: rows * width) }
                sourceRow += rows
                nextRow[i] += rows
            }
        }
    }
}

extension ExpertParallelDispatcher {
    /// Buffers of the sharded passes, by name (created once, grown to the largest pass).
    final class ShardBuffers {
        let staging: Scratch, input: Scratch, pre: Scratch, act: Scratch, out: Scratch, dAct: Scratch
        init(hidden: Int, ffn: Int) {
            staging = Scratch(width: hidden); input = Scratch(width: hidden); out = Scratch(width: hidden)
            pre = Scratch(width: ffn); act = Scratch(width: ffn); dAct = Scratch(width: ffn)
        }
        func ensure(rows: Int) { for s in [staging, input, pre, act, out, dAct] { s.ensure(rows: rows) } }
    }

    /// Steps 1–4 of the type's comment for the rows `gathered` (grouped by expert), writing each
    /// assignment's expert output into `out` in the same order; an evaluation pass runs locally.
    public func forward(_ layer: MoELayer, input gathered: UnsafePointer<Float>, output out: UnsafeMutablePointer<Float>, training: Bool) {
        guard training else { return local.forward(layer, input: gathered, output: out, training: false) }
        let shards = self, hidden = layer.hidden
        let r = layer.router.routing
        let b = buffers
        shards.exchangeCounts(r)
        let received = shards.receivedRows
        b.ensure(rows: max(received, 1))
        let sendCounts = shards.sendCounts(r, width: hidden)
        shards.attempt {
            try shards.communicator.allToAllV(send: gathered, sendCounts: sendCounts, receive: b.staging.data,
                                              receiveCapacity: received * hidden)
        }
        shards.permute(b.staging.data, b.input.data, width: hidden, toExpertMajor: true)
        layer.expertsForward(shards.owned, offsets: shards.expertOffsets, input: b.input.data, pre: b.pre.data, act: b.act.data,
                       out: b.out.data, training: true)
        shards.permute(b.out.data, b.staging.data, width: hidden, toExpertMajor: false)
        out.update(repeating: 0, count: r.total * hidden)
        shards.attempt {
            try shards.communicator.allToAllV(send: b.staging.data, sendCounts: shards.returnCounts(width: hidden),
                                              receive: out, receiveCapacity: r.total * hidden)
        }
    }

    /// The backward of `forward`: ∂L/∂output rows (`dOut`, assignment order) go to the experts'
    /// owners, which accumulate their weights' gradients and return ∂L/∂input into `dIn`.
    public func backward(_ layer: MoELayer, input _: UnsafePointer<Float>, dOut: UnsafePointer<Float>, dIn: UnsafeMutablePointer<Float>) {
        let shards = self, hidden = layer.hidden
        let r = layer.router.routing
        let b = buffers
        let received = shards.receivedRows
        shards.attempt {
            try shards.communicator.allToAllV(send: dOut, sendCounts: shards.sendCounts(r, width: hidden), receive: b.staging.data,
                                              receiveCapacity: received * hidden)
        }
        shards.permute(b.staging.data, b.out.data, width: hidden, toExpertMajor: true)  // `out` now holds ∂L/∂out
        // ∂L/∂input overwrites `staging` (expert-major), then goes back in source-major order via `out`.
        layer.expertsBackward(shards.owned, offsets: shards.expertOffsets, dOut: b.out.data, dAct: b.dAct.data, input: b.input.data,
                        pre: b.pre.data, act: b.act.data, dIn: b.staging.data)
        shards.permute(b.staging.data, b.out.data, width: hidden, toExpertMajor: false)
        dIn.update(repeating: 0, count: r.total * hidden)
        shards.attempt {
            try shards.communicator.allToAllV(send: b.out.data, sendCounts: shards.returnCounts(width: hidden),
                                              receive: dIn, receiveCapacity: r.total * hidden)
        }
    }
}
