import MoEData
import MoENN
import MoESpec

extension ExperimentSpec {
    /// A transformer LM run (`model.kind: transformer`, `data.source: text`): the architecture
    /// (byte vocabulary 256; the MoE blocks as for the mlp, each expert `model.ffn` wide), the
    /// corpus and the step budget; nil for an mlp.
    var lmSetup: LMSetup? {
        guard let t = model.transformer, case .text(let text) = data.source else { return nil }
        let config = TransformerConfig(vocab: TextCorpus.byteVocabulary, context: t.context, hidden: model.hidden, heads: t.heads,
                                       blocks: model.blocks, ffn: model.ffn, activation: Activation(rawValue: model.activation.rawValue)!,
                                       dropout: Float(model.dropout), tieEmbeddings: t.tieEmbeddings, normEps: Float(model.normEps),
                                       moe: moeConfig)
        return LMSetup(model: config, corpusPath: text.resolvedPath, corpusSource: text.path,
                       train: data.split.train, val: data.split.val, steps: train.steps)
    }
}
