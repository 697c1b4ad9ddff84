import MoENN
import MoEData
import MoESpec

/// Translates the validated spec into the numerical modules' configurations: the only place
/// where spec names meet layer and optimizer names.
extension ExperimentSpec {
    var seed64: UInt64 { UInt64(seed) }
    /// The seed of the data's draws (split, synthetic generator, random shards): `data.seed`, else `seed`.
    var dataSeed64: UInt64 { UInt64(dataSeed) }

    func modelConfig(features: Int, classes: Int) -> ModelConfig {
        ModelConfig(features: features, classes: classes, hidden: model.hidden, ffn: model.ffn,
                    blocks: model.blocks, activation: Activation(rawValue: model.activation.rawValue)!,
                    dropout: Float(model.dropout), normEps: Float(model.normEps), moe: moeConfig)
    }

    /// The MoE part of the model: `experts > 1` with `split.strategy: replicate` turns the FFN of
    /// every block in `model.moe_blocks` (`{every: N}` → blocks N−1, 2N−1, …) into `experts`
    /// copies behind a router; nil for a dense model. The `hash` router's seed is the spec seed.
    ///
    /// `split.strategy: neurons` (MoEfication) makes every block in `model.moe_blocks` an MoE
    /// layer whose experts are `model.ffn / experts` wide (`expertFFN`): the dense FFN's hidden
    /// units split into groups (see `Moefication`).
    ///
    /// `split.strategy: branch` with `fusion.method: mix` (Branch-Train-MiX) gives the MoE model the
    /// `fuse` task builds and `finetune` trains: every block in `model.moe_blocks` holds the `experts`
    /// branch experts' FFNs (`model.ffn` wide) behind the `router` section's router.
    ///
    /// `model.shared_experts` (replicate only) adds that many always-active shared experts,
    /// `model.shared_ffn` wide (default `model.ffn`), to every MoE layer.
    var moeConfig: MoEConfig? {
        let mix = split.strategy == .branch && fusion.method == .mix
        guard experts > 1, split.strategy == .replicate || split.strategy == .neurons || mix else { return nil }
        return MoEConfig(experts: experts, blocks: model.moeBlocks.indices(blocks: model.blocks),
                         router: RouterKind(rawValue: router.type.rawValue)!, k: router.k,
                         capacityFactor: router.capacityFactor, minCapacity: router.minCapacity,
                         dropPolicy: MoENN.DropPolicy(rawValue: router.dropPolicy.rawValue)!,
                         auxLoss: Float(router.auxLoss), zLoss: Float(router.zLoss), jitter: Float(router.jitter),
                         normalizeTopk: router.normalizeTopk, hashSeed: seed64,
                         expertFFN: split.strategy == .neurons ? model.ffn / experts : nil,
                         sharedExperts: model.sharedExperts, sharedFFN: model.sharedFFN,
                         score: RouterScore(rawValue: router.score.rawValue)!,
                         balance: RouterBalance(rawValue: router.balance.rawValue)!, biasRate: Float(router.biasRate))
    }

    var optimizerConfig: OptimizerConfig {
        OptimizerConfig(kind: train.optimizer == .sgd ? .sgd : .adamw, lr: Float(train.lr),
                        weightDecay: Float(train.weightDecay), momentum: Float(train.momentum),
                        nesterov: train.nesterov, beta1: Float(train.betas[0]), beta2: Float(train.betas[1]),
                        eps: Float(train.eps), gradClip: train.gradClip,
                        schedule: train.schedule == .constant ? .constant : .cosine,
                        warmupSteps: train.warmupSteps, minLR: Float(train.minLR))
    }

    /// The checkpoint group of this run's task file `path` that the next task reads, when
    /// `split.source` or `fusion.source` is `best`: `best` for the `pretrain` task's model
    /// (`split.source`), a branch expert's or the layer-wise stacked `train` model
    /// (`fusion.source`); nil = the caller's usual group (`/model`).
    func handoffGroup(_ path: String, layout: RunLayout) -> String? {
        if path == layout.taskFile("pretrain") { return split.source == .best ? "best" : nil }
        let expert = (0..<experts).contains { path == layout.taskFile("expert-\($0)") }
        let stacked = split.strategy == .layerwise && path == layout.taskFile("train")
        return (expert || stacked) && fusion.source == .best ? "best" : nil
    }

    /// The synthetic generator for `data.source: synthetic`.
    func syntheticGenerator(_ s: DataSpec.SyntheticData) -> SyntheticDomains {
        SyntheticDomains(features: s.features, classes: s.classes, domains: s.domains, samples: s.samples,
                         separation: Float(s.separation), labelNoise: Float(s.labelNoise), seed: dataSeed64)
    }
}
