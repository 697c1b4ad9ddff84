import MoEData
import MoEHDF5

/// The text corpus the `data` task of a language model wrote in `tasks/data.h5` (ARCHITECTURE
/// §5.4: `/data/<split>/{tokens, domain}`, `/data/domains`; see `DataTask` and `TextCorpus.write`).
enum TextDataTask {
    static func load(layout: RunLayout) throws -> TextCorpus {
        let path = layout.taskFile("data")
        let file = try H5File.open(path)
        return try TextCorpus.load(dataLayout: file, source: path)
    }
}
