import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest

extension CLI {
    /// Each SVG in `directory` parses as XML (and passes xmllint when installed) and renders to a
    /// PNG of more than `minBytes` bytes with rsvg-convert (`NAME.svg.png` next to it); without
    /// rsvg-convert the SVGs are checked as XML only, and that is printed.
    static func assertSVGsRender(_ svgs: [String], in directory: String, minBytes: Int = 2000, caller: String,
                                 file: StaticString = #filePath, line: UInt = #line) throws {
        for svg in svgs {
            let parser = XMLParser(data: try Data(contentsOf: URL(fileURLWithPath: directory + "/" + svg)))
            XCTAssertTrue(parser.parse(), "\(svg) is well-formed XML: \(String(describing: parser.parserError))", file: file, line: line)
        }
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/xmllint") {
            let lint = try tool("/usr/bin/xmllint", ["--noout"] + svgs.map { directory + "/" + $0 })
            XCTAssertEqual(lint.status, 0, lint.stderr, file: file, line: line)
        }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/rsvg-convert") else {
            print("\(caller): rsvg-convert not installed (make setup installs librsvg2-bin); SVGs checked as XML only")
            return
        }
        for svg in svgs {
            let png = directory + "/" + svg + ".png"
            let render = try tool("/usr/bin/rsvg-convert", ["-o", png, directory + "/" + svg])
            XCTAssertEqual(render.status, 0, "\(svg): \(render.stderr)", file: file, line: line)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: png))
            XCTAssertEqual(Array(bytes.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "\(svg) renders to PNG", file: file, line: line)
            XCTAssertGreaterThan(bytes.count, minBytes, svg, file: file, line: line)
        }
    }
}
