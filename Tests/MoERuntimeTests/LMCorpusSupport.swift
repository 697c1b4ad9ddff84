import MoEData
@testable import MoERuntime

extension TextCorpus {
    /// Two domains of different text ("prose", "code"; about 540 and 450 bytes), split
    /// `train` / `val` / the rest, written to `layout`'s tasks/data.h5.
    static func writeTwoDomains(to layout: RunLayout, train: Double, val: Double) throws -> TextCorpus {
        let a = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 12)
        let b = String(repeating: "def f(x):\n    return x * 2 + 1\n", count: 14)
        let corpus = try TextCorpus.split(TextDomains(names: ["prose", "code"], texts: [Array(a.utf8), Array(b.utf8)]),
                                          train: train, val: val, source: "test")
        try corpus.write(hdf5: layout.taskFile("data"))
        return corpus
    }
}
