import MoECore
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Fused, numerically stable softmax cross-entropy over class logits, as
/// `F.cross_entropy(logits, y)` with mean reduction:
///
///     p = softmax(z) computed as e^{z − max z} / Σ e^{z − max z}
///     L = −(1/n) Σ_r log p[r, y_r] = (1/n) Σ_r (log Σ_j e^{z_rj − m_r} − (z_{r,y_r} − m_r))
///     ∂L/∂z[r, j] = (p[r, j] − 1[j = y_r]) / n
public enum CrossEntropy {
    /// Writes the softmax probabilities into `probs` and returns the mean loss
    /// (accumulated in Float64) and the number of rows whose argmax equals the label.
    public static func forward(_ logits: UnsafePointer<Float>, labels: UnsafePointer<Int>,
                               rows n: Int, classes c: Int,
                               probs: UnsafeMutablePointer<Float>) -> (loss: Double, correct: Int) {
        var total: Double = 0
        var correct = 0
        for r in 0..<n {
            let z = logits + r * c, p = probs + r * c
            let m = z[Kernels.argmax(c, z)]
            var s: Float = 0
            for j in 0..<c { p[j] = expf(z[j] - m); s += p[j] }
            let inv = 1 / s
            for j in 0..<c { p[j] *= inv }
            let y = labels[r]
            precondition(y >= 0 && y < c, "label \(y) outside 0..<\(c)")
            total += Double(logf(s)) - Double(z[y] - m)
            if Kernels.argmax(c, z) == y { correct += 1 }
        }
        return (n > 0 ? total / Double(n) : 0, correct)
    }

    /// `dlogits = scale · (probs − onehot(labels)) / n`; `scale` is ∂(total loss)/∂(this loss).
    public static func backward(probs: UnsafePointer<Float>, labels: UnsafePointer<Int>,
                                rows n: Int, classes c: Int, scale: Float = 1,
                                dlogits: UnsafeMutablePointer<Float>) {
        let k = scale / Float(n)
        for r in 0..<n {
            let p = probs + r * c, d = dlogits + r * c
            for j in 0..<c { d[j] = p[j] * k }
            d[labels[r]] -= k
        }
    }
}
