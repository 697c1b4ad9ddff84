import MoECore

/// What a residual block applies after its norm: a dense FFN now, a Mixture-of-Experts layer
/// later. Each implementation keeps the activations of its last forward for its backward.
public protocol FeedForwardLayer: AnyObject {
    var parameters: [Parameter] { get }
    /// `y[n, hidden] = F(x[n, hidden])`; `x` must stay valid until `backward`.
    func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                 context: ForwardContext)
    /// Accumulates parameter gradients and writes `dx = ∂L/∂x` given `dy = ∂L/∂y`.
    func backward(_ dy: UnsafePointer<Float>, rows n: Int, dx: UnsafeMutablePointer<Float>)
}

/// Per-step facts a layer may need: whether it is training, the step (for seeded noise), the seed.
public struct ForwardContext: @unchecked Sendable {
    public var training: Bool
    public var step: Int
    public var seed: UInt64
    /// The batch's domain ids (one per row), for the `domain` router; nil when the data has none.
    public var domains: UnsafePointer<Int>?
    /// A hash of each sample's raw input row (set by the model), so the `hash` router's
    /// assignment is fixed per sample instead of following the changing hidden states.
    public var sampleKeys: UnsafePointer<UInt64>?
    /// Index of the batch's first row in the global batch (data- and expert-parallel ranks hold
    /// rows `[rowOffset, rowOffset + n)`): random draws per row (dropout, router jitter and
    /// noise) skip the earlier rows' draws, so every row gets the value a single process gives it.
    public var rowOffset: Int = 0
    public init(training: Bool, step: Int, seed: UInt64, domains: UnsafePointer<Int>? = nil) {
        self.training = training
        self.step = step
        self.seed = seed
        self.domains = domains
    }
}

/// The position-wise feed-forward network `F(x) = W2 · act(W1 · x + b1) + b2`
/// (Vaswani et al. 2017), with `w1 [ffn, hidden]`, `w2 [hidden, ffn]` as in PyTorch.
public final class DenseFFN: FeedForwardLayer {
    public let fc1: Linear
    public let fc2: Linear
    public let activation: Activation
    private var input: UnsafePointer<Float>?
    private let preActivation: Scratch
    private let activated: Scratch
    private let gradient: Scratch
    private var trainedForward = false

    public init(_ prefix: String, hidden: Int, ffn: Int, activation: Activation) {
        fc1 = Linear(prefix, in: hidden, out: ffn, weightName: "w1", biasName: "b1")
        fc2 = Linear(prefix, in: ffn, out: hidden, weightName: "w2", biasName: "b2")
        self.activation = activation
        preActivation = Scratch(width: ffn)
        activated = Scratch(width: ffn)
        gradient = Scratch(width: ffn)
    }

    public var parameters: [Parameter] { fc1.parameters + fc2.parameters }

    public func initialize(seed: UInt64) {
        fc1.initialize(seed: seed)
        fc2.initialize(seed: seed)
    }

    public func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>,
                        context: ForwardContext) {
        preActivation.ensure(rows: n)
        activated.ensure(rows: n)
        input = x
        fc1.forward(x, rows: n, into: preActivation.data)
        trainedForward = context.training
        if context.training {
            // Keep act'(pre) instead of pre: backward is then one product.
            activation.forwardKeepingDerivative(preActivation.data, activated.data, count: n * fc1.outFeatures)
        } else {
            activation.forward(preActivation.data, activated.data, count: n * fc1.outFeatures)
        }
        fc2.forward(activated.data, rows: n, into: y)
    }

    var activationStorage: [UnsafeMutablePointer<Float>] { [preActivation, activated, gradient].map(\.data) }

    public func backward(_ dy: UnsafePointer<Float>, rows n: Int, dx: UnsafeMutablePointer<Float>) {
        guard let x = input else { preconditionFailure("DenseFFN.backward before forward") }
        precondition(trainedForward, "DenseFFN.backward needs a forward with training: true (it keeps act'(pre))")
        gradient.ensure(rows: n)
        let g = gradient.data
        fc2.backward(activated.data, dy, rows: n, dx: g)  // g = ∂L/∂act
        Activation.backward(derivative: preActivation.data, g, g, count: n * fc1.outFeatures)  // g = ∂L/∂pre
        fc1.backward(x, g, rows: n, dx: dx)
    }
}
