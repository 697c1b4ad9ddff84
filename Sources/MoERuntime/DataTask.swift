import MoEData
import MoEHDF5
import MoESpec

/// The `data` task: generate or load the samples, split them (seeded), fit the standardisation
/// on the training part, and write `tasks/data.h5`:
///
///     /data/{train,val,test}/{x, y, domain?}    raw features, as loaded or generated
///     /data/{train,val,test}/index              int64 [n]: each row's row in the source (the
///                                               data file's rows from 0, or the generated order)
///     /data/standardization/{mean, std}         when data.standardize (fitted on train)
///     attrs: classes, features, source
enum DataTask {
    static func run(spec: ExperimentSpec, layout: RunLayout, log: RunLog) throws {
        if case .text(let t) = spec.data.source { return try runText(spec: spec, text: t, layout: layout, log: log) }
        let dataset: Dataset
        let source: String
        switch spec.data.source {
        case .synthetic(let s):
            dataset = try spec.syntheticGenerator(s).generate()
            source = "synthetic"
        case .file(let f):
            dataset = f.resolvedFormat == .csv ? try Dataset.load(csv: f.resolvedPath) : try Dataset.load(hdf5: f.resolvedPath)
            source = f.path
        case .text:
            return
        }
        let splits = try dataset.split(train: spec.data.split.train, val: spec.data.split.val, seed: spec.dataSeed64)
        let norm = spec.data.standardize ? Standardization.fit(splits.train) : nil
        try H5File.createAtomically(layout.taskFile("data")) { file in
            try file.setTaskAttributes("data")
            try file.setAttribute("source", source)
            try file.setAttribute("data_seed", Int64(spec.dataSeed))
            try file.setAttribute("classes", Int64(dataset.classes))
            try file.setAttribute("features", Int64(dataset.features))
            for (name, part, rows) in [("train", splits.train, splits.trainIndices), ("val", splits.val, splits.valIndices),
                                       ("test", splits.test, splits.testIndices)] {
                try part.write(to: file, path: "data/" + name)
                try file.createDataset("data/\(name)/index", rows.map(Int64.init))
            }
            try norm?.write(to: file, path: "data/standardization")
        }
        log.info("data: \(dataset.count) samples (\(source)), \(dataset.features) features, \(dataset.classes) classes; split \(splits.train.count)/\(splits.val.count)/\(splits.test.count)")
    }

    /// `data.source: text`: the corpus split by `data.split` into each domain's contiguous
    /// train, val and test streams, written in the §5.4 layout (`TextCorpus.write`).
    static func runText(spec: ExperimentSpec, text: DataSpec.TextData, layout: RunLayout, log: RunLog) throws {
        let f = spec.data.split
        let corpus = try TextCorpus.load(path: text.resolvedPath, train: f.train, val: f.val, source: text.path)
        try H5File.createAtomically(layout.taskFile("data")) { file in
            try file.setTaskAttributes("data")
            try file.setAttribute("source", text.path)
            try corpus.write(to: file)
        }
        let counts = TextSplit.allCases.map { String(corpus.tokenCount($0)) }.joined(separator: "/")
        log.info("data: text corpus \(text.path), \(corpus.domains.count) domains (\(corpus.domains.joined(separator: ", "))); tokens per split \(counts)")
    }

    /// A split of the data task's output, standardised when the run standardises.
    static func load(_ split: String, layout: RunLayout) throws -> (data: Dataset, norm: Standardization?) {
        let file = try H5File.open(layout.taskFile("data"))
        let group = try file.openGroup("data/" + split)
        let raw = try Dataset.load(from: group, source: layout.taskFile("data") + ":/data/" + split)
        guard file.exists("data/standardization") else { return (raw, nil) }
        let norm = try Standardization.read(from: file, path: "data/standardization")
        return (norm.apply(raw), norm)
    }
}
