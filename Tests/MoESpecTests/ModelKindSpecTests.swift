import Foundation
import XCTest
@testable import MoESpec

/// `model.kind` and `data.source: text` (issue 13 item 2): the transformer's keys and
/// defaults, what the resolved spec writes, and the one-line errors of specs that mix the kinds.
final class ModelKindSpecTests: XCTestCase {
    /// The shipped corpus (the loader checks only that it exists; `Preflight` reads it).
    let corpus = TestPaths.repository.appendingPathComponent("experiments/data/text-domains.h5").path

    func lm(_ model: String = "", data: String = "") -> String {
        "name: lm\ndata:\n  source: text\n  path: \(corpus)\n\(data)model:\n  kind: transformer\n\(model)"
    }

    func testTransformerDefaultsAreNanoGPTsCPURecipe() throws {
        let spec = try loadSpec(lm())
        XCTAssertEqual(spec.model.kind, .transformer)
        XCTAssertEqual(spec.model.transformer, ModelSpec.Transformer(context: 64, heads: 4, tieEmbeddings: true))
        XCTAssertEqual(spec.model.blocks, 4, "a transformer's blocks default is 4")
        XCTAssertEqual(spec.model.hidden, 128)
        XCTAssertEqual(spec.model.ffn, 512)
        XCTAssertEqual(spec.model.activation, .gelu)
        XCTAssertEqual(spec.model.dropout, 0)
        XCTAssertEqual(spec.data.source, .text(.init(path: corpus, resolvedPath: corpus)))
        XCTAssertEqual(spec.data.split, .init(train: 0.8, val: 0.1, test: 0.1))
        let mlp = try loadSpec("name: m\n")
        XCTAssertEqual(mlp.model.kind, .mlp)
        XCTAssertNil(mlp.model.transformer)
        XCTAssertEqual(mlp.model.blocks, 2)
    }

    func testTransformerKeysAreRead() throws {
        let spec = try loadSpec(lm("  context: 32\n  hidden: 96\n  heads: 6\n  blocks: 2\n  ffn: 384\n  activation: relu\n  dropout: 0.1\n  tie_embeddings: false\n",
                                   data: "  split: {train: 0.9, val: 0.05, test: 0.05}\n"))
        XCTAssertEqual(spec.model.transformer, ModelSpec.Transformer(context: 32, heads: 6, tieEmbeddings: false))
        XCTAssertEqual([spec.model.hidden, spec.model.blocks, spec.model.ffn], [96, 2, 384])
        XCTAssertEqual(spec.model.activation, .relu)
        XCTAssertEqual(spec.model.dropout, 0.1)
        XCTAssertEqual(spec.data.split, .init(train: 0.9, val: 0.05, test: 0.05))
        // The MoE keys keep their meaning on a transformer.
        let moe = try loadSpec(lm() + "experts: 8\nsplit: {strategy: replicate}\nrouter: {type: topk, k: 2}\n")
        XCTAssertEqual(moe.experts, 8)
        XCTAssertEqual(moe.router.k, 2)
    }

    /// The resolved spec writes the keys of the kind and source it has, and reads back equal; an
    /// mlp's has `kind: mlp` and no transformer key, a text spec no feature key.
    func testResolvedSpecWritesTheKeysOfItsKind() throws {
        let spec = try loadSpec(lm("  heads: 8\n"))
        let yaml = spec.resolvedYAML()
        for line in ["  source: text\n", "  kind: transformer\n", "  context: 64\n", "  heads: 8\n", "  blocks: 4\n", "  tie_embeddings: true\n"] {
            XCTAssertTrue(yaml.contains(line), line)
        }
        for key in ["standardize", "features", "format", "samples"] { XCTAssertFalse(yaml.contains("\n  " + key + ":"), key) }
        XCTAssertEqual(try SpecLoader.loadResolved(yaml: yaml, file: "r.yaml", baseDirectory: "/"), spec)
        let mlp = try loadSpec("name: m\n").resolvedYAML()
        XCTAssertTrue(mlp.contains("model:\n  kind: mlp\n  hidden: 128\n"), mlp)
        for key in ["context", "heads", "tie_embeddings"] { XCTAssertFalse(mlp.contains("\n  " + key + ":"), key) }
    }

    private func error(_ yaml: String, overrides: [String] = []) -> String? {
        specError { try loadSpec(yaml, overrides: overrides) }?.description
    }

    func testHeadsMustDivideHidden() throws {
        let e = specError { try loadSpec(lm("  heads: 5\n")) }
        XCTAssertEqual(e?.description, "test.yaml:7:10: model.heads: must divide model.hidden (128): each head has hidden / heads dimensions, got 5")
        XCTAssertEqual(e?.hint, "e.g. heads: 4")
        XCTAssertEqual(error(lm("  hidden: 96\n  heads: 7\n")),
                       "test.yaml:8:10: model.heads: must divide model.hidden (96): each head has hidden / heads dimensions, got 7")
        XCTAssertEqual(ModelKindRules.divisorNear(7, of: 96), 6)
        XCTAssertNil(ModelKindRules.divisorNear(3, of: 1 << 40), "no search over a huge width")
    }

    /// Branch experts of an LM read whole domains (`shard_by: domain`) or all of train (`none`);
    /// the sample shardings of feature data are errors at the key.
    func testBranchLMShardsByDomainOrNone() throws {
        let branch = lm() + "experts: 2\nsplit:\n  strategy: branch\n"
        XCTAssertEqual(try loadSpec(branch).split.shardBy, .domain)
        XCTAssertEqual(try loadSpec(branch + "  shard_by: none\n").split.shardBy, .none)
        for bad in ["index", "random"] {
            let e = specError { try loadSpec(branch + "  shard_by: \(bad)\n") }
            XCTAssertEqual(e?.description, "test.yaml:10:13: split.shard_by: \(bad) shards feature samples; a text corpus is sharded by domain "
                           + "(expert i reads the domains d with d mod experts = i) or none (every expert reads all of train)")
            XCTAssertEqual(e?.hint, "use split.shard_by: domain or none")
        }
        // Outside branch the key has no effect: a warning, not this error.
        XCTAssertNoThrow(try loadSpec(lm() + "split:\n  shard_by: index\n"))
    }

    func testContextMustBePositive() throws {
        XCTAssertEqual(error(lm("  context: 0\n")), "test.yaml:7:12: model.context: must be >= 1, got 0")
        XCTAssertEqual(error(lm("  context: -3\n")), "test.yaml:7:12: model.context: must be >= 1, got -3")
    }

    func testTransformerKeysOnAnMLPAreErrors() throws {
        XCTAssertEqual(error("name: m\nmodel:\n  hidden: 64\n  heads: 4\n"),
                       "test.yaml:4:10: model.heads: applies only to model.kind: transformer, got mlp")
        XCTAssertEqual(error("name: m\nmodel: {tie_embeddings: false, context: 8}\n"),
                       "test.yaml:2:25: model.tie_embeddings: applies only to model.kind: transformer, got mlp",
                       "the first one written")
        XCTAssertEqual(error("name: m\n", overrides: ["model.context=32"]),
                       "--set:1:15: model.context: applies only to model.kind: transformer, got mlp")
    }

    func testFeatureKeysOnTextAreErrors() throws {
        XCTAssertEqual(error(lm(data: "  standardize: true\n")),
                       "test.yaml:5:16: data.standardize: applies only to feature data (data.source: synthetic or file, model.kind: mlp); data.source: text reads byte tokens")
        XCTAssertEqual(error(lm(data: "  samples: 100\n  features: 4\n")),
                       "test.yaml:5:12: data.samples: applies only to feature data (data.source: synthetic or file, model.kind: mlp); data.source: text reads byte tokens")
        XCTAssertEqual(error(lm(data: "  format: hdf5\n")),
                       "test.yaml:5:11: data.format: applies only to feature data (data.source: synthetic or file, model.kind: mlp); data.source: text reads byte tokens")
    }

    func testKindAndSourceMustMatch() throws {
        XCTAssertEqual(error("name: m\nmodel:\n  kind: transformer\n"),
                       "test.yaml:3:9: model.kind: transformer needs data.source: text (a language model reads token streams), got synthetic")
        XCTAssertEqual(error("name: m\ndata:\n  source: text\n  path: \(corpus)\n"),
                       "test.yaml:3:11: data.source: text needs model.kind: transformer (an mlp reads feature vectors), got mlp")
    }

    func testCorpusPathIsRequiredAndMustExist() throws {
        XCTAssertEqual(error("name: m\ndata: {source: text}\nmodel: {kind: transformer}\n"),
                       "test.yaml:2:7: data.path: required with data.source: text")
        XCTAssertEqual(error("name: m\ndata: {source: text, path: nowhere/corpus}\nmodel: {kind: transformer}\n"),
                       "test.yaml:2:28: data.path: no such text corpus (file or folder): \"nowhere/corpus\" (relative to the spec file's directory)")
        // A folder is a corpus too (one .txt file or sub-folder per domain; read before the run).
        XCTAssertNoThrow(try loadSpec("name: m\ndata: {source: text, path: bad}\nmodel: {kind: transformer}\n"))
    }
}
