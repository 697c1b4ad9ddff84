import Foundation

/// Student's t distribution with ν degrees of freedom (ν > 0, not necessarily an integer), for
/// the confidence intervals of `moe-run report` over seeds.
///
/// CDF (Abramowitz & Stegun 26.7.1 via 26.5.27): for t ≥ 0,
/// `F(t; ν) = 1 − ½·I_x(ν/2, ½)` with `x = ν / (ν + t²)`, and `F(−t) = 1 − F(t)`, where `I_x(a, b)`
/// is the regularised incomplete beta function, evaluated by its continued fraction (A&S 26.5.8,
/// modified Lentz; Press et al., Numerical Recipes §6.4) to about 1e-15 relative.
/// Quantile: the CDF is inverted by bisection on a bracket that doubles until it holds `p`, to
/// full double precision (no normal or Cornish–Fisher approximation: exact for small ν, where
/// seed studies live: t₀.₉₇₅(2) = 4.3027, not the normal 1.96).
public enum StudentT {
    /// P(T ≤ t) for T ~ t(ν).
    public static func cdf(_ t: Double, degreesOfFreedom nu: Double) -> Double {
        precondition(nu > 0, "degrees of freedom must be positive")
        if t.isNaN { return .nan }
        if t == .infinity { return 1 }
        if t == -.infinity { return 0 }
        let x = nu / (nu + t * t)
        let tail = 0.5 * regularizedIncompleteBeta(x, a: nu / 2, b: 0.5)
        return t >= 0 ? 1 - tail : tail
    }

    /// The p-quantile t_p(ν): the t with P(T ≤ t) = p, for 0 < p < 1.
    public static func quantile(_ p: Double, degreesOfFreedom nu: Double) -> Double {
        precondition(p > 0 && p < 1, "p must be in (0, 1)")
        precondition(nu > 0, "degrees of freedom must be positive")
        if p == 0.5 { return 0 }
        if p < 0.5 { return -quantile(1 - p, degreesOfFreedom: nu) }
        // Upper tail probability q = 1 − p, compared on the tail to keep precision near p → 1.
        let q = 1 - p
        func upperTail(_ t: Double) -> Double { 0.5 * regularizedIncompleteBeta(nu / (nu + t * t), a: nu / 2, b: 0.5) }
        var lo = 0.0, hi = 1.0
        while upperTail(hi) > q && hi < 1e300 { lo = hi; hi *= 2 }
        for _ in 0..<2000 {
            let mid = 0.5 * (lo + hi)
            if mid <= lo || mid >= hi { break }
            if upperTail(mid) > q { lo = mid } else { hi = mid }
        }
        return 0.5 * (lo + hi)
    }

    /// I_x(a, b) = B(x; a, b) / B(a, b) for 0 ≤ x ≤ 1, a, b > 0: the continued fraction on the
    /// side where it converges fast (x < (a + 1)/(a + b + 2)), else through I_x(a, b) = 1 − I_{1−x}(b, a).
    static func regularizedIncompleteBeta(_ x: Double, a: Double, b: Double) -> Double {
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        let logFront = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x)
        if x < (a + 1) / (a + b + 2) {
            return exp(logFront) * betaContinuedFraction(x, a: a, b: b) / a
        }
        return 1 - exp(logFront) * betaContinuedFraction(1 - x, a: b, b: a) / b
    }

    /// The continued fraction of I_x(a, b) (A&S 26.5.8), by the modified Lentz method.
    static func betaContinuedFraction(_ x: Double, a: Double, b: Double) -> Double {
        let tiny = 1e-300, epsilon = 1e-16
        var c = 1.0, d = 1 - (a + b) * x / (a + 1)
        if abs(d) < tiny { d = tiny }
        d = 1 / d
        var h = d
        for m in 1...10_000 {
            let m = Double(m), m2 = 2 * m
            // Even step: d_{2m} = m(b − m)x / ((a + 2m − 1)(a + 2m)).
            var aa = m * (b - m) * x / ((a + m2 - 1) * (a + m2))
            d = 1 + aa * d
            if abs(d) < tiny { d = tiny }
            c = 1 + aa / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            h *= d * c
            // Odd step: d_{2m+1} = −(a + m)(a + b + m)x / ((a + 2m)(a + 2m + 1)).
            aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
            d = 1 + aa * d
            if abs(d) < tiny { d = tiny }
            c = 1 + aa / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            let delta = d * c
            h *= delta
            if abs(delta - 1) < epsilon { break }
        }
        return h
    }
}

/// n, mean, sample standard deviation and the two-sided 95 % confidence interval of the mean of
/// replicate values (seeds): `mean ± t₀.₉₇₅(n − 1) · sd / √n`, sd with the n − 1 (Bessel)
/// denominator. With one value sd and the interval are undefined (nil).
public struct ReplicateStatistics: Equatable {
    public let n: Int
    public let mean: Double
    public let sd: Double?
    public let ci95: (low: Double, high: Double)?

    public init?(_ values: [Double]) {
        let v = values.filter(\.isFinite)
        guard !v.isEmpty else { return nil }
        n = v.count
        mean = v.reduce(0, +) / Double(n)
        if n >= 2 {
            let m = mean
            let s = (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(n - 1)).squareRoot()
            let half = StudentT.quantile(0.975, degreesOfFreedom: Double(n - 1)) * s / Double(n).squareRoot()
            sd = s
            ci95 = (mean - half, mean + half)
        } else {
            sd = nil
            ci95 = nil
        }
    }

    public static func == (l: Self, r: Self) -> Bool {
        l.n == r.n && l.mean == r.mean && l.sd == r.sd && l.ci95?.low == r.ci95?.low && l.ci95?.high == r.ci95?.high
    }

    /// `mean ± sd` with the sd to two significant digits and the mean to the same decimal place
    /// (`0.9753 ± 0.0041`); a lone value as `%.6g`.
    public var meanText: String {
        guard let sd, sd > 0, sd.isFinite else { return String(format: "%.6g", mean) }
        let decimals = max(0, min(8, 1 - Int(floor(log10(sd)))))
        return String(format: "%.\(decimals)f ± %.\(decimals)f", mean, sd)
    }

    /// `[low, high]` at the decimals of `meanText`; empty for one value.
    public var intervalText: String {
        guard let ci95, let sd else { return "" }
        let decimals = sd > 0 ? max(0, min(8, 1 - Int(floor(log10(sd))))) : 6
        return String(format: "[%.\(decimals)f, %.\(decimals)f]", ci95.low, ci95.high)
    }
}
