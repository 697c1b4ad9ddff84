/// `n` items cut into `parts` contiguous ranges as evenly as possible, the first `n mod parts`
/// ranges one item longer — `numpy.array_split`'s rule. Used for a model's stages, a batch's
/// micro-batches, the experts of each rank and the pieces of a `ParallelFor` region.
public enum EvenSplit {
    public static func ranges(_ n: Int, parts: Int) -> [Range<Int>] {
        precondition(n >= 0 && parts >= 1, "EvenSplit needs n ≥ 0 and parts ≥ 1")
        return (0..<parts).map { range($0, of: n, parts: parts) }
    }

    /// Range `index` of `ranges(n, parts:)`, without building the array.
    @inlinable
    public static func range(_ index: Int, of n: Int, parts: Int) -> Range<Int> {
        let base = n / parts, extra = n % parts
        let start = index * base + Swift.min(index, extra)
        return start..<(start + base + (index < extra ? 1 : 0))
    }
}
