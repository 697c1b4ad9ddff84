import XCTest
@testable import MoECore

final class TensorTests: XCTestCase {
    func testShapeCountAndMatrixView() {
        let t = Tensor(shape: [2, 3, 4])
        XCTAssertEqual(t.shape, [2, 3, 4])
        XCTAssertEqual(t.count, 24)
        XCTAssertEqual(t.rank, 3)
        XCTAssertEqual(t.rows, 2)
        XCTAssertEqual(t.rowStride, 12)
        XCTAssertEqual(t.array, [Float](repeating: 0, count: 24))  // zero-filled
        XCTAssertEqual(t.buffer.count, 24)

        let scalar = Tensor(shape: [])
        XCTAssertEqual(scalar.count, 1)
        XCTAssertEqual(scalar.rank, 0)
        XCTAssertEqual(scalar.rows, 1)
        XCTAssertEqual(scalar.rowStride, 1)

        let vector = Tensor(shape: [5])
        XCTAssertEqual(vector.rows, 5)
        XCTAssertEqual(vector.rowStride, 1)
    }

    func testEmptyTensorsKeepTheirRowWidth() {
        // Zero rows (an expert that got no tokens) still has rows of the declared width.
        let noRows = Tensor(shape: [0, 5])
        XCTAssertEqual(noRows.count, 0)
        XCTAssertEqual(noRows.rows, 0)
        XCTAssertEqual(noRows.rowStride, 5)
        XCTAssertEqual(Tensor(shape: [0, 3, 4]).rowStride, 12)
        let noCols = Tensor(shape: [3, 0])
        XCTAssertEqual(noCols.count, 0)
        XCTAssertEqual(noCols.rows, 3)
        XCTAssertEqual(noCols.rowStride, 0)
        XCTAssertEqual(noRows.array, [])
        XCTAssertTrue(noRows.bitwiseEqual(Tensor(shape: [0, 5], values: [])))
        XCTAssertFalse(noRows.bitwiseEqual(Tensor(shape: [0, 4])))
        noRows.fill(1); noRows.zero()                       // no-ops, no crash
        XCTAssertEqual(noRows.copy().shape, [0, 5])
    }

    func testInitValuesAndSubscripts() {
        let t = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(t.array, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(t[4], 5)
        XCTAssertEqual(t[1, 0], 4)
        XCTAssertEqual(t[0, 2], 3)
        t[1, 2] = -6
        t[0] = -1
        XCTAssertEqual(t.array, [-1, 2, 3, 4, 5, -6])
        XCTAssertEqual(t.data[5], -6)
    }

    func testCopyIsDeep() {
        let a = Tensor(shape: [2, 2], values: [1, 2, 3, 4])
        let b = a.copy()
        XCTAssertNotEqual(a.address, b.address)
        XCTAssertEqual(b.shape, [2, 2])
        XCTAssertEqual(b.array, [1, 2, 3, 4])
        a[0] = 100
        b[3] = -4
        XCTAssertEqual(a.array, [100, 2, 3, 4])
        XCTAssertEqual(b.array, [1, 2, 3, -4])
        // copy(from:) copies values (shape may differ, count may not).
        let c = Tensor(shape: [4])
        c.copy(from: a)
        XCTAssertEqual(c.array, [100, 2, 3, 4])
        a[1] = 0
        XCTAssertEqual(c[1], 2)
    }

    func testRowPointers() {
        let t = Tensor(shape: [3, 2, 2], values: (0..<12).map(Float.init))
        XCTAssertEqual(t.row(0), t.data)
        XCTAssertEqual(t.row(2)[0], 8)
        XCTAssertEqual(t.row(1)[3], 7)
        t.row(1)[0] = -1                                  // writes through to the storage
        XCTAssertEqual(t[4], -1)
        let m = Tensor(shape: [4, 3], values: (0..<12).map(Float.init))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: m.row(3), count: 3)), [9, 10, 11])
    }

    func testFillAndZero() {
        let t = Tensor(shape: [3, 5])
        t.fill(2.5)
        XCTAssertEqual(t.array, [Float](repeating: 2.5, count: 15))
        t.zero()
        XCTAssertTrue(t.array.allSatisfy { $0 == 0 && $0.sign == .plus })
        t.fill(.nan)
        XCTAssertTrue(t.array.allSatisfy { $0.isNaN })
    }

    func testBitwiseEqual() {
        let a = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        XCTAssertTrue(a.bitwiseEqual(a.copy()))
        XCTAssertTrue(a.bitwiseEqual(a))
        // Same values, different shape: not equal.
        XCTAssertFalse(a.bitwiseEqual(Tensor(shape: [3, 2], values: [1, 2, 3, 4, 5, 6])))
        XCTAssertFalse(a.bitwiseEqual(Tensor(shape: [6], values: [1, 2, 3, 4, 5, 6])))
        // One ulp in the last element.
        let b = a.copy()
        b[5] = b[5].nextUp
        XCTAssertFalse(a.bitwiseEqual(b))
        // -0.0 == 0.0 numerically, but the bits differ.
        let z = Tensor(shape: [2], values: [0, 1])
        let nz = Tensor(shape: [2], values: [-0.0, 1])
        XCTAssertEqual(z.array, nz.array)
        XCTAssertFalse(z.bitwiseEqual(nz))
        // The same NaN bits are bitwise equal although NaN != NaN.
        let n1 = Tensor(shape: [1], values: [.nan]), n2 = Tensor(shape: [1], values: [.nan])
        XCTAssertTrue(n1.bitwiseEqual(n2))
        XCTAssertFalse(n1.bitwiseEqual(Tensor(shape: [1], values: [-.nan])))
    }

    func testMaxAbsDifference() {
        let a = Tensor(shape: [4], values: [1, 2, 3, 4])
        let b = Tensor(shape: [2, 2], values: [1, 2.5, 1, 4])
        XCTAssertEqual(a.maxAbsDifference(b), 2)
        XCTAssertEqual(b.maxAbsDifference(a), 2)
        XCTAssertEqual(a.maxAbsDifference(a.copy()), 0)
        XCTAssertEqual(Tensor(shape: [1], values: [-3]).maxAbsDifference(Tensor(shape: [1], values: [4])), 7)
    }

    func testStorageIs64ByteAligned() {
        var keep: [Tensor] = []   // keep them alive so the allocator cannot reuse one address
        for shape in [[], [0], [1], [3], [17], [5, 7], [1000], [33, 65], [2, 3, 5]] {
            for _ in 0..<8 {
                let t = Tensor(shape: shape)
                XCTAssertEqual(t.address % 64, 0, "shape \(shape) at \(t.address)")
                keep.append(t)
            }
        }
        XCTAssertEqual(Set(keep.map(\.address)).count, keep.count)
        XCTAssertEqual(Tensor(shape: [7], values: [1, 2, 3, 4, 5, 6, 7]).copy().address % 64, 0)
    }

    func testDescription() {
        XCTAssertEqual(Tensor(shape: [2], values: [1, 2]).description, "Tensor([2]: [1.0, 2.0])")
        XCTAssertTrue(Tensor(shape: [3, 3]).description.hasSuffix(", …])"))
    }
}
