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
        for (k, p) in parameters.enumerated() {
            let n = p.value.count
            let theta = p.value.data, g = p.grad.data, mk = m[k].data, vk = v[k].data
            let decay = p.decays ? 1 - lr * weightDecay : 1
            let (b1, b2, e) = (beta1, beta2, eps)
            for i in 0..<n {
                let gi = g[i]
                mk[i] = b1 * mk[i] + (1 - b1) * gi
                vk[i] = b2 * vk[i] + (1 - b2) * gi * gi
                theta[i] = theta[i] * decay - stepSize * mk[i] / (vk[i].squareRoot() / bc2Sqrt + e)
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
