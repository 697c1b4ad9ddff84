import Foundation
import MoEData
import MoEHDF5
import XCTest

/// Writes a folder corpus: `files` maps a relative path (`a.txt`, `b/2.txt`) to its text.
func writeFolderCorpus(_ root: String, _ files: [String: String]) throws {
    for (relative, text) in files {
        let url = URL(fileURLWithPath: root).appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }
}

/// A string of `n` bytes cycling through `alphabet`.
func text(_ n: Int, _ alphabet: String = "abcdefghij") -> String {
    let a = Array(alphabet)
    return String((0..<n).map { a[$0 % a.count] })
}

final class TextCorpusTests: DataTestCase {
    func testSplitBoundariesAreContiguousAndRounded() throws {
        // n = 1001: train round(800.8) = 801, val round(100.1) = 100, test 100.
        // n = 15 with 0.5/0.3: train round(7.5) = 8 (half away from zero), val round(4.5) = 5, test 2.
        let a = (0..<1001).map { UInt8($0 % 256) }
        let b = (0..<15).map { UInt8(200 + $0) }
        let raw = TextDomains(names: ["a", "b"], texts: [a, b])
        let c = try TextCorpus.split(raw, train: 0.8, val: 0.1, source: "mem")
        XCTAssertEqual(c.streams(.train)[0], a[0..<801].map(UInt16.init))
        XCTAssertEqual(c.streams(.val)[0], a[801..<901].map(UInt16.init))
        XCTAssertEqual(c.streams(.test)[0], a[901...].map(UInt16.init))
        XCTAssertEqual(c.streams(.train)[1].count + c.streams(.val)[1].count + c.streams(.test)[1].count, 15)
        let d = try TextCorpus.split(raw, train: 0.5, val: 0.3, source: "mem")
        XCTAssertEqual(d.streams(.train)[1], b[0..<8].map(UInt16.init))
        XCTAssertEqual(d.streams(.val)[1], b[8..<13].map(UInt16.init))
        XCTAssertEqual(d.streams(.test)[1], b[13...].map(UInt16.init))
        XCTAssertEqual(c.vocabulary, 256)
        XCTAssertEqual(c.tokenCount(.train), 801 + 12)
    }

    func testFolderDomainsSortedFilesAndSubfolders() throws {
        let root = path("corpus")
        try writeFolderCorpus(root, ["zeta.txt": "ZZ", "alpha/2.txt": "second", "alpha/10.txt": "first-",
                                     "alpha/notes.md": "ignored", "beta.txt": "bb", "README": "ignored",
                                     ".hidden.txt": "ignored"])
        let raw = try TextDomains.load(folder: root)
        XCTAssertEqual(raw.names, ["alpha", "beta", "zeta"])
        // "10.txt" < "2.txt" in byte order.
        XCTAssertEqual(raw.texts, [Array("first-second".utf8), Array("bb".utf8), Array("ZZ".utf8)])
    }

    func testFolderAndHDF5CorpusLoadEqual() throws {
        let root = path("folder")
        let files = ["code.txt": text(3000, "{}();\n"), "prose/1.txt": text(2000, "the cat "), "prose/2.txt": text(1000, "sat ")]
        try writeFolderCorpus(root, files)
        let raw = try TextDomains.load(folder: root)
        try H5File.createAtomically(path("corpus.h5")) { try raw.write(corpus: $0) }
        let fromFolder = try TextCorpus.load(path: root, train: 0.8, val: 0.1, source: "x")
        let fromFile = try TextCorpus.load(path: path("corpus.h5"), train: 0.8, val: 0.1, source: "x")
        XCTAssertEqual(fromFolder, fromFile)
        XCTAssertEqual(fromFile.domains, ["code", "prose"])
        XCTAssertEqual(fromFile.streams(.train)[1].count, 2400)
    }

    func testDataLayoutRoundTrip() throws {
        let raw = TextDomains(names: ["x", "y", "z"], texts: [Array(text(500).utf8), Array(text(90, "é!").utf8), Array(repeating: 255, count: 40)])
        let corpus = try TextCorpus.split(raw, train: 0.7, val: 0.2, source: "s")
        try corpus.write(hdf5: path("data.h5"))
        let back = try TextCorpus.load(path: path("data.h5"), train: 0.1, val: 0.1, source: "s")  // fractions unused
        XCTAssertEqual(back, corpus)
        let file = try H5File.open(path("data.h5"))
        XCTAssertEqual(try file.openDataset("data/train/tokens").dtype, .uint16)
        XCTAssertEqual(try file.openDataset("data/val/domain").dtype, .int64)
        XCTAssertEqual(try file.readStrings("data/domains"), ["x", "y", "z"])
        let ids = try file.read("data/test/domain", as: Int.self).values
        XCTAssertEqual(ids, corpus.streams(.test).enumerated().flatMap { d, s in Array(repeating: d, count: s.count) })
    }

    // MARK: errors (exact one-line messages)

    func message(_ body: () throws -> Any) -> String {
        do { _ = try body(); return "no error" } catch { return "\(error)" }
    }

    func testMissingAndNotACorpus() throws {
        XCTAssertEqual(message { try TextCorpus.load(path: path("absent"), train: 0.8, val: 0.1, source: "absent") },
                       "absent: no such text corpus (give a folder with one .txt file or sub-folder per domain, or an HDF5 corpus file)")
        try Data("hello".utf8).write(to: URL(fileURLWithPath: path("one.txt")))
        XCTAssertEqual(message { try TextCorpus.load(path: path("one.txt"), train: 0.8, val: 0.1, source: "one.txt") },
                       "one.txt: not a text corpus: not an HDF5 file (no HDF5 signature; it looks like text); give a folder with one .txt file or sub-folder per domain, or an HDF5 file")
        try makeDataset(rows: 4).write(hdf5: path("features.h5"))
        XCTAssertEqual(message { try TextCorpus.load(path: path("features.h5"), train: 0.8, val: 0.1, source: "f.h5") },
                       "f.h5: not a text corpus: the HDF5 file has neither /domains with /text/<name> (a text corpus) nor /data/<split>/tokens (the tasks/data.h5 layout)")
        try H5File.createAtomically(path("half.h5")) { try $0.createStrings("domains", ["a"]) }
        XCTAssertEqual(message { try TextCorpus.load(path: path("half.h5"), train: 0.8, val: 0.1, source: "h.h5") },
                       "h.h5: missing dataset 'text/a'")
        try writeFolderCorpus(path("twice"), ["a.txt": "x", "a/1.txt": "y"])
        XCTAssertEqual(message { try TextCorpus.load(path: path("twice"), train: 0.8, val: 0.1, source: "twice") },
                       "twice: not a text corpus: domain 'a' is given twice, by 'a' and by 'a.txt'")
    }

    func testNoDomainsAndEmptyDomain() throws {
        try FileManager.default.createDirectory(atPath: path("empty"), withIntermediateDirectories: true)
        try Data("not a domain".utf8).write(to: URL(fileURLWithPath: path("empty/README.md")))
        XCTAssertEqual(message { try TextCorpus.load(path: path("empty"), train: 0.8, val: 0.1, source: "empty") },
                       "empty: the text corpus has no domains")
        try writeFolderCorpus(path("c"), ["a.txt": "abc", "b.txt": ""])
        XCTAssertEqual(message { try TextCorpus.load(path: path("c"), train: 0.8, val: 0.1, source: "c") },
                       "c: domain 'b' is empty (no text)")
        try FileManager.default.createDirectory(atPath: path("d/sub"), withIntermediateDirectories: true)
        try writeFolderCorpus(path("d"), ["a.txt": "abc"])
        XCTAssertEqual(message { try TextCorpus.load(path: path("d"), train: 0.8, val: 0.1, source: "d") },
                       "d: domain 'sub' is empty (no text)")
        try H5File.createAtomically(path("none.h5")) { try $0.createStrings("data/domains", []) }
        XCTAssertEqual(message { try TextCorpus.load(path: path("none.h5"), train: 0.8, val: 0.1, source: "n.h5") },
                       "n.h5: the text corpus has no domains")
    }

    func testStreamTooShortNamesDomainSplitAndCounts() throws {
        try writeFolderCorpus(path("c"), ["big.txt": text(10_000), "small.txt": text(300)])
        // small: train 240, val 30, test 30; context 40 needs 41.
        XCTAssertEqual(message { try TextCorpus.preflight(path: path("c"), train: 0.8, val: 0.1, context: 40, source: "c") },
                       "c: domain 'small' has 30 val tokens, fewer than context + 1 = 41 for one window")
        XCTAssertEqual(message { try TextCorpus.preflight(path: path("c"), train: 0.8, val: 0.15, context: 40, source: "c") },
                       "c: domain 'small' has 15 test tokens, fewer than context + 1 = 41 for one window")
        XCTAssertNoThrow(try TextCorpus.preflight(path: path("c"), train: 0.8, val: 0.1, context: 29))
    }

    func testTokensOutsideTheVocabularyRejected() throws {
        try H5File.createAtomically(path("big.h5")) { file in
            try file.createStrings("data/domains", ["a"])
            for split in ["train", "val", "test"] {
                try file.createDataset("data/\(split)/tokens", split == "val" ? [Int32(3), 70, 256, 1] : [Int32(1), 2, 3, 4])
                try file.createDataset("data/\(split)/domain", [0, 0, 0, 0])
            }
        }
        XCTAssertEqual(message { try TextCorpus.load(path: path("big.h5"), train: 0.8, val: 0.1, source: "b.h5") },
                       "b.h5: /data/val/tokens[2] is 256, not a token id of the vocabulary 0..<256")
        try H5File.createAtomically(path("order.h5")) { file in
            try file.createStrings("data/domains", ["a", "b"])
            for split in ["train", "val", "test"] {
                try file.createDataset("data/\(split)/tokens", [Int32(1), 2, 3])
                try file.createDataset("data/\(split)/domain", split == "test" ? [1, 0, 1] : [0, 1, 1])
            }
        }
        XCTAssertEqual(message { try TextCorpus.load(path: path("order.h5"), train: 0.8, val: 0.1, source: "o.h5") },
                       "o.h5: /data/test/domain[1] is 0: ids must be in 0..<2 and ascending (the domains' streams concatenated in domain order)")
    }

    func testBadFractions() {
        let raw = TextDomains(names: ["a"], texts: [[1, 2, 3]])
        XCTAssertEqual(message { try TextCorpus.split(raw, train: 0.9, val: 0.2, source: "s") },
                       "split: train + val: fractions sum to 1.1 > 1")
    }
}
