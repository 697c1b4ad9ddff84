import Foundation

/// SplitMix64: a seeded generator whose stream is fixed forever (a fuzz case is its seed).
struct FuzzRNG {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<n (n > 0).
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func pick<T>(_ items: [T]) -> T { items[int(items.count)] }
    mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < p }
}

/// Random damage to a YAML spec, on its lines (so every kind of document can come out, not only
/// well-formed ones): values of the wrong type, deleted and duplicated keys, huge, negative and
/// NaN numbers, unicode, deep nesting, anchors and aliases, broken indentation, truncation, a
/// random sweep section, and raw bytes (the result is bytes: it need not be UTF-8).
enum SpecMutator {
    /// Values of every type and the edge cases of each.
    static let values = [
        "true", "false", "null", "~", "", "\"text\"", "'quoted'", "[1, 2]", "[]", "{a: 1}", "{}", "3.5", "-7", "0", "1",
        ".nan", ".NaN", ".inf", "-.inf", "1e308", "1e400", "-1e400", "4.9e-324", "99999999999999999999999",
        "-9223372036854775808", "9223372036854775807", "9223372036854775808", "-1", "-0", "+5", ".5", "2.", "0x1F",
        "0o17", "1_000", "yes", "off", "!!binary aGVsbG8=", "!!int \"x\"", "!!float abc", "!!str 5", "!!null x",
        "!custom 1", "|\n  block\n  text", ">-\n  folded", "\"ünïcödé ☃ 🙂\"", "\"\\u0000\"", "\"\\x7f\"", "all",
        "topk", "switch", "hash", "expert_choice", "domain", "branch", "replicate", "neurons", "layerwise", "none",
        "data", "expert", "pipeline", "average", "mix", "ensemble", "val_loss", "uniform", "[0.9, 0.99]", "[1e9, -1]",
        "{every: 2}", "{every: 0}", "[0, 0, 0]", "[1, 1]", "{epochs: 1}", "{epochs: -1, lr: .nan}", "*undefined",
        "&a 5", "[&b 1, *b, *b]", "?", ": x", "- 1", "\"unterminated", "[1, 2", "{a: 1", "'", "%YAML 1.2", "---", "...",
        "#comment", "@reserved", "`tick",
    ]

    /// Key paths of the schema (for sweep sections and new keys), some unknown.
    static let keys = [
        "router.k", "router.type", "experts", "model.hidden", "model.ffn", "model.blocks", "train.lr", "train.epochs",
        "train.batch_size", "router.capacity_factor", "fusion.method", "fusion.weights", "split.strategy", "seed",
        "parallelism.workers", "parallelism.mode", "data.samples", "fusion.finetune", "router.normalize_topk", "name",
        "sweep", "router", "nope", "train.betas", "model.moe_blocks", "data.source", "data.path",
        "model.kind", "model.context", "model.heads", "train.steps",
    ]

    static let unicode: [String] = [
        "é", "☃", "🙂", "\u{301}", "\u{200B}", "\u{202E}", "\u{FEFF}", "\u{0}", "\u{7}", "\u{1B}", "\u{85}", "\u{2028}",
        "\u{FFFD}", "Ω", "中文", "\u{10FFFF}", "\r", "\t", "\"", "'", "\\", ":", "#", "&", "*", "!", "|", ">", "%", "@",
    ]

    /// Values at the edges of what each key allows, as `--set`/`--unset` arguments (the paths
    /// through the rules between keys and the planner that text damage rarely reaches).
    static let overridePool: [String: [String]] = [
        "experts": ["1", "2", "1024", "1025", "0"],
        "model.blocks": ["1", "1024", "1025"],
        "model.ffn": ["1", "3", "1000000000"],
        "model.moe_blocks": ["all", "{every: 1024}", "[0, 1023]", "[]", "{every: 3}"],
        "parallelism.workers": ["1", "64", "1000", "1024"],
        "parallelism.mode": ["none", "data", "expert", "pipeline", "branch"],
        "parallelism.microbatches": ["1", "100000"],
        "parallelism.compression": ["none", "int8", "topk"],
        "train.batch_size": ["1", "1000000000"],
        "train.epochs": ["0", "1", "1000000000"],
        "router.k": ["1", "2", "1024"],
        "router.type": ["topk", "switch", "hash", "domain", "expert_choice", "noisy_topk"],
        "router.capacity_factor": ["null", "0.01", "1e300"],
        "split.strategy": ["none", "replicate", "neurons", "layerwise", "branch"],
        "split.pretrain_epochs": ["0", "1"],
        "split.shard_by": ["domain", "index", "random"],
        "fusion.method": ["none", "average", "stack", "mix", "ensemble", "slerp", "ties", "greedy_soup", "fisher"],
        "fusion.weights": ["uniform", "val_loss", "optimized", "[1, 0]", "[0, 0]"],
        "fusion.finetune": ["null", "{epochs: 1}"],
        "data.source": ["synthetic", "file", "text"],
        "data.path": ["data/text-domains.h5", "data", "data/nope.h5"],
        "model.kind": ["mlp", "transformer"],
        "model.context": ["0", "1", "100000", "1000000000"],
        "model.heads": ["1", "3", "1000000000"],
        "model.tie_embeddings": ["true", "false"],
        "train.steps": ["null", "0", "1", "1000000000"],
        "data.samples": ["10", "1000000000"],
        "data.domains": ["1", "1000"],
        "train.local": ["true", "false"],
        "sweep": ["null", "{parameters: {seed: [1, 2]}}", "{method: random, trials: 3, parameters: {router.k: [1, 2, 3]}}"],
        "router": ["null"], "fusion": ["null"], "split": ["null"],
    ]

    /// 1–3 overrides: a key of `overridePool` with one of its values, or removed (`~KEY`).
    static func overrides(rng: inout FuzzRNG) -> [String] {
        let keys = overridePool.keys.sorted()
        return (0..<(1 + rng.int(3))).map { _ in
            let key = rng.pick(keys)
            return rng.chance(0.15) ? "~" + key : key + "=" + rng.pick(overridePool[key]!)
        }
    }

    /// `text` with 1–4 random mutations, as bytes.
    static func mutate(_ text: String, rng: inout FuzzRNG) -> Data {
        var lines = text.components(separatedBy: "\n")
        var bytes: [UInt8]?
        for _ in 0..<(1 + rng.int(4)) {
            if lines.isEmpty { lines = [""] }
            let i = rng.int(lines.count)
            switch rng.int(16) {
            case 0, 1:  // a value of another type
                lines[i] = replaceValue(lines[i], with: rng.pick(values))
            case 2:  // a deleted key
                lines.remove(at: i)
            case 3:  // a duplicated key, right after or anywhere
                lines.insert(lines[i], at: rng.chance(0.5) ? i + 1 : rng.int(lines.count + 1))
            case 4:  // huge, negative, NaN numbers in place of a number
                lines[i] = replaceNumber(lines[i], with: rng.pick(["1e308", "-1", "-999999999999", ".nan", "-.inf", "1e400",
                                                                    "99999999999999999999", "0", "-0.0", "2147483648",
                                                                    "9223372036854775807", "1000000000", "65536", "1e-320"]))
            case 5:  // unicode anywhere in a line
                let chars = Array(lines[i])
                let at = chars.isEmpty ? 0 : rng.int(chars.count + 1)
                lines[i] = String(chars[..<at]) + rng.pick(unicode) + String(chars[at...])
            case 6:  // deep nesting, flow or block
                let depth = 1 + rng.int(rng.chance(0.3) ? 120 : 20)
                let nested: String
                switch rng.int(3) {
                case 0: nested = String(repeating: "[", count: depth) + "1" + String(repeating: "]", count: depth)
                case 1: nested = String(repeating: "{a: ", count: depth) + "1" + String(repeating: "}", count: depth)
                default:
                    nested = "\n" + (1...depth).map { String(repeating: " ", count: 2 * $0) + "k\($0):" }.joined(separator: "\n") + " 1"
                }
                lines[i] = replaceValue(lines[i], with: nested)
            case 7:  // anchors and aliases
                let j = rng.int(lines.count)
                lines[i] = replaceValue(lines[i], with: "&x" + " " + value(of: lines[i]))
                lines[j] = replaceValue(lines[j], with: rng.pick(["*x", "*x", "[*x, *x, *x]", "{a: *x}", "*y", "&x *x"]))
            case 8:  // indentation broken
                let lead = lines[i].prefix { $0 == " " }.count
                let body = lines[i].dropFirst(lead)
                lines[i] = String(repeating: " ", count: max(0, lead + rng.pick([-4, -2, -1, 1, 2, 3]))) + body
                if rng.chance(0.2) { lines[i] = "\t" + lines[i] }
            case 9:  // truncated
                let keep = rng.int(lines.count + 1)
                lines = Array(lines.prefix(keep))
                if let last = lines.last, rng.chance(0.5) { lines[lines.count - 1] = String(last.prefix(rng.int(last.count + 1))) }
            case 10:  // two lines swapped
                let j = rng.int(lines.count)
                lines.swapAt(i, j)
            case 11:  // a key renamed by one character
                var chars = Array(lines[i])
                if let colon = chars.firstIndex(of: ":"), colon > 0 {
                    let at = rng.int(colon)
                    chars[at] = rng.pick(Array("abcdefghijklmnopqrstuvwxyz_0.-"))
                    lines[i] = String(chars)
                }
            case 12:  // a sweep section over random keys and values
                var section = ["sweep:"]
                if rng.chance(0.3) { section.append("  method: " + rng.pick(["grid", "random", "bogus"])) }
                if rng.chance(0.3) { section.append("  trials: " + rng.pick(["1", "3", "0", "-1", "100000"])) }
                section.append("  parameters:")
                for _ in 0..<(1 + rng.int(2)) {
                    let values = (0..<(1 + rng.int(3))).map { _ in rng.pick(["1", "2", "4", "8", "0", "topk", "switch", "null", "0.01", "true", "[1]"]) }
                    section.append("    \(rng.pick(keys)): [\(values.joined(separator: ", "))]")
                }
                lines.insert(contentsOf: section, at: rng.chance(0.5) ? lines.count : i)
            case 13:  // a new key with a random value, at the top level or inside a section
                let indent = rng.chance(0.5) ? "" : "  "
                lines.insert(indent + rng.pick(keys).split(separator: ".").last! + ": " + rng.pick(values), at: i)
            case 14:  // a whole section of another type
                lines[i] = replaceValue(lines[i], with: rng.pick(["null", "[]", "7", "\"x\"", "{}", "{k: 1}"]))
            default:  // raw bytes, anywhere in the file
                var raw = bytes ?? Array(lines.joined(separator: "\n").utf8)
                for _ in 0..<(1 + rng.int(4)) {
                    let byte = rng.chance(0.5) ? UInt8(truncatingIfNeeded: rng.next()) : rng.pick([0x00, 0x80, 0xC3, 0xFF, 0xFE, 0xED, 0x0D, 0x09])
                    raw.insert(byte, at: raw.isEmpty ? 0 : rng.int(raw.count + 1))
                }
                bytes = raw
                lines = [String(decoding: raw, as: UTF8.self)]
            }
        }
        return bytes.map { Data($0) } ?? Data(lines.joined(separator: "\n").utf8)
    }

    /// The value part of `key: value` (after the first `: `), or "".
    static func value(of line: String) -> String {
        guard let range = line.range(of: ": ") else { return "" }
        return String(line[range.upperBound...]).components(separatedBy: " #").first ?? ""
    }

    /// `key: value` with another value; a line without `: ` gets the value appended after a colon.
    static func replaceValue(_ line: String, with value: String) -> String {
        if let range = line.range(of: ": ") { return String(line[..<range.upperBound]) + value }
        if line.hasSuffix(":") { return line + " " + value }
        return line + ": " + value
    }

    /// The first number of the line replaced (the line unchanged when it has none).
    static func replaceNumber(_ line: String, with number: String) -> String {
        guard let range = line.range(of: "[-+]?[0-9]*\\.?[0-9]+([eE][-+]?[0-9]+)?", options: .regularExpression) else { return line }
        return line.replacingCharacters(in: range, with: number)
    }
}
