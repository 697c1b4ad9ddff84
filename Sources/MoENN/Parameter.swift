import MoECore

/// A trainable tensor with its gradient, named by its path in the checkpoint layout
/// (ARCHITECTURE §5.3), e.g. `blocks/0/ffn/w1`.
public final class Parameter: @unchecked Sendable {
    public let name: String
    public let value: Tensor
    /// ∂loss/∂value, accumulated by backward passes and cleared by `zeroGrad()`.
    public let grad: Tensor
    /// Whether decoupled weight decay applies (matrices yes; biases and norm gains no).
    public let decays: Bool

    public init(name: String, shape: [Int], decays: Bool? = nil) {
        self.name = name
        self.value = Tensor(shape: shape)
        self.grad = Tensor(shape: shape)
        self.decays = decays ?? (shape.count >= 2)
    }

    public var shape: [Int] { value.shape }
    public func zeroGrad() { grad.zero() }
}

extension Array where Element == Parameter {
    /// Clears every gradient.
    public func zeroGrad() { for p in self { p.zeroGrad() } }

    /// Total number of scalar parameters.
    public var scalarCount: Int { reduce(0) { $0 + $1.value.count } }

    /// √(Σ‖g‖²) over all gradients, accumulated in Float64 in parameter order.
    public func gradientNorm() -> Double {
        var s: Double = 0
        for p in self { s += Kernels.sumOfSquares(p.grad.count, p.grad.data) }
        return s.squareRoot()
    }

    /// Scales all gradients so their global norm is at most `maxNorm` (PyTorch
    /// `clip_grad_norm_`: coefficient `maxNorm / (norm + 1e-6)`, applied only when below 1).
    /// Returns the norm before clipping.
    @discardableResult
    public func clipGradientNorm(_ maxNorm: Double) -> Double {
        let norm = gradientNorm()
        let coef = maxNorm / (norm + 1e-6)
        if coef < 1 { for p in self { p.grad.scale(by: Float(coef)) } }
        return norm
    }

    /// The parameter with this name.
    public subscript(name: String) -> Parameter? { first { $0.name == name } }
}

/// Initialisers with PyTorch's defaults, each drawing from its own seeded stream so that a
/// parameter's initial value depends only on the seed and its name.
public enum Initializer {
    /// `nn.Linear`'s default: weight and bias ~ U(−1/√fan_in, 1/√fan_in)
    /// (kaiming_uniform with a = √5, as PyTorch does it).
    public static func linear(weight: Parameter, bias: Parameter?, fanIn: Int, seed: UInt64) {
        let bound = 1 / Float(fanIn).squareRoot()
        var rw = RNG(seed: seed, purpose: "init/" + weight.name)
        rw.fillUniform(weight.value, low: -bound, high: bound)
        if let bias {
            var rb = RNG(seed: seed, purpose: "init/" + bias.name)
            rb.fillUniform(bias.value, low: -bound, high: bound)
        }
    }

    /// GPT-2's initialisation of one tensor: `value ~ N(0, std²)` (std 0.02 for embeddings and
    /// projections, 0.02/√(2·blocks) for residual output projections; Radford et al. 2019).
    public static func normal(_ parameter: Parameter, std: Float, seed: UInt64) {
        var rng = RNG(seed: seed, purpose: "init/" + parameter.name)
        rng.fillNormal(parameter.value, std: std)
    }
}
