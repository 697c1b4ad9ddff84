import Foundation
import MoECore
import MoEData
import MoEHDF5
import MoENN
@testable import MoERuntime
import MoEStore
import XCTest

/// The BTM ensemble of transformer LMs as a checkpoint (`LMEnsembleCheckpoint`): stored and
/// loaded bit for bit, scored by `moe-run eval`'s text path (identical experts as one expert,
/// numpy's recomputation from the HDF5 alone), the validation prior, and `moe-run sample`.
final class LMEnsembleTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lm-ensemble-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    private func expert(seed: UInt64) -> TransformerLM {
        let model = TransformerLM(config: TransformerConfig(vocab: 256, context: 12, hidden: 16, heads: 2, blocks: 2, ffn: 24), seed: seed)
        for p in model.parameters where !p.name.hasSuffix("norm/weight") {
            var rng = RNG(seed: seed, purpose: "test/" + p.name)
            rng.fillNormal(p.value, std: 0.3)
        }
        return model
    }

    /// Two domains of different text, split 60/30/10, in the tasks/data.h5 layout.
    private func corpus() throws -> (TextCorpus, String) {
        let raw = TextDomains(names: ["prose", "code"], texts: [
            Array(String(repeating: "the cat sat on the mat. ", count: 12).utf8),
            Array(String(repeating: "f(x) { return x * 2; }\n", count: 12).utf8),
        ])
        let corpus = try TextCorpus.split(raw, train: 0.6, val: 0.3, source: "test")
        let path = directory + "/data.h5"
        try corpus.write(hdf5: path)
        return (corpus, path)
    }

    private func store(_ ensemble: TransformerEnsemble, prior: LMEnsembleCheckpoint.Prior = .uniform, _ name: String = "ensemble.h5") throws -> String {
        let path = directory + "/" + name
        try H5File.createAtomically(path) { try LMEnsembleCheckpoint.write(ensemble, prior: prior, to: $0, at: "model") }
        return path
    }

    func testStoredEnsembleLoadsBitForBitAndEvaluatesAsInMemory() throws {
        let ensemble = TransformerEnsemble(experts: [expert(seed: 1), expert(seed: 2), expert(seed: 3)], prior: [0.2, 0.5, 0.3])
        let path = try store(ensemble, prior: .validation)
        let file = try H5File.open(path)
        let group = try file.openGroup("model")
        XCTAssertEqual(try group.stringAttribute("kind"), "ensemble")
        XCTAssertEqual(try group.stringAttribute("posterior"), "prefix")
        XCTAssertEqual(try group.stringAttribute("prior"), "validation")
        XCTAssertEqual(try group.attribute("experts", as: Int64.self), 3)
        XCTAssertEqual(try Checkpoint.readKindAndConfig(from: group, at: "experts/2").kind, "transformer")
        XCTAssertTrue(LMEnsembleCheckpoint.isLMEnsemble(file, at: "model"))
        let loaded = try LMEnsembleCheckpoint.load(from: file, at: "model")
        XCTAssertEqual(loaded.prior, ensemble.prior)
        for (a, b) in zip(ensemble.experts, loaded.experts) {
            for (p, q) in zip(a.parameters, b.parameters) { XCTAssertTrue(p.value.bitwiseEqual(q.value), p.name) }
        }
        let (corpus, data) = try corpus()
        let result = try XCTUnwrap(try Evaluation.evaluateText(checkpoint: path, data: data, batchSize: 3))
        XCTAssertEqual(result.parts.map(\.name), ["train", "val", "test"])
        for part in result.parts {
            let split = TextSplit(rawValue: part.name)!
            let s = LMScores.score(ensemble, corpus, split: split, batchSize: 3).overall
            XCTAssertEqual(part.loss, s.meanLoss)
            XCTAssertEqual(part.accuracy, s.accuracy)
            XCTAssertEqual(part.tokens, s.scored)
        }
        // The run layout: /models/final of a run file names the same ensemble.
        XCTAssertEqual(try Evaluation.evaluateText(checkpoint: path + ":/model", data: data, batchSize: 3)?.parts.map(\.loss),
                       result.parts.map(\.loss))
    }

    func testEnsembleOfIdenticalExpertsEvaluatesAsOneExpert() throws {
        let (_, data) = try corpus()
        let single = directory + "/single.h5"
        try H5File.createAtomically(single) { try Checkpoint.writeModel(self.expert(seed: 4), normalization: nil, to: $0, at: "model") }
        let path = try store(TransformerEnsemble(experts: (0..<3).map { _ in expert(seed: 4) }, prior: [3, 1, 1]))
        let one = try XCTUnwrap(try Evaluation.evaluateText(checkpoint: single, data: data, batchSize: 4))
        let many = try XCTUnwrap(try Evaluation.evaluateText(checkpoint: path, data: data, batchSize: 4))
        for (a, b) in zip(one.parts, many.parts) {
            XCTAssertEqual(a.name, b.name)
            XCTAssertEqual(a.tokens, b.tokens)
            XCTAssertEqual(a.loss, b.loss, accuracy: 1e-6 * a.loss)
            XCTAssertEqual(a.bitsPerByte, b.bitsPerByte, accuracy: 1e-6 * a.bitsPerByte)
            XCTAssertEqual(a.accuracy, b.accuracy)
        }
    }

    /// π_j = the mean uniform-prior posterior over every validation position, recomputed here
    /// position by position from the experts' own window likelihoods.
    func testValidationPriorIsTheMeanPosteriorOverValidationPositions() throws {
        let experts = [expert(seed: 1), expert(seed: 2)]
        let (corpus, _) = try corpus()
        let prior = try XCTUnwrap(LMEnsembleCheckpoint.validationPrior(experts: experts, corpus: corpus, batchSize: 2))
        var mass = [0.0, 0.0], positions = 0
        for windows in corpus.evaluationWindows(.val, context: 12) {
            var buffer = [Int32](repeating: 0, count: 13)
            for i in 0..<windows.count {
                buffer.withUnsafeMutableBufferPointer { windows.fill($0.baseAddress!, windows: i ..< i + 1) }
                let ell = experts.map { model -> [Double] in
                    buffer.withUnsafeBufferPointer {
                        model.forwardLogits($0.baseAddress!, batch: 1, tokens: 12, rowStride: 13, context: ForwardContext(training: false, step: 0, seed: 0))
                    }
                    return (0..<12).map { t in
                        let z = (0..<256).map { Double(model.logits[t * 256 + $0]) }
                        return z[Int(buffer[t + 1])] - TransformerEnsemble.logSumExp(z)
                    }
                }
                let lw = TransformerEnsemble.logPosteriors(logLikelihoods: ell, prior: [0.5, 0.5])
                for t in 0..<12 { for j in 0..<2 { mass[j] += exp(lw[j][t]) } }
                positions += 12
            }
        }
        XCTAssertGreaterThan(positions, 0)
        XCTAssertEqual(prior[0], mass[0] / Double(positions), accuracy: 1e-9)
        XCTAssertEqual(prior[1], mass[1] / Double(positions), accuracy: 1e-9)
        XCTAssertEqual(prior.reduce(0, +), 1, accuracy: 1e-9)
        XCTAssertGreaterThan(abs(prior[0] - 0.5), 1e-3, "two different experts do not explain the text equally well")
    }

    func testNumpyRecomputesTheEnsembleScoresFromTheHDF5Alone() throws {
        let env = ProcessInfo.processInfo.environment
        let python = env["MOE_RUN_PYTHON"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache/moe-run/venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("no Python with numpy and h5py: set MOE_RUN_PYTHON (make test does)")
        }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("python/lm_ensemble_reference.py").path
        let path = try store(TransformerEnsemble(experts: [expert(seed: 7), expert(seed: 8)], prior: [0.9, 0.1]))
        let (corpus, data) = try corpus()
        for split in ["val", "test"] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments = [script, path, "model", data, split]
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let output = out.fileHandleForReading.readDataToEndOfFile()
            let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0, errors)
            let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: output) as? [String: Any])
            let ensemble = try LMEnsembleCheckpoint.load(from: try H5File.open(path), at: "model")
            let s = LMScores.score(ensemble, corpus, split: TextSplit(rawValue: split)!, batchSize: 4).overall
            XCTAssertEqual(json["scored"] as? Int, s.scored)
            XCTAssertEqual(json["correct"] as? Int, s.correct)
            XCTAssertEqual(try XCTUnwrap(json["loss"] as? Double), s.meanLoss, accuracy: 1e-5 * s.meanLoss)
        }
    }

    func testStoredEnsembleSamplesLikeTheDecoderInMemory() throws {
        let ensemble = TransformerEnsemble(experts: [expert(seed: 1), expert(seed: 2)], prior: [0.4, 0.6])
        let path = try store(ensemble)
        var bytes: [UInt8] = []
        let report = try Sampling.run(Sampling.Request(checkpoint: path, prompt: Array("ab".utf8), tokens: 30, temperature: 0.9,
                                                       topK: nil, seed: 5, domain: nil)) { bytes.append($0) }
        let expected = TransformerEnsembleDecoder(ensemble: ensemble).generate(prompt: [97, 98], count: 30,
                                                                                sampler: TokenSampler(temperature: 0.9, seed: 5))
        XCTAssertEqual(bytes.map { Int32($0) }, expected.tokens)
        XCTAssertEqual(report.slides, 3)
        XCTAssertThrowsError(try Sampling.run(Sampling.Request(checkpoint: path, prompt: Array("ab".utf8), tokens: 3, temperature: 0,
                                                               topK: nil, seed: 0, domain: 1)) { _ in }) { error in
            XCTAssertEqual("\(error)", "--domain 1: no expert of the ensemble routes by domain (no `router.type: domain` layer)")
        }
    }

    func testBrokenEnsembleCheckpointsAreOneLineErrors() throws {
        let ensemble = TransformerEnsemble(experts: [expert(seed: 1), expert(seed: 2)])
        let path = try store(ensemble)
        let file = try H5File.open(path)
        XCTAssertTrue(LMEnsembleCheckpoint.isLMEnsemble(file, at: "model"))
        let bad = directory + "/bad.h5"
        try H5File.createAtomically(bad) { f in
            let g = try f.createGroup("model")
            try g.setAttribute("format", Checkpoint.format)
            try g.setAttribute("kind", "ensemble")
            try g.setAttribute("config", ensemble.experts[0].configJSON)
            try g.setAttribute("experts", Int64(2))
            try Checkpoint.writeModel(ensemble.experts[0], normalization: nil, to: g, at: "experts/0")
            try Checkpoint.writeModel(ensemble.experts[1], normalization: nil, to: g, at: "experts/1")
            try g.createDataset("posterior/prior", [0.5, 0.3, 0.2])
        }
        XCTAssertThrowsError(try LMEnsembleCheckpoint.load(from: try H5File.open(bad), at: "model")) { error in
            XCTAssertEqual("\(error)", "\(bad):/model/posterior/prior: has shape [3], expected [2]")
        }
        let (_, data) = try corpus()
        XCTAssertThrowsError(try Evaluation.evaluateText(checkpoint: bad, data: data)) { error in
            XCTAssertEqual((error as? RuntimeError)?.exitCode, 2)
        }
    }
}
