/// `n` items cut into `parts` contiguous ranges as evenly as possible, the first `n mod parts`
/// ranges one item longer — `numpy.array_split`'s rule. Used for a model's stages, a batch's
/// micro-batches and the experts of each rank.
public enum EvenSplit {
    public static func ranges(_ n: Int, parts: Int) -> [Range<Int>] {
        precondition(n >= 0 && parts >= 1, "EvenSplit needs n ≥ 0 and parts ≥ 1")
        let base = n / parts, extra = n % parts
        var start = 0
        return (0..<parts).map { i in
            let size = base + (i < extra ? 1 : 0)
            defer { start += size }
            return start..<(start + size)
        }
    }
}
