import Foundation
import XCTest
@testable import MoESpec

/// The bad-spec corpus: every `Resources/bad/NAME.yaml` must fail with exactly the one-line
/// message in `NAME.expected` under `validate --strict`. `NAME.warning`, when present, holds the
/// warning lines the spec gives without `--strict` (keys without effect), where it must load;
/// without it the spec fails with the same message in both modes. `NAME.args`, when present,
/// holds `--set` overrides, one per line. Specs are loaded as the file `bad/NAME.yaml` (the name
/// in the messages), with relative paths resolved against `Resources/bad`.
final class BadSpecCorpusTests: XCTestCase {
    static let minimumCorpusSize = 40
    static let directory = TestPaths.resources.appendingPathComponent("bad")

    struct Case {
        let name: String
        let yaml: String
        let overrides: [String]
        let expected: String?
        /// The warnings without `--strict`; nil when the spec is an error in both modes.
        let warnings: [String]?
    }

    static func corpus() throws -> [Case] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
        return try names.map { name in
            func read(_ ext: String) -> String? {
                try? String(contentsOf: directory.appendingPathComponent("\(name).\(ext)"), encoding: .utf8)
            }
            let yaml = try String(contentsOf: directory.appendingPathComponent("\(name).yaml"), encoding: .utf8)
            let overrides = read("args")?.split(separator: "\n").map(String.init) ?? []
            let expected = read("expected")?.trimmingCharacters(in: .newlines)
            let warnings = read("warning")?.split(separator: "\n").map(String.init)
            return Case(name: name, yaml: yaml, overrides: overrides, expected: expected, warnings: warnings)
        }
    }

    static func run(_ c: Case, strict: Bool = true) -> Result<LoadedSpec, Error> {
        Result { try SpecLoader.load(yaml: c.yaml, file: "bad/\(c.name).yaml", baseDirectory: directory.path,
                                     overrides: c.overrides, mode: strict ? .strict : .warn) }
    }

    func testCorpusIsLargeEnough() throws {
        let corpus = try Self.corpus()
        XCTAssertGreaterThanOrEqual(corpus.count, Self.minimumCorpusSize, "the bad-spec corpus needs at least 40 entries")
    }

    func testEveryBadSpecFailsWithItsExactMessage() throws {
        for c in try Self.corpus() {
            guard let expected = c.expected else {
                XCTFail("\(c.name): missing \(c.name).expected")
                continue
            }
            switch Self.run(c) {
            case .success:
                XCTFail("\(c.name): loaded without error; expected \(expected)")
            case .failure(let error as SpecError):
                XCTAssertEqual(error.description, expected, "\(c.name)")
                XCTAssertFalse(error.description.contains("\n"), "\(c.name): the message must be one line")
            case .failure(let error):
                XCTFail("\(c.name): threw \(error), not a SpecError")
            }
        }
    }

    /// Keys without effect load with their warnings (the key removed from the spec) unless
    /// `--strict`; the other cases fail the same way in both modes.
    func testWarningsWithoutStrict() throws {
        let corpus = try Self.corpus()
        XCTAssertGreaterThanOrEqual(corpus.filter { $0.warnings != nil }.count, 20)
        for c in corpus {
            switch (Self.run(c, strict: false), c.warnings) {
            case (.success(let loaded), let expected?):
                XCTAssertEqual(loaded.warnings.map(\.description), expected, c.name)
            case (.success, nil):
                XCTFail("\(c.name): loaded without --strict; expected \(c.expected ?? "")")
            case (.failure(let error), nil):
                XCTAssertEqual((error as? SpecError)?.description, c.expected, c.name)
            case (.failure(let error), _?):
                XCTFail("\(c.name): \(error) without --strict; expected warnings only")
            }
        }
    }

    /// Sanity bound only (machines are noisy): the bombs are refused long before expansion.
    func testAliasBombsAreRefusedFast() throws {
        for name in ["lol-bomb", "alias-key-bomb"] {
            let c = try XCTUnwrap(Self.corpus().first { $0.name == name })
            let start = Date()
            guard case .failure(let error as SpecError) = Self.run(c) else { return XCTFail("\(name) was not refused") }
            XCTAssertLessThan(Date().timeIntervalSince(start), 5, "\(name) took too long")
            XCTAssertTrue(error.message.contains("aliases expand"), error.description)
        }
    }

    func testOverridesInTheCorpus() throws {
        let withOverrides = try Self.corpus().filter { !$0.overrides.isEmpty }
        XCTAssertGreaterThanOrEqual(withOverrides.count, 5)
        for c in withOverrides {
            XCTAssertTrue(c.expected?.hasPrefix("--set:1:") == true || c.expected?.hasPrefix("--unset:1:") == true,
                          "\(c.name): an override error is located in --set (or --unset for a removal, `~KEY`)")
        }
    }
}
