#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Learning rate as a function of the optimizer step (0-based).
///
/// - `constant`: `lr(t) = base` (after the warm-up).
/// - `cosine` (Loshchilov & Hutter 2017, with linear warm-up as in GPT training scripts):
///   `lr(t) = base · (t + 1)/W` for `t < W`; then with `p = (t − W)/(T − W)` clamped to [0, 1],
///   `lr(t) = min + ½(base − min)(1 + cos πp)`.
public struct LRSchedule: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable { case constant, cosine }
    public var kind: Kind
    public var base: Float
    public var warmupSteps: Int
    public var totalSteps: Int
    public var minLR: Float

    public init(kind: Kind, base: Float, warmupSteps: Int = 0, totalSteps: Int = 1, minLR: Float = 0) {
        self.kind = kind
        self.base = base
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.minLR = minLR
    }

    public func lr(at step: Int) -> Float {
        if step < warmupSteps { return base * Float(step + 1) / Float(warmupSteps) }
        switch kind {
        case .constant:
            return base
        case .cosine:
            let span = max(totalSteps - warmupSteps, 1)
            let p = min(max(Float(step - warmupSteps) / Float(span), 0), 1)
            return minLR + 0.5 * (base - minLR) * (1 + cosf(Float.pi * p))
        }
    }
}
