import Foundation
import MoECore
import MoEHDF5

/// The raw text of a multi-domain corpus before splitting: one byte string per domain, in
/// domain-id order. Read from a folder or from a text corpus HDF5 file (docs/formats.md, "Text
/// corpora"); `TextCorpus.split` turns it into byte-token streams.
///
/// **Folder.** Each entry of the folder, in name order (byte order of the UTF-8 names, as
/// Python's `sorted()`), skipping names that start with `.`:
/// - a regular file `NAME.txt` is the domain `NAME`, its bytes the domain's text;
/// - a sub-folder `NAME/` is the domain `NAME`, its text the concatenation (no separator) of its
///   `.txt` files in name order (nested folders and other files inside are not read);
/// - any other file is not part of the corpus.
///
/// **Corpus HDF5 file.** `/domains`: the names in id order (string dataset); `/text/<name>`:
/// uint8 `[bytes]`, the domain's text. Attributes (`sha256`, `package`, `licence`, …) describe
/// the source and are not needed to load it.
public struct TextDomains: Equatable, Sendable {
    /// Names in domain-id order.
    public let names: [String]
    /// Each domain's text as bytes, in the order of `names`.
    public let texts: [[UInt8]]

    public init(names: [String], texts: [[UInt8]]) {
        precondition(names.count == texts.count, "one text per domain name")
        self.names = names
        self.texts = texts
    }

    /// Names sorted as `sorted()` sorts Python strings: by Unicode scalar value, i.e. UTF-8 bytes.
    static func sortedNames(_ names: [String]) -> [String] {
        names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Loads the domains of a folder (see the type's documentation). `source` names it in errors.
    public static func load(folder path: String, source: String? = nil) throws -> TextDomains {
        let name = source ?? path
        let fm = FileManager.default
        let entries: [String]
        do { entries = try fm.contentsOfDirectory(atPath: path) } catch {
            throw DataError.unreadable(file: name, message: "cannot list the folder")
        }
        var names: [String] = []
        var texts: [[UInt8]] = []
        var seen: [String: String] = [:]
        for entry in sortedNames(entries) where !entry.hasPrefix(".") {
            let full = (path as NSString).appendingPathComponent(entry)
            var isFolder: ObjCBool = false
            guard fm.fileExists(atPath: full, isDirectory: &isFolder) else { continue }
            let domain: String
            let text: [UInt8]
            if isFolder.boolValue {
                domain = entry
                let files = try textFiles(in: full, source: name + "/" + entry)
                text = try files.flatMap { try readBytes(full + "/" + $0, source: name + "/" + entry + "/" + $0) }
            } else if entry.hasSuffix(".txt"), entry.count > 4 {
                domain = String(entry.dropLast(4))
                text = try readBytes(full, source: name + "/" + entry)
            } else {
                continue
            }
            if let other = seen[domain] {
                throw DataError.notACorpus(path: name, reason: "domain '\(domain)' is given twice, by '\(other)' and by '\(entry)'")
            }
            seen[domain] = entry
            names.append(domain)
            texts.append(text)
        }
        return try TextDomains(names: names, texts: texts).checked(source: name)
    }

    /// The `.txt` files directly inside `folder`, in name order.
    private static func textFiles(in folder: String, source: String) throws -> [String] {
        let fm = FileManager.default
        let entries: [String]
        do { entries = try fm.contentsOfDirectory(atPath: folder) } catch {
            throw DataError.unreadable(file: source, message: "cannot list the folder")
        }
        return sortedNames(entries).filter { entry in
            var isFolder: ObjCBool = false
            return !entry.hasPrefix(".") && entry.hasSuffix(".txt")
                && fm.fileExists(atPath: folder + "/" + entry, isDirectory: &isFolder) && !isFolder.boolValue
        }
    }

    private static func readBytes(_ path: String, source: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError.unreadable(file: source, message: "cannot read the file")
        }
        return [UInt8](data)
    }

    /// Loads a text corpus HDF5 file's domains from an open file. `source` names it in errors.
    public static func load(corpus file: H5Location, source: String) throws -> TextDomains {
        try wrappingHDF5(source: source) {
            let names = try readNames(file, "domains", source: source)
            var texts: [[UInt8]] = []
            for (i, domain) in names.enumerated() {
                if domain.isEmpty || domain.contains("/") || names[..<i].contains(domain) {
                    throw DataError.notACorpus(path: source, reason: "domains[\(i)] is '\(domain)': names must be unique, non-empty, without '/'")
                }
                let path = "text/" + domain
                guard file.kind(of: path) == .dataset else { throw DataError.missingDataset(file: source, name: path) }
                let dataset = try file.openDataset(path)
                let (type, shape) = (try dataset.dtype, try dataset.shape)
                guard type == .uint8 else {
                    throw DataError.wrongType(file: source, name: path, expected: "uint8 (the text's bytes)", found: type.description)
                }
                guard shape.count == 1 else {
                    throw DataError.shapeMismatch(file: source, message: "\(path) must be 1-D [bytes], found shape \(shape)")
                }
                try Dataset.checkFits(shape, bytesPerElement: 1, name: path, source: source)
                texts.append(try dataset.read(UInt8.self))
            }
            return try TextDomains(names: names, texts: texts).checked(source: source)
        }
    }

    /// Reads the string dataset of domain names at `path` (missing or not strings: an error).
    static func readNames(_ location: H5Location, _ path: String, source: String) throws -> [String] {
        guard location.kind(of: path) == .dataset else { throw DataError.missingDataset(file: source, name: path) }
        let dtype = try location.openDataset(path).dtype
        guard dtype == .string else {
            throw DataError.wrongType(file: source, name: path, expected: "string", found: dtype.description)
        }
        return try location.readStrings(path)
    }

    /// Throws `.noDomains` or `.emptyDomain` (the first empty one in id order).
    func checked(source: String) throws -> TextDomains {
        guard !names.isEmpty else { throw DataError.noDomains(source: source) }
        if let empty = texts.firstIndex(where: { $0.isEmpty }) {
            throw DataError.emptyDomain(source: source, domain: names[empty])
        }
        return self
    }

    /// Writes the corpus layout (`/domains`, `/text/<name>` uint8) into `file`, with each text's
    /// `sha256` and `bytes` as attributes. Tests and users who make their own corpus files use it.
    public func write(corpus file: H5Location) throws {
        try wrappingHDF5 {
            try file.setAttribute("format", "moe-run/1")
            try file.setAttribute("kind", "text-corpus")
            try file.createStrings("domains", names)
            for (domain, text) in zip(names, texts) {
                let dataset = try file.createDataset("text/" + domain, text)
                try dataset.setAttribute("sha256", SHA256.hex(text))
                try dataset.setAttribute("bytes", Int64(text.count))
            }
        }
    }
}
