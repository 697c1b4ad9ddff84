import Foundation
import MoECore

/// The synthetic multi-domain classification task (ARCHITECTURE §5.4, `data.source: synthetic`).
///
/// **What it draws.** `domains` Gaussian clusters in `features` dimensions. Domain `k` has a
/// centre `c_k` (a random direction scaled to norm `separation / √2`, so two centres are about
/// `separation` apart, as random directions are nearly orthogonal in many dimensions) and unit
/// spread: a sample is `x = c_k + z`, `z ~ N(0, I)`. Each domain has
/// its own random *teacher*, a 2-layer tanh MLP on the local coordinates `z`:
/// `s = W2 · tanh(W1 · z + b1)`, with `W1 ~ N(0, teacherScale² / features)`,
/// `b1 ~ N(0, (teacherScale / 2)²)`, `W2 ~ N(0, 1 / teacherHidden)`. The label is the argmax of
/// the calibrated scores (below). Samples are spread over the domains as evenly as possible, in a
/// seeded random order; `domain` holds each sample's domain id.
///
/// **Why it is shaped like this.** The teachers differ per domain, so one function of `x` has to
/// switch behaviour between regions: a model that can tell the domains apart (an MoE router,
/// experts trained per domain shard) wins, and a global linear classifier stays far below (about
/// 50 % with the defaults, where chance is 25 %). The clusters are `separation` standard
/// deviations apart, so the domain is recognisable from `x`.
/// Yet each teacher is smooth and the classes are kept apart by a margin, so a plain residual MLP
/// still reaches > 90 % validation accuracy with a few thousand samples (defaults, 4,000
/// samples, 80/20 split, hidden 64 / ffn 256 / 2 blocks, 25 epochs: 94 %; a width-4 model
/// without blocks: 55 %).
///
/// **Calibration (label balance).** A random teacher's raw argmax can be badly unbalanced (one
/// class everywhere). So each teacher is calibrated on 4,096 points of its own stream: every
/// class score is standardised (mean 0, std 1 over those points), then per-class offsets are
/// tuned (200 multiplicative steps) until every class wins about equally often among points that
/// pass the margin test. Calibration does not depend on `samples`, so a larger draw with the same
/// seed describes the same task.
///
/// **Margin.** A candidate `z` whose best calibrated score beats the runner-up by less than
/// `margin` is redrawn, leaving a gap between classes (as in margin-separated benchmark tasks).
/// `margin: 0` keeps the raw teacher boundaries (a harder task). `labelNoise` then replaces that
/// fraction of labels by a uniformly random class.
///
/// **Determinism.** Everything comes from the seed through separate RNG purposes:
/// `synthetic/centers`, `synthetic/teacher/<k>`, `synthetic/teacher/<k>/calibration`,
/// `synthetic/assign`, `synthetic/samples`, `synthetic/noise`. Teacher arithmetic is scalar
/// Double in a fixed order (no BLAS, no threads), so the same parameters give bit-identical data
/// on the same platform and libm.
public struct SyntheticDomains: Equatable, Sendable {
    public var features: Int
    public var classes: Int
    public var domains: Int
    public var samples: Int
    /// Expected distance between two domain centres, in within-domain standard deviations.
    public var separation: Float
    /// Hidden width of each teacher MLP.
    public var teacherHidden: Int
    /// Gain of the teacher's first layer: small is nearly linear, large more wiggly.
    public var teacherScale: Float
    /// Minimum gap between the best and second-best calibrated teacher score (0 = no gap).
    public var margin: Float
    /// Fraction of labels replaced by a uniformly random class after generation.
    public var labelNoise: Float
    public var seed: UInt64

    /// Points per teacher used for calibration.
    public static let calibrationPoints = 4096
    /// Redraws allowed per sample before the margin is declared unattainable.
    public static let maxAttemptsPerSample = 10_000

    public init(features: Int = 16, classes: Int = 4, domains: Int = 4, samples: Int = 4000,
                separation: Float = 6, teacherHidden: Int = 16, teacherScale: Float = 1,
                margin: Float = 0.5, labelNoise: Float = 0, seed: UInt64 = 0) {
        self.features = features
        self.classes = classes
        self.domains = domains
        self.samples = samples
        self.separation = separation
        self.teacherHidden = teacherHidden
        self.teacherScale = teacherScale
        self.margin = margin
        self.labelNoise = labelNoise
        self.seed = seed
    }

    /// Checks every parameter's range.
    public func validate() throws {
        func fail(_ name: String, _ message: String) -> DataError {
            DataError.invalidParameter(source: "synthetic", name: name, message: message)
        }
        if features < 1 { throw fail("features", "must be at least 1, got \(features)") }
        if classes < 2 { throw fail("classes", "must be at least 2, got \(classes)") }
        if domains < 1 { throw fail("domains", "must be at least 1, got \(domains)") }
        if samples < 0 { throw fail("samples", "must not be negative, got \(samples)") }
        if !(separation >= 0 && separation.isFinite) { throw fail("separation", "must be ≥ 0, got \(separation)") }
        if teacherHidden < 1 { throw fail("teacher_hidden", "must be at least 1, got \(teacherHidden)") }
        if !(teacherScale > 0 && teacherScale.isFinite) { throw fail("teacher_scale", "must be > 0, got \(teacherScale)") }
        if !(margin >= 0 && margin <= 4) { throw fail("margin", "must be in [0, 4], got \(margin)") }
        if !(labelNoise >= 0 && labelNoise <= 1) { throw fail("label_noise", "must be in [0, 1], got \(labelNoise)") }
    }

    /// The domain of each sample, as `generate()` assigns them (balanced, in a seeded random
    /// order), without drawing any features: pre-flight checks of domain shards use it.
    public func domainIDs() -> [Int] {
        var domainOf = (0..<samples).map { $0 % max(1, domains) }
        var assignRNG = RNG(seed: seed, purpose: "synthetic/assign")
        assignRNG.shuffle(&domainOf)
        return domainOf
    }

    /// Draws the data set.
    public func generate() throws -> Dataset {
        try validate()
        let centers = drawCenters()
        let teachers = (0..<domains).map { makeTeacher(domain: $0) }

        let domainOf = domainIDs()

        let x = Tensor(shape: [samples, features])
        var y = [Int](repeating: 0, count: samples)
        var sampleRNG = RNG(seed: seed, purpose: "synthetic/samples")
        var z = [Double](repeating: 0, count: features)
        var scratch = TeacherScratch(hidden: teacherHidden, classes: classes)
        for i in 0..<samples {
            let k = domainOf[i]
            var attempts = 0
            while true {
                for j in 0..<features { z[j] = Double(sampleRNG.normal()) }
                let (label, gap) = teachers[k].classify(z, &scratch)
                if gap >= Double(margin) {
                    y[i] = label
                    break
                }
                attempts += 1
                if attempts >= Self.maxAttemptsPerSample {
                    throw DataError.invalidParameter(source: "synthetic", name: "margin",
                        message: "\(margin) is unattainable for domain \(k): \(attempts) draws without a clear winner; lower it")
                }
            }
            let row = x.row(i)
            for j in 0..<features { row[j] = centers[k * features + j] + Float(z[j]) }
        }

        if labelNoise > 0 {
            var noiseRNG = RNG(seed: seed, purpose: "synthetic/noise")
            for i in 0..<samples where noiseRNG.bernoulli(labelNoise) {
                y[i] = noiseRNG.int(below: classes)
            }
        }
        return Dataset(validatedX: x, y: y, domain: domainOf, classes: classes)
    }

    /// Domain centres, row-major `[domains, features]`: random directions with norm `separation / √2`.
    func drawCenters() -> [Float] {
        var rng = RNG(seed: seed, purpose: "synthetic/centers")
        var centers = [Float](repeating: 0, count: domains * features)
        let radius = Double(separation) / 2.0.squareRoot()
        for k in 0..<domains {
            var direction = (0..<features).map { _ in Double(rng.normal()) }
            let norm = direction.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if norm == 0 { direction[0] = 1 }  // astronomically unlikely; keeps the radius exact
            let scale = radius / (norm == 0 ? 1 : norm)
            for j in 0..<features { centers[k * features + j] = Float(direction[j] * scale) }
        }
        return centers
    }

    /// Draws and calibrates domain `k`'s teacher.
    func makeTeacher(domain k: Int) -> Teacher {
        var rng = RNG(seed: seed, purpose: "synthetic/teacher/\(k)")
        let (f, h, c) = (features, teacherHidden, classes)
        let w1Std = Double(teacherScale) / Double(f).squareRoot()
        let w1 = (0..<(h * f)).map { _ in Double(rng.normal()) * w1Std }
        let b1 = (0..<h).map { _ in Double(rng.normal()) * Double(teacherScale) / 2 }
        let w2 = (0..<(c * h)).map { _ in Double(rng.normal()) / Double(h).squareRoot() }
        var teacher = Teacher(features: f, hidden: h, classes: c, w1: w1, b1: b1, w2: w2)

        // Raw scores of the calibration points.
        var calibrationRNG = RNG(seed: seed, purpose: "synthetic/teacher/\(k)/calibration")
        let m = Self.calibrationPoints
        var scores = [Double](repeating: 0, count: m * c)
        var z = [Double](repeating: 0, count: f)
        var scratch = TeacherScratch(hidden: h, classes: c)
        for p in 0..<m {
            for j in 0..<f { z[j] = Double(calibrationRNG.normal()) }
            teacher.rawScores(z, &scratch)
            for q in 0..<c { scores[p * c + q] = scratch.scores[q] }
        }
        // Standardise each class score.
        for q in 0..<c {
            var mean = 0.0
            for p in 0..<m { mean += scores[p * c + q] }
            mean /= Double(m)
            var variance = 0.0
            for p in 0..<m { variance += (scores[p * c + q] - mean) * (scores[p * c + q] - mean) }
            let std = max((variance / Double(m)).squareRoot(), 1e-12)
            teacher.mean[q] = mean
            teacher.invStd[q] = 1 / std
            for p in 0..<m { scores[p * c + q] = (scores[p * c + q] - mean) / std }
        }
        // Tune per-class offsets until classes win equally often among points passing the margin.
        let target = log(1 / Double(c))
        var counts = [Int](repeating: 0, count: c)
        let minimumGap = Double(margin)
        for _ in 0..<200 {
            for q in 0..<c { counts[q] = 0 }
            var accepted = 0
            // 200 × 4,096 points: through pointers (the array accessors' retains and bounds checks
            // were most of the data task's time); the same comparisons in the same order.
            scores.withUnsafeBufferPointer { points in
                teacher.bias.withUnsafeBufferPointer { bias in
                    counts.withUnsafeMutableBufferPointer { counts in
                        for p in 0..<m {
                            let (label, gap) = Teacher.argmaxWithGap(points.baseAddress! + p * c, count: c, bias: bias.baseAddress!)
                            if gap >= minimumGap {
                                counts[label] += 1
                                accepted += 1
                            }
                        }
                    }
                }
            }
            for q in 0..<c {
                let frequency = Double(counts[q]) / Double(max(accepted, 1))
                teacher.bias[q] += 0.3 * (target - log(max(frequency, 1e-3)))
            }
        }
        return teacher
    }
}

/// Reusable buffers for teacher evaluation (no allocation per sample).
struct TeacherScratch {
    var hidden: [Double]
    var scores: [Double]
    init(hidden: Int, classes: Int) {
        self.hidden = [Double](repeating: 0, count: hidden)
        self.scores = [Double](repeating: 0, count: classes)
    }
}

/// One domain's teacher: a 2-layer tanh MLP plus its calibration (standardisation and offsets).
struct Teacher {
    let features: Int, hidden: Int, classes: Int
    let w1: [Double], b1: [Double], w2: [Double]
    var mean: [Double], invStd: [Double], bias: [Double]

    init(features: Int, hidden: Int, classes: Int, w1: [Double], b1: [Double], w2: [Double]) {
        (self.features, self.hidden, self.classes) = (features, hidden, classes)
        (self.w1, self.b1, self.w2) = (w1, b1, w2)
        mean = [Double](repeating: 0, count: classes)
        invStd = [Double](repeating: 1, count: classes)
        bias = [Double](repeating: 0, count: classes)
    }

    /// Uncalibrated scores `W2 · tanh(W1 · z + b1)` into `scratch.scores`.
    func rawScores(_ z: [Double], _ scratch: inout TeacherScratch) {
        // Through pointers (no retain or bounds check per product); the same sums in the same order.
        let (f, h) = (features, hidden)
        w1.withUnsafeBufferPointer { w1 in b1.withUnsafeBufferPointer { b1 in z.withUnsafeBufferPointer { z in
            scratch.hidden.withUnsafeMutableBufferPointer { hiddenOut in
                for u in 0..<h {
                    var a = b1[u]
                    for j in 0..<f { a += w1[u * f + j] * z[j] }
                    hiddenOut[u] = tanh(a)
                }
            }
        } } }
        w2.withUnsafeBufferPointer { w2 in scratch.hidden.withUnsafeBufferPointer { hiddenIn in
            for q in 0..<classes {
                var s = 0.0
                for u in 0..<h { s += w2[q * h + u] * hiddenIn[u] }
                scratch.scores[q] = s
            }
        } }
    }

    /// The label and the gap between the best and second-best calibrated score.
    func classify(_ z: [Double], _ scratch: inout TeacherScratch) -> (label: Int, gap: Double) {
        rawScores(z, &scratch)
        for q in 0..<classes { scratch.scores[q] = (scratch.scores[q] - mean[q]) * invStd[q] }
        return Teacher.argmaxWithGap(scratch.scores, offset: 0, count: classes, bias: bias)
    }

    /// Argmax (lowest index wins ties) of `scores[offset..<offset+count] + bias`, and the gap to the runner-up.
    static func argmaxWithGap(_ scores: [Double], offset: Int, count: Int, bias: [Double]) -> (label: Int, gap: Double) {
        scores.withUnsafeBufferPointer { s in
            bias.withUnsafeBufferPointer { b in argmaxWithGap(s.baseAddress! + offset, count: count, bias: b.baseAddress!) }
        }
    }

    /// `argmaxWithGap` of `scores[0..<count] + bias[0..<count]`.
    @inline(__always)
    static func argmaxWithGap(_ scores: UnsafePointer<Double>, count: Int, bias: UnsafePointer<Double>) -> (label: Int, gap: Double) {
        var best = 0, bestValue = -Double.infinity, second = -Double.infinity
        for q in 0..<count {
            let value = scores[q] + bias[q]
            if value > bestValue {
                second = bestValue
                bestValue = value
                best = q
            } else if value > second {
                second = value
            }
        }
        return (best, bestValue - second)
    }
}
