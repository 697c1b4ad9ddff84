import Foundation
import XCTest
@testable import MoESpec

final class HostileInputTests: XCTestCase {
    /// Deep nesting is refused before Yams' recursive composer sees it (no stack overflow).
    func testDeepNestingIsRefusedWithoutRecursion() {
        let flow = "name: x\nseed: " + String(repeating: "[", count: 500_000)
        XCTAssertEqual(specError { try loadSpec(flow) }?.message, "nested more than 64 levels deep; refusing to parse it")
        let block = "name: x\nseed:\n" + String(repeating: "- ", count: 200_000) + "1\n"
        XCTAssertEqual(specError { try loadSpec(block) }?.message, "nested more than 64 levels deep; refusing to parse it")
    }

    func testOversizedSpecIsRefused() {
        let big = "name: x\ndescription: " + String(repeating: "a", count: YAMLDocument.maxBytes)
        XCTAssertEqual(specError { try loadSpec(big) }?.description, "test.yaml: the spec is larger than 1 MiB; refusing to parse it")
    }

    /// A mapping-based bomb is counted like a list-based one.
    func testMappingAliasBomb() {
        var lines = ["name: m", "m0: &m0 {a: 1, b: 1, c: 1, d: 1, e: 1, f: 1, g: 1, h: 1, i: 1, j: 1}"]
        for i in 1...8 {
            let fields = (0..<10).map { "k\($0): *m\(i - 1)" }.joined(separator: ", ")
            lines.append("m\(i): &m\(i) {\(fields)}")
        }
        let start = Date()
        XCTAssertTrue(specError { try loadSpec(lines.joined(separator: "\n")) }?.message.hasPrefix("aliases expand") == true)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
    }

    /// Many duplicated keys: the second occurrence of the first one is still found.
    func testSeveralDuplicateGroups() {
        let yaml = "name: d\ntrain:\n  lr: 1\n  epochs: 1\n  lr: 2\n  epochs: 2\n  eps: 1\n  eps: 2\n"
        XCTAssertEqual(specError { try loadSpec(yaml) }?.description, "test.yaml:6:3: train.epochs: duplicate key")
    }

    /// 10^5 nodes is the limit: a document just under it loads, the next level of aliases does not.
    func testAliasLimitBoundary() throws {
        var lines = ["name: limit", "description: ok", "x0: &x0 [a, b, c, d, e, f, g, h, i, j]"]
        for i in 1...3 { lines.append("x\(i): &x\(i) [" + Array(repeating: "*x\(i - 1)", count: 10).joined(separator: ", ") + "]") }
        let error = specError { try loadSpec(lines.joined(separator: "\n")) }
        XCTAssertTrue(error?.message.hasPrefix("unknown key") == true, "about 12,000 nodes pass the alias check: \(String(describing: error))")
        lines.append("x4: &x4 [" + Array(repeating: "*x3", count: 10).joined(separator: ", ") + "]")
        let bomb = specError { try loadSpec(lines.joined(separator: "\n")) }
        XCTAssertTrue(bomb?.message.hasPrefix("aliases expand") == true, String(describing: bomb))
    }
}
