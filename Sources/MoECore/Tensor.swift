/// A dense Float32 tensor over one contiguous, row-major allocation.
///
/// `Tensor` is a reference type on purpose: activations, parameters and gradients are
/// allocated once and then updated in place by explicit forward/backward kernels (llm.c
/// style), so a value type's copy-on-write would only hide accidental copies. The storage
/// is 64-byte aligned (good for AVX-512 loads and for BLAS) and freed in `deinit`.
public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    /// Extent of every dimension, outermost first (row-major / C order, like PyTorch).
    public let shape: [Int]
    /// Number of elements, the product of `shape` (1 for a scalar with `shape == []`).
    public let count: Int
    /// Elements per row: the product of all but the first dimension (1 for a scalar). Stored,
    /// not derived from `count / rows`, so that a tensor with zero rows (`[0, d]`, e.g. an expert
    /// that received no tokens) still has rows of width `d`.
    public let rowStride: Int
    /// The storage. Valid for `count` elements while the tensor is alive.
    public let data: UnsafeMutablePointer<Float>

    /// A zero-filled tensor of the given shape.
    public init(shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.rowStride = shape.dropFirst().reduce(1, *)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride,
                                                   alignment: 64)
        self.data = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        data.initialize(repeating: 0, count: max(count, 1))
    }

    /// A tensor holding `values` (row-major) with the given shape.
    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    /// A deep copy with its own storage.
    public func copy() -> Tensor {
        let t = Tensor(shape: shape)
        t.data.update(from: data, count: count)
        return t
    }

    deinit { UnsafeMutableRawPointer(data).deallocate() }

    /// Rank (number of dimensions).
    @inlinable public var rank: Int { shape.count }

    /// Element `i` of the flat row-major storage.
    @inlinable public subscript(i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }

    /// Element at row `r`, column `c` of a rank-2 tensor.
    @inlinable public subscript(r: Int, c: Int) -> Float {
        get { data[r * shape[1] + c] }
        set { data[r * shape[1] + c] = newValue }
    }

    /// The elements as an array (a copy).
    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// The storage as a buffer pointer (no copy).
    @inlinable public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: data, count: count)
    }

    /// Rows of a rank ≥ 1 tensor (the first dimension).
    @inlinable public var rows: Int { shape.first ?? 1 }

    /// Pointer to row `r` (first-dimension slice).
    @inlinable public func row(_ r: Int) -> UnsafeMutablePointer<Float> { data + r * rowStride }

    /// Sets every element to `value`.
    public func fill(_ value: Float) { data.update(repeating: value, count: count) }
    /// Sets every element to zero.
    public func zero() { data.update(repeating: 0, count: count) }
    /// Copies all elements from `other`, which must have the same element count.
    public func copy(from other: Tensor) {
        precondition(other.count == count, "copy: \(other.shape) into \(shape)")
        data.update(from: other.data, count: count)
    }

    /// Whether both tensors have the same shape and bit-identical elements.
    public func bitwiseEqual(_ other: Tensor) -> Bool {
        shape == other.shape && memcmp(data, other.data, count * MemoryLayout<Float>.stride) == 0
    }

    public var description: String {
        let preview = (0..<min(count, 8)).map { String(data[$0]) }.joined(separator: ", ")
        return "Tensor(\(shape): [\(preview)\(count > 8 ? ", …" : "")])"
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
