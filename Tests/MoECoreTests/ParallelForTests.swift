import XCTest
@testable import MoECore

final class ParallelForTests: XCTestCase {
    private var savedThreads = 1
    override func setUp() { savedThreads = BLASInfo.threads }
    override func tearDown() { BLASInfo.setThreads(savedThreads) }

    func testEvenSplitRangeIsTheRangesEntry() {
        for n in 0..<40 {
            for parts in 1..<7 {
                XCTAssertEqual((0..<parts).map { EvenSplit.range($0, of: n, parts: parts) }, EvenSplit.ranges(n, parts: parts), "\(n) / \(parts)")
            }
        }
        XCTAssertEqual(EvenSplit.ranges(10, parts: 3), [0..<4, 4..<7, 7..<10])
    }

    /// Every item is in exactly one piece, pieces are contiguous and in order, and a region runs
    /// OpenBLAS single-threaded, restoring its thread count afterwards.
    func testRangesCoverEachItemOnceWithOpenBLASSingleThreaded() {
        BLASInfo.setThreads(2)
        let seen = UnsafeMutablePointer<Int>.allocate(capacity: 10)
        defer { seen.deallocate() }
        seen.initialize(repeating: 0, count: 10)
        let blasThreads = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        defer { blasThreads.deallocate() }
        var pieces: [Range<Int>] = Array(repeating: 0..<0, count: 2)
        pieces.withUnsafeMutableBufferPointer { out in
            ParallelFor.ranges(10) { piece, range in
                out[piece] = range
                blasThreads[piece] = BLASInfo.threads
                for i in range { seen[i] += 1 }
            }
        }
        XCTAssertEqual(pieces, [0..<5, 5..<10])
        XCTAssertEqual(Array(UnsafeBufferPointer(start: seen, count: 10)), Array(repeating: 1, count: 10))
        XCTAssertEqual([blasThreads[0], blasThreads[1]], [1, 1])
        XCTAssertEqual(BLASInfo.threads, 2)
    }

    func testOneThreadIsThePlainLoop() {
        BLASInfo.setThreads(1)
        var order: [Int] = []
        ParallelFor.run(parts: 4) { order.append($0) }
        XCTAssertEqual(order, [0, 1, 2, 3])
        var ranges: [Range<Int>] = []
        ParallelFor.ranges(9) { _, r in ranges.append(r) }
        XCTAssertEqual(ranges, [0..<9])
    }

    /// Weighted cuts fall where the running weight is nearest an equal share.
    func testWeightedRangesBalanceTheWeight() {
        BLASInfo.setThreads(2)
        func cuts(_ offsets: [Int]) -> [Range<Int>] {
            var out: [Range<Int>] = Array(repeating: 0..<0, count: 2)
            out.withUnsafeMutableBufferPointer { o in
                ParallelFor.ranges(offsets.count - 1, cumulativeWeight: { offsets[$0] }) { o[$0] = $1 }
            }
            return out
        }
        XCTAssertEqual(cuts([0, 10, 20, 30, 40]), [0..<2, 2..<4])
        XCTAssertEqual(cuts([0, 70, 80, 90, 100]), [0..<1, 1..<4])
        XCTAssertEqual(cuts([5, 5, 5, 6, 105]), [0..<3, 3..<4])   // weights 0, 1, 99: 1 is nearer 50 than 100
        XCTAssertEqual(cuts([100, 130, 160, 190]), [0..<2, 2..<3])  // offsets need not start at 0; a tie cuts later
    }

    /// OpenBLAS's threads split M and N, not K: up to K = 448 (one K block of SkylakeX's sgemm) a
    /// product's bits do not depend on its thread count, so moving a GEMM between OpenBLAS's
    /// threads and ours keeps them. Checked on the attention (64×64×32, 64×32×64), expert (about
    /// 200 rows, hidden 128, ffn 256) and projection shapes of lm-moe, in every transpose form they
    /// use. (768 = 0 mod 32 is one of the longer K whose blocks agree: see `ParallelFor`.)
    func testGEMMBitsDoNotDependOnOpenBLASThreads() {
        let shapes: [(m: Int, n: Int, k: Int, transA: Bool, transB: Bool)] = [
            (64, 64, 32, false, true), (64, 32, 64, false, false),
            (197, 256, 128, false, true), (197, 128, 256, false, true), (197, 256, 128, false, false),
            (128, 256, 197, true, false), (256, 128, 197, true, false), (768, 384, 128, false, true),
            (768, 256, 128, false, false), (256, 128, 768, true, false),
        ]
        for s in shapes {
            let a = randomFloats(s.m * s.k, purpose: "a"), b = randomFloats(s.k * s.n, purpose: "b")
            let c0 = randomFloats(s.m * s.n, purpose: "c")
            func product(threads: Int) -> [Float] {
                BLASInfo.setThreads(threads)
                var c = c0
                c.withUnsafeMutableBufferPointer { c in
                    BLAS.gemm(m: s.m, n: s.n, k: s.k, alpha: 0.7, a, transA: s.transA, b, transB: s.transB, beta: 1, c.baseAddress!)
                }
                return c
            }
            XCTAssertEqual(product(threads: 2).map(\.bitPattern), product(threads: 1).map(\.bitPattern), "\(s)")
        }
    }
}
