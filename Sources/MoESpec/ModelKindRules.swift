/// The rules between a model kind, its data and its keys (issue 13), checked first: a
/// transformer reads text and an mlp reads feature vectors, and each kind's own keys are errors
/// on the other (not warnings: a spec that mixes them describes no model).
enum ModelKindRules {
    static let all: [CrossFieldRule] = [
        CrossFieldRule(summary: "`model.kind: transformer` needs `data.source: text`, and `text` needs a transformer; the feature-data keys (`data.features`, `classes`, `domains`, `samples`, `separation`, `label_noise`, `format`, `standardize`) are errors with `text`.") { s, c in
            switch (s.model.kind, s.data.source.isFeatureData) {
            case (.transformer, true):
                return c.error("model.kind", "transformer needs data.source: text (a language model reads token streams), got \(s.data.source.kind.rawValue)",
                               hint: "set data.source: text and data.path to a corpus (e.g. data/text-domains.h5), or use model.kind: mlp")
            case (.mlp, false):
                return c.error("data.source", "text needs model.kind: transformer (an mlp reads feature vectors), got mlp",
                               hint: "set model.kind: transformer, or use data.source: synthetic or file")
            case (.mlp, true):
                return nil
            case (.transformer, false):
                guard let key = first(SpecSchema.Data.featureOnly, in: "data", c) else { return nil }
                return c.error(key, "applies only to feature data (data.source: synthetic or file, model.kind: mlp); data.source: text reads byte tokens",
                               hint: "remove the key")
            }
        },
        CrossFieldRule(summary: "`model.context`, `model.heads` and `model.tie_embeddings` are errors with `model.kind: mlp`; `model.heads` divides `model.hidden`.") { s, c in
            guard let t = s.model.transformer else {
                guard let key = first(SpecSchema.Model.transformerOnly, in: "model", c) else { return nil }
                return c.error(key, "applies only to model.kind: transformer, got mlp",
                               hint: "remove the key, or set model.kind: transformer")
            }
            if s.model.hidden % t.heads != 0 {
                return c.error("model.heads", "must divide model.hidden (\(s.model.hidden)): each head has hidden / heads dimensions, got \(t.heads)",
                               hint: divisorNear(t.heads, of: s.model.hidden).map { "e.g. heads: \($0)" })
            }
            return nil
        },
        CrossFieldRule(summary: "`split.strategy: branch` of a transformer shards the corpus by `split.shard_by: domain` (expert i reads the domains d with d mod experts = i) or `none` (every expert reads all of train); `index` and `random` shard feature samples and are errors.") { s, c in
            guard s.model.kind == .transformer, s.split.strategy == .branch, s.split.shardBy == .index || s.split.shardBy == .random else { return nil }
            return c.error("split.shard_by", "\(s.split.shardBy.rawValue) shards feature samples; a text corpus is sharded by domain (expert i reads the domains d with d mod experts = i) or none (every expert reads all of train)",
                           hint: "use split.shard_by: domain or none")
        },
    ]

    /// The first of `fields` (in `section`) the document gives, by position.
    private static func first(_ fields: [SchemaField], in section: String, _ c: RuleContext) -> String? {
        fields.map { "\(section).\($0.key)" }.filter(c.given).min { c.at($0) < c.at($1) }
    }

    /// The divisor of `n` closest to `heads` (the smaller one on a tie); nil above 2^20, where
    /// the search (up to √n) would not be instant.
    static func divisorNear(_ heads: Int, of n: Int) -> Int? {
        guard n >= 1, n <= 1 << 20 else { return nil }
        var divisors: [Int] = []
        var i = 1
        while i * i <= n {
            if n % i == 0 { divisors += [i, n / i] }
            i += 1
        }
        return divisors.min { (abs($0 - heads), $0) < (abs($1 - heads), $1) }
    }
}
