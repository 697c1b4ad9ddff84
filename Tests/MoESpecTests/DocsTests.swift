import Foundation
import XCTest
@testable import MoESpec

/// docs/spec.md is generated from the schema table; this test keeps the committed file in sync.
final class DocsTests: XCTestCase {
    func testSpecReferenceIsUpToDate() throws {
        let url = TestPaths.repository.appendingPathComponent("docs/spec.md")
        let generated = SpecSchema.markdown()
        if ProcessInfo.processInfo.environment["MOE_RUN_REGENERATE_DOCS"] == "1" {
            try generated.write(to: url, atomically: true, encoding: .utf8)
        }
        let committed = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        guard committed != generated else { return }
        let old = committed.components(separatedBy: "\n"), new = generated.components(separatedBy: "\n")
        let line = (0..<min(old.count, new.count)).first { old[$0] != new[$0] } ?? min(old.count, new.count)
        XCTFail("""
            docs/spec.md differs from SpecSchema.markdown() at line \(line + 1):
              committed: \(line < old.count ? old[line] : "<end of file>")
              generated: \(line < new.count ? new[line] : "<end of file>")
            Regenerate it: MOE_RUN_REGENERATE_DOCS=1 swift test --filter MoESpecTests.DocsTests
            """)
    }

    func testEverySchemaKeyIsDocumented() throws {
        let markdown = SpecSchema.markdown()
        func visit(_ fields: [SchemaField], top: Bool) {
            for field in fields {
                let row = top && field.isSection ? "## `\(field.key)`\n" : "| `\(field.key)` |"
                XCTAssertTrue(markdown.contains(row), field.key)
                visit(field.children, top: false)
            }
        }
        visit(SpecSchema.root, top: true)
        for entry in SupportGate.entries { XCTAssertTrue(markdown.contains("| `\(entry.keyPath)` |"), entry.keyPath) }
        for rule in CrossFieldRules.all { XCTAssertTrue(markdown.contains(rule.summary)) }
    }
}
