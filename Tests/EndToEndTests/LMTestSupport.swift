import Foundation
import MoEHDF5
import XCTest

extension CLI {
    /// A fresh workspace for a tiny transformer LM run: a folder corpus of two domains of
    /// different text (`corpus/prose.txt`, `corpus/code.txt`, ~2 KB each) and `spec.yaml`
    /// reading it (context 16, hidden 32, 2 heads, 2 blocks, batch 8, results in `out/`). `moe`:
    /// block 1's FFN is 4 experts, top-2, dropless; `dropout` 0 leaves the key out (the default).
    static func lmWorkspace(steps: Int, moe: Bool = false, dropout: Double = 0, logEvery: Int = 10,
                            evalEvery: Int = 100, checkpointEvery: Int = 50) throws -> String {
        let yaml = """
            name: tinylm
            seed: 1
            data: {source: text, path: corpus, split: {train: 0.8, val: 0.1, test: 0.1}}
            model: {kind: transformer, context: 16, hidden: 32, heads: 2, blocks: 2, ffn: \(moe ? 32 : 64)\(dropout > 0 ? ", dropout: \(dropout)" : "")\(moe ? ", moe_blocks: [1]" : "")}
            \(moe ? "experts: 4\nsplit: {strategy: replicate}\nrouter: {type: topk, k: 2, capacity_factor: null}" : "")
            train: {steps: \(steps), batch_size: 8, lr: 0.003, betas: [0.9, 0.99], log_every: \(logEvery), eval_every: \(evalEvery), checkpoint_every: \(checkpointEvery)}
            eval: {splits: [val, test], batch_size: 7}
            output: {dir: out}
            """
        let dir = try workspace(yaml)
        try FileManager.default.createDirectory(atPath: dir + "/corpus", withIntermediateDirectories: true)
        try String(repeating: "In the beginning God created the heaven and the earth. ", count: 40)
            .write(toFile: dir + "/corpus/prose.txt", atomically: true, encoding: .utf8)
        try String(repeating: "def add(a, b):\n    return a + b\n\n", count: 70)
            .write(toFile: dir + "/corpus/code.txt", atomically: true, encoding: .utf8)
        return dir
    }

    /// Replaces `text` by `replacement` in `dir/spec.yaml` (to add keys to `lmWorkspace`'s spec).
    static func editSpec(in dir: String, replacing text: String, with replacement: String) throws {
        let spec = try String(contentsOfFile: dir + "/spec.yaml", encoding: .utf8)
        XCTAssertTrue(spec.contains(text), "spec.yaml has no \(text)")
        try spec.replacingOccurrences(of: text, with: replacement).write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
    }

    /// Every dataset below `group` of `file` as 64-bit patterns (float64 series bit for bit,
    /// int64 steps as they are), by path; `except` names datasets left out (wall-clock series).
    static func seriesBits(_ file: H5File, _ group: String, except: Set<String> = []) throws -> [String: [UInt64]] {
        var out: [String: [UInt64]] = [:]
        func walk(_ path: String) throws {
            for name in try file.children(of: path) where !except.contains(name) {
                let child = path + "/" + name
                switch file.kind(of: child) {
                case .group: try walk(child)
                case .dataset:
                    out[child] = name == "step" ? try file.read(child, as: Int64.self).values.map { UInt64(bitPattern: $0) }
                                                : try file.read(child, as: Double.self).values.map(\.bitPattern)
                default: break
                }
            }
        }
        try walk(group)
        return out
    }
}
