import MoECore

/// Buffers of the expert selection, grown to the largest batch and then reused.
struct SelectionWorkspace {
    /// Token-choice selections, slot `t·k + j`: expert, gate, and each token's pre-renormalisation sum.
    var selected: [Int] = [], selectedGate: [Float] = [], selectedSum: [Float] = []
    /// Candidate order and keep flags for the capacity pass; `scratch` for expert-choice ranking.
    var order: [Int] = [], keep: [Bool] = [], scratch: [Int] = [], pool: [Int] = []
    var load: [Int] = []
    private(set) var slotGradient = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var slotGradientCapacity = 0

    mutating func ensureSlotGradient(_ count: Int) {
        guard count > slotGradientCapacity else { return }
        slotGradient.deallocate()
        slotGradient = .allocate(capacity: count)
        slotGradientCapacity = count
    }
}

/// `array.count >= count`, growing (never shrinking) it.
@inline(__always) func grow<T>(_ array: inout [T], to count: Int, _ value: T) {
    if array.count < count { array = [T](repeating: value, count: count) }
}

/// In-place heapsort of `a[0..<n]` by `less` (a strict total order, so the result is unique and
/// no stable-sort scratch memory is needed).
func heapSort(_ a: inout [Int], count n: Int, by less: (Int, Int) -> Bool) {
    func siftDown(_ start: Int, _ end: Int) {
        var root = start
        while 2 * root + 1 < end {
            var child = 2 * root + 1
            if child + 1 < end && less(a[child], a[child + 1]) { child += 1 }
            if !less(a[root], a[child]) { return }
            a.swapAt(root, child)
            root = child
        }
    }
    guard n > 1 else { return }
    for start in stride(from: n / 2 - 1, through: 0, by: -1) { siftDown(start, n) }
    for end in stride(from: n - 1, to: 0, by: -1) {
        a.swapAt(0, end)
        siftDown(0, end)
    }
}

extension MoERouter {
    /// Chooses experts, applies capacity and groups the kept assignments by expert into
    /// `routing` (tokens ascending within an expert).
    ///
    /// - Token choice (`topk`, `switch`, `noisy_topk`, `hash`, `domain`): each token's k experts,
    ///   most probable first (by `p + b` with an expert bias), ties to the lower index. With a capacity C, each expert keeps at most
    ///   C of its assignments, by `drop_policy`: `probs` (highest probability first) or `position`
    ///   (all first choices before second choices, earlier tokens first); ties by slot `t·k + j`.
    /// - Expert choice: each expert takes its C most probable tokens (ties to the lower token).
    func select(rows n: Int, context: ForwardContext) {
        let e = config.experts, k = config.k
        let p = probs.data
        // Mutated in place (a local copy would share the arrays and copy them on write).
        routing.tokens = n; routing.experts = e
        grow(&routing.chosen, to: e, 0); grow(&routing.offsets, to: e + 1, 0)
        for i in 0..<e { routing.chosen[i] = 0 }
        for i in 0...e { routing.offsets[i] = 0 }
        routing.token.removeAll(keepingCapacity: true)
        routing.gate.removeAll(keepingCapacity: true)
        routing.slot.removeAll(keepingCapacity: true)

        if config.router == .expertChoice {
            let cap = min(n, config.capacity(tokens: n) ?? max(config.minCapacity, (k * n + e - 1) / e))
            grow(&work.scratch, to: n, 0)
            for ex in 0..<e {
                for t in 0..<n { work.scratch[t] = t }
                // Most probable first, then the lower token; the first `cap` are the expert's.
                heapSort(&work.scratch, count: n) { a, b in
                    let pa = p[a * e + ex], pb = p[b * e + ex]
                    return pa != pb ? pa < pb : a > b
                }
                // heapSort sorts ascending by `less`, so the best are at the end.
                grow(&work.order, to: cap, 0)
                for q in 0..<cap { work.order[q] = work.scratch[n - cap + q] }
                heapSort(&work.order, count: cap) { $0 < $1 }
                for q in 0..<cap {
                    let t = work.order[q]
                    routing.token.append(t); routing.gate.append(p[t * e + ex]); routing.slot.append(routing.token.count - 1)
                }
                routing.offsets[ex + 1] = routing.token.count
                routing.chosen[ex] = cap
            }
            return
        }

        grow(&work.selected, to: n * k, 0); grow(&work.selectedGate, to: n * k, 0); grow(&work.selectedSum, to: n, 1)
        for t in 0..<n {
            chooseExperts(token: t, context: context)
            work.selectedSum[t] = 1
            if config.router.isLearned && config.normalizeTopk && k > 1 {
                var s: Float = 0
                for j in 0..<k { s += work.selectedGate[t * k + j] }
                work.selectedSum[t] = s
                for j in 0..<k { work.selectedGate[t * k + j] /= s }
            }
            for j in 0..<k { routing.chosen[work.selected[t * k + j]] += 1 }
        }
        // Capacity: decide which slots survive.
        let slots = n * k
        grow(&work.keep, to: slots, true)
        for s in 0..<slots { work.keep[s] = true }
        if let cap = config.capacity(tokens: n) {
            grow(&work.order, to: slots, 0); grow(&work.load, to: e, 0)
            for i in 0..<e { work.load[i] = 0 }
            // Priority order of the slots: (rank j, token t) for `position`; by probability otherwise.
            var i = 0
            for j in 0..<k { for t in 0..<n { work.order[i] = t * k + j; i += 1 } }
            if config.dropPolicy == .probs && config.router.isLearned {
                let sel = work.selected
                heapSort(&work.order, count: slots) { a, b in
                    let pa = p[(a / k) * e + sel[a]], pb = p[(b / k) * e + sel[b]]
                    return pa != pb ? pa < pb : a > b  // ascending = least priority first
                }
                work.order[0..<slots].reverse()
            }
            for i in 0..<slots {
                let s = work.order[i], ex = work.selected[s]
                if work.load[ex] < cap { work.load[ex] += 1 } else { work.keep[s] = false }
            }
        }
        // Group kept slots by expert (counting sort; slots ascending, so tokens ascending).
        for s in 0..<slots where work.keep[s] { routing.offsets[work.selected[s] + 1] += 1 }
        for i in 0..<e { routing.offsets[i + 1] += routing.offsets[i] }
        let total = routing.offsets[e]
        routing.token.append(contentsOf: repeatElement(0, count: total))
        routing.gate.append(contentsOf: repeatElement(0, count: total))
        routing.slot.append(contentsOf: repeatElement(0, count: total))
        grow(&work.load, to: e, 0)
        for i in 0..<e { work.load[i] = routing.offsets[i] }
        for s in 0..<slots where work.keep[s] {
            let ex = work.selected[s], at = work.load[ex]
            routing.token[at] = s / k; routing.gate[at] = work.selectedGate[s]; routing.slot[at] = s
            work.load[ex] = at + 1
        }
    }

    /// Token `t`'s k experts, most probable first (ties to the lower index), with their gates.
    private func chooseExperts(token t: Int, context: ForwardContext) {
        let e = config.experts, k = config.k
        switch config.router {
        case .hash:
            // The sample's key (a hash of its raw input, set by the model), else a hash of this row;
            // then a partial Fisher–Yates shuffle from a Philox stream keyed by it.
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            if let keys = context.sampleKeys {
                h = keys[t]
            } else {
                let row = routedInput! + t * hidden
                for j in 0..<hidden { h = (h ^ UInt64(row[j].bitPattern)) &* 0x0000_0100_0000_01b3 }
            }
            var rng = RNG(seed: config.hashSeed, purpose: "router/hash/\(index)", stream: h)
            grow(&work.pool, to: e, 0)
            for i in 0..<e { work.pool[i] = i }
            for j in 0..<k {
                work.pool.swapAt(j, j + rng.int(below: e - j))
                work.selected[t * k + j] = work.pool[j]
                work.selectedGate[t * k + j] = 1 / Float(k)
            }
        case .domain:
            guard let domains = context.domains else { preconditionFailure("router.type domain needs the samples' domain ids") }
            work.selected[t] = domains[t] % e
            work.selectedGate[t] = 1
        default:
            let row = probs.data + t * e
            if let bias = expertBias?.value.data {
                // Loss-free balancing: chosen on p + b, gated by p alone.
                for j in 0..<k {
                    var best = -1
                    for i in 0..<e where best < 0 || row[i] + bias[i] > row[best] + bias[best] {
                        var taken = false
                        for q in 0..<j where work.selected[t * k + q] == i { taken = true }
                        if !taken { best = i }
                    }
                    work.selected[t * k + j] = best
                    work.selectedGate[t * k + j] = row[best]
                }
                return
            }
            for j in 0..<k {
                var best = -1
                for i in 0..<e where best < 0 || row[i] > row[best] {
                    var taken = false
                    for q in 0..<j where work.selected[t * k + q] == i { taken = true }
                    if !taken { best = i }
                }
                work.selected[t * k + j] = best
                work.selectedGate[t * k + j] = row[best]
            }
        }
    }
}
