import MoEData
import MoESpec

extension Preflight {
    /// `data.source: text`: the corpus at `data.path` loads (a folder of domains or an HDF5
    /// corpus), has domains, none of them empty, and every domain's train, val and test stream
    /// (split by `data.split`) holds at least one window of `model.context + 1` tokens
    /// (`TextCorpus.preflight`); `split.shard_by: domain` gives every branch expert a domain.
    /// Each failure is the corpus's one-line `DataError` at `data.path`.
    static func checkText(_ spec: ExperimentSpec, _ text: DataSpec.TextData, cache: Cache) throws {
        let f = spec.data.split
        let key = "\(text.resolvedPath):\(f.train):\(f.val)"
        let loaded = cache.texts[key] ?? Result {
            do {
                return try TextCorpus.load(path: text.resolvedPath, train: f.train, val: f.val, source: text.path)
            } catch let error as DataError {
                throw error
            } catch {
                throw DataError.unreadable(file: text.path, message: "\(error)")
            }
        }.mapError { $0 as! DataError }
        cache.texts[key] = loaded
        let corpus: TextCorpus
        switch loaded {
        case .success(let c): corpus = c
        case .failure(let error): throw spec.positions.error("data.path", error.description)
        }
        // The context is checked by the schema (>= 1); a text spec is always a transformer's.
        let context = spec.model.transformer?.context ?? 1
        do {
            try corpus.check(context: context)
        } catch let error as DataError {
            throw spec.positions.error("data.path", error.description)
        }
        if spec.split.strategy == .branch, spec.split.shardBy == .domain, spec.experts > corpus.domains.count {
            throw spec.positions.error("data.path",
                "\(text.path): \(corpus.domains.count) domain\(corpus.domains.count == 1 ? "" : "s") leave branch experts without text: split.shard_by: domain gives expert i the domains d with d mod experts = i, and experts is \(spec.experts)")
        }
    }
}
