import Foundation
@testable import MoERuntime
import MoESpec
import XCTest

/// The pre-flight of `data.source: text` (issue 13 item 2), through `SpecValidation.validate`
/// (what `moe-run validate`, `plan` and a run call before writing anything): the corpus's
/// problems are one line at `data.path`, FILE:LINE:COL as every spec error.
final class TextPreflightTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-text-preflight-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/corp", withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    /// Domain `name` of the folder corpus with `bytes` bytes of text.
    func domain(_ name: String, bytes: Int) throws {
        let text = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: bytes / 45 + 1).prefix(bytes)
        try String(text).write(toFile: "\(dir)/corp/\(name).txt", atomically: true, encoding: .utf8)
    }

    /// Validates an LM spec on `path` (line 4 of the file) with `extra` lines appended.
    func validate(path: String = "corp", context: Int = 64, extra: String = "") throws -> SpecValidation {
        let yaml = "name: lm\ndata:\n  source: text\n  path: \(path)\nmodel:\n  kind: transformer\n  context: \(context)\n" + extra
        try yaml.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
        return try SpecValidation.validate(specPath: dir + "/spec.yaml", overrides: [])
    }

    func message(path: String = "corp", context: Int = 64, extra: String = "") -> String? {
        do {
            _ = try validate(path: path, context: context, extra: extra)
            XCTFail("expected an error")
        } catch let error as SpecError {
            return error.description
        } catch {
            XCTFail("\(error)")
        }
        return nil
    }

    func testAValidCorpusValidatesAndPlans() throws {
        try domain("bible", bytes: 2000)
        try domain("code", bytes: 1500)
        let v = try validate()
        XCTAssertEqual(v.text(), "\(dir)/spec.yaml: valid (lm)")
        let plan = v.planText(json: false)
        XCTAssertTrue(plan.contains("read the text corpus corp as byte tokens, split each domain's stream 0.8/0.1/0.1 in contiguous blocks"), plan)
        XCTAssertTrue(plan.contains("train dense transformer LM (context 64, hidden 128, 4 heads, ffn 512, 4 blocks) for 10 epochs"), plan)
    }

    func testContextLongerThanADomainsValStreamIsRefused() throws {
        try domain("bible", bytes: 5000)
        try domain("code", bytes: 1000)
        // code: 800 train, 100 val, 100 test tokens; a window of context 128 needs 129.
        XCTAssertEqual(message(context: 128),
                       "\(dir)/spec.yaml:4:9: data.path: corp: domain 'code' has 100 val tokens, fewer than context + 1 = 129 for one window")
        XCTAssertNoThrow(try validate(context: 99))
    }

    func testAnEmptyDomainIsRefused() throws {
        try domain("bible", bytes: 5000)
        try domain("empty", bytes: 0)
        XCTAssertEqual(message(), "\(dir)/spec.yaml:4:9: data.path: corp: domain 'empty' is empty (no text)")
    }

    func testAFolderWithoutDomainsAndAFileThatIsNoCorpusAreRefused() throws {
        XCTAssertEqual(message(), "\(dir)/spec.yaml:4:9: data.path: corp: the text corpus has no domains")
        try "just text".write(toFile: dir + "/notes.txt", atomically: true, encoding: .utf8)
        XCTAssertTrue(message(path: "notes.txt")?.hasPrefix("\(dir)/spec.yaml:4:9: data.path: notes.txt: not a text corpus: ") == true)
    }

    func testBranchExpertsNeedADomainEach() throws {
        try domain("bible", bytes: 5000)
        try domain("code", bytes: 5000)
        XCTAssertEqual(message(extra: "experts: 3\nsplit: {strategy: branch}\n"),
                       "\(dir)/spec.yaml:4:9: data.path: corp: 2 domains leave branch experts without text: split.shard_by: domain gives expert i the domains d with d mod experts = i, and experts is 3")
        XCTAssertNoThrow(try validate(extra: "experts: 2\nsplit: {strategy: branch}\n"))
    }

    /// The shipped corpus passes with nanoGPT's recipe, and a data-parallel run of it (issue 15)
    /// is runnable; a group larger than the shared-memory group holds is refused in one line at
    /// validation, before anything is written.
    func testTheShippedCorpusValidatesDataParallelAndATooLargeGroupIsRefusedBeforeWriting() throws {
        let corpus = RunIDTests.repository.appendingPathComponent("experiments/data/text-domains.h5").path
        let v = try validate(path: corpus, extra: "train: {steps: 2000, batch_size: 12}\nparallelism: {mode: data, workers: 2}\n")
        XCTAssertEqual(v.spec.model.kind, .transformer)
        XCTAssertNoThrow(try SupportGate.checkRunnable(v.spec))
        XCTAssertEqual(message(path: corpus, extra: "train: {steps: 2000, batch_size: 12}\nparallelism: {mode: data, workers: 65}\n"),
                       "\(dir)/spec.yaml:9:36: parallelism.workers: data parallelism runs its workers as one shared-memory group of at most 64 processes, got 65")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing written")
    }
}
