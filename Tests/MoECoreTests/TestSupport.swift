import XCTest
@testable import MoECore

/// `n` floats drawn from N(0, 1) by a generator private to the test (deterministic).
func randomFloats(_ n: Int, seed: UInt64 = 1, purpose: String) -> [Float] {
    var rng = RNG(seed: seed, purpose: "test/" + purpose)
    return (0..<n).map { _ in rng.normal() }
}

/// Mean and (population) variance in Double.
func meanAndVariance<S: Sequence>(_ xs: S) -> (mean: Double, variance: Double) where S.Element == Float {
    var n = 0.0, sum = 0.0, sumSq = 0.0
    for x in xs { n += 1; sum += Double(x) }
    let mean = sum / n
    for x in xs { sumSq += (Double(x) - mean) * (Double(x) - mean) }
    return (mean, sumSq / n)
}

/// Pearson's chi-square statistic of observed counts against a uniform expectation.
func chiSquareUniform(_ counts: [Int]) -> Double {
    let total = Double(counts.reduce(0, +))
    let expected = total / Double(counts.count)
    return counts.reduce(0.0) { $0 + (Double($1) - expected) * (Double($1) - expected) / expected }
}

extension Tensor {
    /// The address of the storage as an integer (for alignment and identity checks).
    var address: Int { Int(bitPattern: UnsafeRawPointer(data)) }
}
