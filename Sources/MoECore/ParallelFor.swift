import Dispatch

/// Independent pieces of work spread over this process's cores: for loops of products too small
/// for OpenBLAS to thread well (the per-(sequence, head) attention GEMMs, whose 64×64×32 shapes
/// OpenBLAS runs on one thread; the per-expert GEMM pairs on ~200 gathered rows) and for
/// element-wise passes over all parameters (AdamW).
///
/// The number of threads is the one OpenBLAS was given (`OPENBLAS_NUM_THREADS` = cores / concurrent
/// workers, ARCHITECTURE §6), so a process configured for one thread stays on one thread. Inside a
/// region OpenBLAS is single-threaded — each piece is one core's work, and a `run` nested in a
/// piece runs sequentially — and its thread count is restored afterwards.
///
/// Determinism: the pieces must write disjoint memory, and each piece's arithmetic must not depend
/// on how many pieces there are. A GEMM keeps its bits when it moves from OpenBLAS's threads to
/// ours as long as its K is at most 448: OpenBLAS splits M and N between threads, not K, and
/// SkylakeX's sgemm blocks K by 448. Beyond that, OpenBLAS 0.3.21's threaded driver cuts K into
/// different blocks than its single-threaded one (for K mod 32 ∉ {0, 31}), so a product such as
/// an expert's weight gradient over more than 448 rows had bits that depended on the thread count;
/// run on one thread inside a region, it no longer does. `ParallelForTests` checks the shapes.
public enum ParallelFor {
    /// Threads a region may use now: OpenBLAS's thread count (1 inside a region).
    public static var threads: Int { BLASInfo.threads }

    /// Runs `body(0) … body(parts − 1)`, concurrently on up to `threads` threads (the calling
    /// thread takes part), and returns when all are done. With one thread or one part, it is the
    /// plain loop.
    public static func run(parts: Int, _ body: (Int) -> Void) {
        let blasThreads = threads
        guard parts > 1 && blasThreads > 1 else {
            for i in 0..<parts { body(i) }
            return
        }
        BLASInfo.setThreads(1)
        defer { BLASInfo.setThreads(blasThreads) }
        withoutActuallyEscaping(body) { body in
            let shared = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: parts) { shared.value($0) }
        }
    }

    /// `count` items cut into up to `threads` contiguous ranges (`EvenSplit`), each range one
    /// piece of `run`: `body(piece, range)`, with `piece` in `0 ..< min(threads, count)` (an index
    /// for per-thread scratch).
    public static func ranges(_ count: Int, _ body: (_ piece: Int, _ range: Range<Int>) -> Void) {
        let parts = max(1, min(threads, count))
        run(parts: parts) { body($0, EvenSplit.range($0, of: count, parts: parts)) }
    }

    /// Like `ranges(_:_:)`, but each cut falls where the running weight is closest to an equal
    /// share: `cumulativeWeight(i)` is the weight of items `0 ..< i` (non-decreasing, 0 at 0), e.g.
    /// the row offsets of experts whose cost grows with their rows.
    public static func ranges(_ count: Int, cumulativeWeight: (Int) -> Int,
                              _ body: (_ piece: Int, _ range: Range<Int>) -> Void) {
        let parts = max(1, min(threads, count))
        let total = cumulativeWeight(count) - cumulativeWeight(0)
        // Item index where piece p starts: the i whose weight before it is nearest p/parts of the total.
        func cut(_ p: Int) -> Int {
            if p == 0 { return 0 }
            if p == parts { return count }
            let share = p * total
            var i = 0
            while i < count && (cumulativeWeight(i) - cumulativeWeight(0)) * parts < share { i += 1 }
            if i > 0 && share - (cumulativeWeight(i - 1) - cumulativeWeight(0)) * parts < (cumulativeWeight(i) - cumulativeWeight(0)) * parts - share {
                i -= 1
            }
            return i
        }
        run(parts: parts) { body($0, cut($0)..<cut($0 + 1)) }
    }
}

/// A value handed to the threads of a `ParallelFor` region, which only read it.
private struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
