import Foundation
import MoEData
import MoEFusion
import MoENN

/// The fusion probe of transformer LM experts: one `TransformerLM` instance through which the
/// fuse task measures any parameter set with the experts' architecture.
///
/// - loss = the mean next-token cross-entropy (nats) over every scored token of the split, by the
///   evaluation protocol of ARCHITECTURE §5.4 (`LMScores.score`: consecutive windows of
///   context + 1 tokens per domain, `eval.batch_size` windows per forward, no dropout);
///   accuracy = the top-1 next-token accuracy. So `/fusion/metrics/<model>/val_loss` is the
///   `val_loss` the evaluate task reports for the same model, and bits per byte = loss / ln 2.
/// - On some domains: the same over those domains' windows only.
/// - Fisher: the squared gradient of the mean next-token loss of each of the first `batches`
///   batches of `rows` validation evaluation windows (the §5.4 windows in domain order,
///   consecutive, so every expert is measured on the same tokens), from a training-mode
///   forward and backward of a copy with dropout 0, averaged over the batches (Matena & Raffel
///   2022's empirical diagonal Fisher, one squared mean gradient per batch).
final class LMFusionProbe: FusionProbe {
    let model: TransformerLM
    let corpus: TextCorpus
    let batchSize: Int

    /// Windows per domain of an interpolation-curve point (`curveWindowsPerDomain`).
    let curveWindows: Int

    init(config: TransformerConfig, corpus: TextCorpus, batchSize: Int, curveWindows: Int = LMFusionProbe.curveWindowsPerDomain) {
        model = TransformerLM(config: config, seed: 0)
        self.corpus = corpus
        self.batchSize = batchSize
        self.curveWindows = curveWindows
    }

    var classes: Int { model.config.vocab }

    var validationDomains: [Int]? {
        corpus.evaluationWindows(.val, context: model.config.context).filter { $0.count > 0 }.map(\.domain)
    }

    func load(_ tensors: NamedTensors) {
        for p in model.parameters { p.load(from: tensors) }
    }

    func scores(_ tensors: NamedTensors, split: TextSplit, domains: Set<Int>? = nil) -> ObjectiveSums {
        load(tensors)
        return LMScores.score(model, corpus, split: split, batchSize: batchSize, only: domains).overall
    }

    func validation(_ tensors: NamedTensors, domains: Set<Int>?) -> (loss: Double, accuracy: Double) {
        let s = scores(tensors, split: .val, domains: domains)
        return (s.meanLoss, s.accuracy)
    }

    /// Windows per domain an interpolation-curve point of LM experts is measured on: the first
    /// 256 validation windows (16,640 tokens at context 64) of each domain. The full split of
    /// the shipped corpus is 892,186 tokens; 6 expert pairs and 4 fused–expert paths of 11
    /// points each would forward about 33M tokens, several times the run's training. The
    /// barrier compares points on the same tokens, so a fixed subset measures it without bias.
    static let curveWindowsPerDomain = 256

    func curvePoint(_ tensors: NamedTensors, domains: Set<Int>?) -> (loss: Double, accuracy: Double) {
        load(tensors)
        let s = LMScores.score(model, corpus, split: .val, batchSize: batchSize, only: domains,
                               windowsPerDomain: curveWindows).overall
        return (s.meanLoss, s.accuracy)
    }

    var curveSubset: String? { "the first \(curveWindows) windows of each domain" }

    func metrics(_ tensors: NamedTensors) -> FuseTask.Metrics {
        load(tensors)
        return FuseTask.Metrics(val: LMScores.score(model, corpus, split: .val, batchSize: batchSize),
                                test: LMScores.score(model, corpus, split: .test, batchSize: batchSize))
    }

    func fisher(_ tensors: NamedTensors, batches: Int, rows: Int) throws -> (fisher: NamedTensors, batches: Int) {
        var config = model.config
        config.dropout = 0
        let model = TransformerLM(config: config, seed: 0)
        for p in model.parameters { p.load(from: tensors) }
        let width = config.context + 1
        // Every validation window, in domain order, with its domain id.
        var windows: [(TextWindows, Int)] = []
        for w in corpus.evaluationWindows(.val, context: config.context) {
            windows += (0..<w.count).map { (w, $0) }
        }
        var acc = FisherAccumulator(like: tensors)
        let chunk = max(1, rows)
        let tokens = UnsafeMutablePointer<Int32>.allocate(capacity: chunk * width)
        let domains = UnsafeMutablePointer<Int>.allocate(capacity: chunk)
        defer { tokens.deallocate(); domains.deallocate() }
        var start = 0
        while acc.batches < batches && start < windows.count {
            let count = min(chunk, windows.count - start)
            for (row, (w, i)) in windows[start ..< start + count].enumerated() {
                w.fill(tokens + row * width, windows: i ..< i + 1)
                domains[row] = w.domain
            }
            model.parameters.zeroGrad()
            _ = model.forward(TokenWindows(tokens: tokens, batch: count, length: width, domains: domains),
                              context: ForwardContext(training: true, step: 0, seed: 0))
            model.backward()
            try acc.add(gradients: Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, Array($0.grad.buffer)) }))
            start += count
        }
        return (acc.fisher(), acc.batches)
    }
}

extension FuseTask.Metrics {
    /// The metrics of an LM's §5.4 scores on val and test (test NaN when the split has no window),
    /// keeping the sums.
    init(val v: LMScores, test t: LMScores) {
        self.init(valLoss: v.overall.meanLoss, valAccuracy: v.overall.accuracy,
                  testLoss: t.overall.scored > 0 ? t.overall.meanLoss : .nan, testAccuracy: t.overall.scored > 0 ? t.overall.accuracy : .nan,
                  lmScores: [.val: v, .test: t])
    }
}
