import Foundation
import XCTest
@testable import MoESpec

final class LoaderTests: XCTestCase {
    private func temporaryFile(_ bytes: [UInt8], name: String) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("moespec-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    func testLoadPathResolvesDataRelativeToTheSpec() throws {
        let directory = try temporaryFile(Array("x,y\n1,0\n".utf8), name: "d.csv")
        let specPath = (directory as NSString).deletingLastPathComponent + "/spec.yaml"
        try "name: rel\ndata: {source: file, path: d.csv}\n".write(toFile: specPath, atomically: true, encoding: .utf8)
        let spec = try SpecLoader.load(path: specPath)
        guard case .file(let file) = spec.data.source else { return XCTFail("expected a file source") }
        XCTAssertEqual(file.resolvedPath, URL(fileURLWithPath: directory).standardizedFileURL.path)
        XCTAssertEqual(file.resolvedFormat, .csv)
    }

    func testMissingSpecFile() {
        let error = specError { try SpecLoader.load(path: "/nonexistent/spec.yaml") }
        XCTAssertEqual(error?.description, "/nonexistent/spec.yaml: no such file")
    }

    func testInvalidUTF8IsReportedWithItsPosition() throws {
        let path = try temporaryFile(Array("name: x\nseed: ".utf8) + [0xFF, 0x0A], name: "bad.yaml")
        let error = specError { try SpecLoader.load(path: path) }
        XCTAssertEqual(error?.description, "\(path):2:7: the file is not valid UTF-8 text")
    }

    func testDescriptionFormat() {
        XCTAssertEqual(SpecError(file: "a.yaml", line: 3, column: 4, keyPath: "router.k", message: "m").description,
                       "a.yaml:3:4: router.k: m")
        XCTAssertEqual(SpecError(file: "a.yaml", line: 3, column: 4, keyPath: "", message: "m").description, "a.yaml:3:4: m")
        XCTAssertEqual(SpecError(file: "a.yaml", line: 0, column: 0, keyPath: "", message: "m").description, "a.yaml: m")
    }

    func testHints() {
        XCTAssertEqual(specError { try loadSpec("name: h\nrouter: {type: topp}\n") }?.hint, "did you mean topk?")
        XCTAssertEqual(specError { try loadSpec("name: h\ntrain: {nesterov: off}\n") }?.hint,
                       "YAML 1.1 words like yes/no/on/off are not booleans in a spec; write true or false")
        XCTAssertEqual(specError { try loadSpec("name: h\ntrain: {zzz: 1}\n") }?.hint,
                       "allowed keys in train: " + SpecSchema.Train.all.map(\.key).joined(separator: ", "))
    }

    func testSuggestions() {
        XCTAssertEqual(Suggestions.distance("capacity_facor", "capacity_factor"), 1)
        XCTAssertEqual(Suggestions.distance("", "abc"), 3)
        XCTAssertEqual(Suggestions.distance("kitten", "sitting"), 3)
        XCTAssertEqual(Suggestions.closest(to: "kk", in: ["type", "k"]), "k")
        XCTAssertNil(Suggestions.closest(to: "learning_schedule_kind", in: SpecSchema.Train.all.map(\.key)))
        XCTAssertEqual(Suggestions.closest(to: "LR", in: ["lr"]), "lr", "case-insensitive")
    }
}
