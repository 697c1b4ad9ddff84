import XCTest
import Foundation
import MoECore
@testable import MoEFusion

/// Cross-checks every method against Tests/python/fusion_reference.py, an independent numpy
/// implementation: random small tensors (fixed seed) go to a JSON file, the script computes the
/// fusions, and each tensor must agree to ‖a − b‖ / ‖b‖ ≤ 1e-5. DARE's random masks are exported
/// from `Fusion.dareMask`, so the rest of DARE is checked independently.
final class NumpyReferenceTests: XCTestCase {
    static let tensors: [(String, [Int])] = [("emb", [6, 4]), ("blocks/0/w", [5, 3]), ("blocks/0/b", [5]), ("head/b", [1]), ("big", [40, 25])]

    func randomModel(_ rng: inout RNG, around base: NamedTensors? = nil, scale: Float = 1, square: Bool = false) -> NamedTensors {
        NamedTensors(Self.tensors.map { name, shape in
            let n = shape.reduce(1, *)
            let values: [Float] = (0..<n).map { j in
                let z = scale * rng.normal()
                return square ? z * z : (base?.values[name]![j] ?? 0) + z
            }
            return (name: name, shape: shape, values: values)
        })
    }

    func python() throws -> String {
        if let p = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"], !p.isEmpty { return p }
        let fallback = NSHomeDirectory() + "/.cache/moe-run/venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: fallback) else {
            throw XCTSkip("no Python with numpy: set MOE_RUN_PYTHON (make test does) or create \(fallback)")
        }
        return fallback
    }

    func testAgainstNumpy() throws {
        let python = try python()
        var rng = RNG(seed: 2024, purpose: "fusion-numpy-reference")
        let base = randomModel(&rng)
        let models = (0..<3).map { _ in randomModel(&rng, around: base, scale: 0.1) }
        var fishers = (0..<3).map { _ in randomModel(&rng, square: true) }
        for i in fishers.indices { fishers[i].values["head/b"] = [0] }  // no Fisher mass: the plain average
        let w: [Double] = [1, 0.5, 2]
        func masks(_ density: Double, _ seed: UInt64) -> [[String: [Int]]] {
            (0..<models.count).map { i in
                Dictionary(uniqueKeysWithValues: Self.tensors.map { name, shape in
                    (name, Fusion.dareMask(seed: seed, model: i, tensor: name, count: shape.reduce(1, *), density: density).map { $0 ? 1 : 0 })
                })
            }
        }
        let losses = [2.1, 1.7, 2.6]
        let swift: [(String, [String: Any], [String: [Float]])] = [
            ("average", ["method": "average", "weights": w], try Fusion.average(models, weights: w).values),
            ("average_uniform", ["method": "average"], try Fusion.average(models).values),
            ("val_loss", ["method": "val_loss", "losses": losses, "temperature": 0.5],
             ["weights": try FusionWeights.valLoss(losses, temperature: 0.5).map(Float.init)]),
            ("task_arithmetic", ["method": "task_arithmetic", "weights": w, "lambda": 0.7, "normalize": false],
             try Fusion.taskArithmetic(base: base, models: models, weights: w, lambda: 0.7).model.values),
            ("task_arithmetic_normalized", ["method": "task_arithmetic", "weights": w, "lambda": 1.3, "normalize": true],
             try Fusion.taskArithmetic(base: base, models: models, weights: w, lambda: 1.3, normalize: true).model.values),
            ("ties", ["method": "ties", "weights": w, "density": 0.4, "lambda": 1.2, "normalize": true],
             try Fusion.ties(base: base, models: models, weights: w, density: 0.4, lambda: 1.2).model.values),
            ("ties_density_1", ["method": "ties", "density": 1.0, "lambda": 1.0, "normalize": true],
             try Fusion.ties(base: base, models: models, density: 1).model.values),
            ("ties_sum", ["method": "ties", "weights": w, "density": 0.7, "lambda": 0.5, "normalize": false],
             try Fusion.ties(base: base, models: models, weights: w, density: 0.7, lambda: 0.5, normalize: false).model.values),
            ("dare_linear", ["method": "dare_linear", "weights": w, "density": 0.6, "lambda": 0.9, "normalize": false,
                             "rescale": true, "masks": masks(0.6, 11)],
             try Fusion.dare(base: base, models: models, weights: w, density: 0.6, lambda: 0.9, seed: 11).model.values),
            ("dare_ties", ["method": "dare_ties", "weights": w, "density": 0.3, "lambda": 1.0, "normalize": true,
                           "rescale": true, "masks": masks(0.3, 12)],
             try Fusion.dareTies(base: base, models: models, weights: w, density: 0.3, seed: 12).model.values),
            ("slerp", ["method": "slerp", "a": ["models", 0], "b": ["models", 1], "t": 0.3, "threshold": 1 - 1e-6, "epsilon": 1e-8],
             try Fusion.slerp(models[0], models[1], t: 0.3).values),
            ("slerp_far", ["method": "slerp", "a": ["models", 2], "b": ["fishers", 0], "t": 0.8, "threshold": 1 - 1e-6, "epsilon": 1e-8],
             try Fusion.slerp(models[2], fishers[0], t: 0.8).values),
            ("fisher", ["method": "fisher", "weights": w, "epsilon": 1e-8],
             try Fusion.fisher(models, fishers: fishers, weights: w).values),
        ]
        func values(_ m: NamedTensors) -> [String: [Float]] { m.values }
        let input: [String: Any] = [
            "tensors": Self.tensors.map { ["name": $0.0, "shape": $0.1] },
            "base": values(base).mapValues { $0.map(Double.init) },
            "models": models.map { values($0).mapValues { $0.map(Double.init) } },
            "fishers": fishers.map { values($0).mapValues { $0.map(Double.init) } },
            "cases": swift.map { id, c, _ in c.merging(["id": id]) { a, _ in a } },
        ]
        let results = try runReference(python: python, input: input)
        for (id, _, got) in swift {
            guard let expected = results[id] else { XCTFail("no numpy result for \(id)"); continue }
            for (name, g) in got {
                guard let e = expected[name] else { XCTFail("\(id): numpy has no \(name)"); continue }
                XCTAssertEqual(g.count, e.count, "\(id) \(name)")
                var diff = 0.0, norm = 0.0
                for (a, b) in zip(g, e) { diff += (Double(a) - b) * (Double(a) - b); norm += b * b }
                let relative = diff.squareRoot() / max(norm.squareRoot(), 1e-12)
                XCTAssertLessThanOrEqual(relative, 1e-5, "\(id) \(name): relative error \(relative)")
            }
        }
    }

    /// Writes `input` as JSON, runs the script, returns `results[case][tensor]`.
    func runReference(python: String, input: [String: Any]) throws -> [String: [String: [Double]]] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-fusion-ref-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let inURL = dir.appendingPathComponent("in.json"), outURL = dir.appendingPathComponent("out.json")
        try JSONSerialization.data(withJSONObject: input).write(to: inURL)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("python/fusion_reference.py")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script.path, inURL.path, outURL.path]
        let stderr = Pipe()
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let errorText = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            XCTFail("fusion_reference.py exited with \(process.terminationStatus):\n\(errorText)")
            throw CocoaError(.executableLoad)
        }
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: outURL)) as? [String: Any]
        let results = object?["results"] as? [String: [String: [Double]]]
        return try XCTUnwrap(results, "fusion_reference.py wrote no results")
    }
}
