import MoEHDF5

/// The `tasks/data.h5` layout of a text corpus (ARCHITECTURE §5.4), read and written through
/// MoEHDF5:
/// ```
/// /data/<split>/tokens   uint16 [n]   the domains' streams of the split, concatenated in domain order
/// /data/<split>/domain   int64  [n]   the domain id of every token
/// /data/domains          string [D]   names of the domains, in id order
/// /data/<split>/index    int64  [D, 2] per domain, the split's block [start, end) as token
///                                      offsets in that domain's whole stream (train, val, test
///                                      in that order), so tokens[start ..< end] of the domain's
///                                      source text (byte tokens: its bytes) are the split's tokens
/// ```
/// for `<split>` = train, val, test. The group `/data` also gets the attribute `vocabulary`
/// (int64; 256 for byte tokens), which readers may ignore.
extension TextCorpus {
    /// Writes the layout into `location` (the root of a `tasks/data.h5`, or any group).
    public func write(to location: H5Location) throws {
        try wrappingHDF5 {
            let data = try location.requireGroup("data")
            try data.createStrings("domains", domains)
            try data.setAttribute("vocabulary", Int64(vocabulary))
            for split in TextSplit.allCases {
                let parts = streams(split)
                try data.createDataset(split.rawValue + "/tokens", Array(parts.joined()))
                var ids: [Int] = []
                ids.reserveCapacity(tokenCount(split))
                for (d, part) in parts.enumerated() { ids.append(contentsOf: repeatElement(d, count: part.count)) }
                try data.createDataset(split.rawValue + "/domain", ids)
                try data.createDataset(split.rawValue + "/index", sourceBlocks(split).flatMap { [Int64($0.lowerBound), Int64($0.upperBound)] },
                                       shape: [domains.count, 2])
            }
        }
    }

    /// Each domain's block of `split` in its whole stream: train `0 ..< a`, val `a ..< a + b`,
    /// test `a + b ..< n` (the contiguous split, `TextCorpus.split`).
    public func sourceBlocks(_ split: TextSplit) -> [Range<Int>] {
        let order = TextSplit.allCases
        let before = order.prefix(while: { $0 != split })
        return domains.indices.map { d in
            let start = before.reduce(0) { $0 + streams($1)[d].count }
            return start ..< start + streams(split)[d].count
        }
    }

    /// Writes the layout as a new HDF5 file, atomically (tmp file, fsync, rename).
    public func write(hdf5 path: String) throws {
        try wrappingHDF5 { try H5File.createAtomically(path) { try write(to: $0) } }
    }

    /// Reads the layout from an open file (or group) that has `/data`. Token ids must lie in
    /// `0 ..< vocabulary`; domain ids in `0 ..< D`, ascending (each domain's stream contiguous,
    /// in domain order). `source` names the file in errors.
    public static func load(dataLayout location: H5Location, source: String,
                            vocabulary: Int = TextCorpus.byteVocabulary) throws -> TextCorpus {
        try wrappingHDF5(source: source) {
            let names = try readDomainNames(location, source: source)
            var parts: [TextSplit: [[UInt16]]] = [:]
            for split in TextSplit.allCases {
                let base = "data/\(split.rawValue)/"
                let tokens = try readIntegers(location, base + "tokens", source: source)
                let ids = try readIntegers(location, base + "domain", source: source)
                guard ids.count == tokens.count else {
                    throw DataError.shapeMismatch(file: source, message: "/\(base)domain has \(ids.count) ids but /\(base)tokens has \(tokens.count) tokens")
                }
                if let bad = tokens.firstIndex(where: { $0 < 0 || $0 >= vocabulary }) {
                    throw DataError.tokenOutOfRange(source: source, dataset: "/\(base)tokens", index: bad,
                                                    value: tokens[bad], vocabulary: vocabulary)
                }
                var streams = [[UInt16]](repeating: [], count: names.count)
                for i in ids.indices {
                    let id = ids[i]
                    guard id >= 0, id < names.count, i == 0 || id >= ids[i - 1] else {
                        throw DataError.shapeMismatch(file: source, message: "/\(base)domain[\(i)] is \(id): ids must be in 0..<\(names.count) and ascending (the domains' streams concatenated in domain order)")
                    }
                    streams[id].append(UInt16(tokens[i]))
                }
                parts[split] = streams
            }
            return try TextCorpus(source: source, domains: names, vocabulary: vocabulary,
                                  train: parts[.train]!, val: parts[.val]!, test: parts[.test]!)
        }
    }

    private static func readDomainNames(_ location: H5Location, source: String) throws -> [String] {
        let names = try TextDomains.readNames(location, "data/domains", source: source)
        guard !names.isEmpty else { throw DataError.noDomains(source: source) }
        return names
    }

    private static func readIntegers(_ location: H5Location, _ path: String, source: String) throws -> [Int] {
        guard location.kind(of: path) == .dataset else { throw DataError.missingDataset(file: source, name: path) }
        let dataset = try location.openDataset(path)
        let (dtype, shape) = (try dataset.dtype, try dataset.shape)
        guard dtype.isInteger else {
            throw DataError.wrongType(file: source, name: path, expected: "an integer type (uint16 tokens, int64 domain ids)", found: dtype.description)
        }
        guard shape.count == 1 else {
            throw DataError.shapeMismatch(file: source, message: "\(path) must be 1-D, found shape \(shape)")
        }
        try Dataset.checkFits(shape, bytesPerElement: 8, name: path, source: source)
        return try dataset.read(Int.self)
    }
}
