import MoECore

/// Updates parameters from their gradients. State tensors are named
/// `<state>/<parameter name>` so they can be stored in a checkpoint's `optimizer/` group.
public protocol Optimizer: AnyObject {
    /// Applies one update with learning rate `lr` and advances the step count.
    func step(lr: Float)
    /// Updates applied so far.
    var stepCount: Int { get set }
    /// Named state tensors (for checkpoints); restoring copies values into them.
    var state: [(name: String, tensor: Tensor)] { get }
}

/// Stochastic gradient descent with momentum, as `torch.optim.SGD`:
///
///     g ← ∇θ + λθ      (coupled weight decay, on decaying parameters only)
///     b ← μ·b + g       (b = g on the first step)
///     θ ← θ − lr·(g + μ·b)  if nesterov, else θ − lr·b
public final class SGD: Optimizer {
    public let parameters: [Parameter]
    public var momentum: Float
    public var weightDecay: Float
    public var nesterov: Bool
    public var stepCount = 0
    private let buffers: [Tensor]

    public init(parameters: [Parameter], momentum: Float = 0.9, weightDecay: Float = 0, nesterov: Bool = false) {
        self.parameters = parameters
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        buffers = parameters.map { Tensor(shape: $0.shape) }
    }

    public var state: [(name: String, tensor: Tensor)] {
        zip(parameters, buffers).map { ("momentum/" + $0.name, $1) }
    }

    public func step(lr: Float) {
        let first = stepCount == 0
        for (p, b) in zip(parameters, buffers) {
            let n = p.value.count
            let theta = p.value.data, g = p.grad.data, buf = b.data
            let wd = p.decays ? weightDecay : 0
            let mu = momentum
            for i in 0..<n {
                let gi = g[i] + wd * theta[i]
                var d = gi
                if mu != 0 {
                    buf[i] = first ? gi : mu * buf[i] + gi
                    d = nesterov ? gi + mu * buf[i] : buf[i]
                }
                theta[i] -= lr * d
            }
        }
        stepCount += 1
    }
}

/// Adam with decoupled weight decay (Loshchilov & Hutter 2019), as `torch.optim.AdamW`:
///
///     θ ← θ − lr·λ·θ                      (decaying parameters only: matrices, not biases or norms)
///     m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²
///     θ ← θ − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
public final class AdamW: Optimizer {
    public let parameters: [Parameter]
    public var beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    public var stepCount = 0
    private let m: [Tensor], v: [Tensor]

    public init(parameters: [Parameter], beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                weightDecay: Float = 0.01) {
        self.parameters = parameters
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        m = parameters.map { Tensor(shape: $0.shape) }
        v = parameters.map { Tensor(shape: $0.shape) }
    }

    public var state: [(name: String, tensor: Tensor)] {
        zip(parameters, m).map { ("exp_avg/" + $0.name, $1) } + zip(parameters, v).map { ("exp_avg_sq/" + $0.name, $1) }
    }

    public func step(lr: Float) {
        stepCount += 1
        let t = Float(stepCount)
        let bc1 = 1 - pow(beta1, t), bc2 = 1 - pow(beta2, t)
        let stepSize = lr / bc1
        let bc2Sqrt = bc2.squareRoot()
        let threads = ParallelFor.threads
        // Each thread updates its share of every tensor, cut at multiples of 16 elements so that
        // every element takes the same (SIMD or tail) path as in one pass.
        ParallelFor.run(parts: threads) { piece in
            for (k, p) in parameters.enumerated() {
                let n = p.value.count
                let blocks = EvenSplit.range(piece, of: (n + 15) / 16, parts: threads)
                let lo = blocks.lowerBound * 16, hi = min(n, blocks.upperBound * 16)
                guard lo < hi else { continue }
                AdamW.update(count: hi - lo, theta: p.value.data + lo, grad: p.grad.data + lo, m: m[k].data + lo, v: v[k].data + lo,
                             decay: p.decays ? 1 - lr * weightDecay : 1, stepSize: stepSize, bc2Sqrt: bc2Sqrt,
                             beta1: beta1, beta2: beta2, eps: eps)
            }
        }
    }

    /// The element-wise update, sixteen lanes at a time through explicit SIMD loads and stores
    /// (four distinct pointers defeat LLVM's auto-vectoriser); the scalar tail uses the same
    /// formula, so every element gets the same arithmetic.
    @inline(__always)
    static func update(count n: Int, theta: UnsafeMutablePointer<Float>, grad: UnsafePointer<Float>,
                       m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, decay: Float,
                       stepSize: Float, bc2Sqrt: Float, beta1: Float, beta2: Float, eps: Float) {
        typealias V = SIMD16<Float>
        let (b1, b2, e) = (V(repeating: beta1), V(repeating: beta2), V(repeating: eps))
        let (c1, c2) = (V(repeating: 1 - beta1), V(repeating: 1 - beta2))
        let (dec, ss, bc) = (V(repeating: decay), V(repeating: stepSize), V(repeating: 1 / bc2Sqrt))
        let rt = UnsafeMutableRawPointer(theta), rg = UnsafeRawPointer(grad)
        let rm = UnsafeMutableRawPointer(m), rv = UnsafeMutableRawPointer(v)
        var i = 0
        while i + 16 <= n {
            let o = i * 4
            let g = rg.loadUnaligned(fromByteOffset: o, as: V.self)
            let mk = b1 * rm.loadUnaligned(fromByteOffset: o, as: V.self) + c1 * g
            let vk = b2 * rv.loadUnaligned(fromByteOffset: o, as: V.self) + c2 * g * g
            let t = rt.loadUnaligned(fromByteOffset: o, as: V.self) * dec - ss * mk / (vk.squareRoot() * bc + e)
            rm.storeBytes(of: mk, toByteOffset: o, as: V.self)
            rv.storeBytes(of: vk, toByteOffset: o, as: V.self)
            rt.storeBytes(of: t, toByteOffset: o, as: V.self)
            i += 16
        }
        let inv = 1 / bc2Sqrt
        while i < n {
            let g = grad[i]
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            theta[i] = theta[i] * decay - stepSize * m[i] / (v[i].squareRoot() * inv + eps)
            i += 1
        }
    }
}

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
