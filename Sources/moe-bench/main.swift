import Foundation
import MoECore
import MoENN

// moe-bench: `make bench` runs it. Modes:
//   moe-bench --sgemm-only --json                 sgemm rates as JSON (used to measure OpenBLAS's own kernel choice)
//   moe-bench --training-only                     the training-step measurement alone (for profiling)
//   moe-bench --attention-only [--torch PYTHON] [--rounds N] [--markdown FILE]
//                                                 causal self-attention forward+backward alone (lm-dense's shape);
//                                                 with --markdown, replaces only that section of FILE
//   moe-bench --lm-only [--torch PYTHON] [--rounds N] [--lm-seconds S] [--markdown FILE]
//                                                 the transformer LM training-step comparison alone (moe-run vs PyTorch);
//                                                 with --markdown, replaces only that section of FILE
//   moe-bench --lm-child dense|moe [--lm-seconds S]  one LM's training step in this process, as JSON (lm comparison's child)
//   moe-bench --checkpoints-only [--rounds N] [--markdown FILE]
//                                                 wall time of digits-dense, moe-topk and lm-dense with default checkpoints
//                                                 against none; with --markdown, replaces only the "## Checkpoints" section
//   moe-bench --cache-only [--baseline MOE_RUN_BINARY [--baseline-label TEXT]] [--rounds N] [--markdown FILE]
//                                                 experiments/sweep-fusion.yaml swept with the task cache, with --no-cache and
//                                                 (given) by another moe-run binary, --jobs 1 and 2; with --markdown, replaces
//                                                 only the "## Task cache (sweep-fusion)" section
//   moe-bench --comm-only [--markdown FILE]       all-reduce latency/bandwidth: shm backend, MPI over vader and TCP (2 ranks,
//                                                 mpirun); with --markdown, replaces only the "## Collectives" section of FILE
//                                                 and the data-parallel step's communication share (2 and 4 ranks: shm,
//                                                 MPI vader, MPI TCP; moe-run under mpirun); then as --lm-comm-only
//   moe-bench --lm-comm-only [--markdown FILE]    the communication share of lm-dense's data-parallel step (experiments/
//                                                 lm-data-parallel.yaml, 2 ranks: shm, MPI vader, MPI TCP); with
//                                                 --markdown, replaces only the "## Data-parallel language model" section
//   moe-bench --comm-child                        one rank of that MPI measurement (started by mpirun)
//   moe-bench --scaling [--from docs/benchmarks.md] [--markdown docs/scaling.md]
//                                                 the α–β scaling model (issue 14 item 7) from the figures in --from
//   moe-bench --parallel-only                     the data-parallel step split, fusion and gradient-compression timings alone
//   moe-bench [--python VENV_PYTHON [--rounds N] | --reference numpy.json] [--default-kernel default.json] [--markdown FILE]
//                                                 the full table, with ratios against the reference

BLASEnvironment.prepareProcess()

struct Options {
    var sgemmOnly = false
    var trainingOnly = false
    var moeOnly = false
    var parallelOnly = false
    var attentionOnly = false
    var lmOnly = false
    var checkpointsOnly = false
    var cacheOnly = false
    var baseline: String?
    var baselineLabel: String?
    var commOnly = false
    var lmCommOnly = false
    var commChild = false
    var scaling = false
    var from = "docs/benchmarks.md"
    var lmChild: String?
    var lmSeconds = 1.0
    var json = false
    var reference: String?
    var python: String?
    var torch: String?
    var rounds = 3
    var defaultKernel: String?
    var markdown: String?
}

func parseOptions() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst()
    func value(_ flag: String) -> String {
        guard let v = args.popFirst() else { fail("\(flag) needs a value") }
        return v
    }
    while let a = args.popFirst() {
        switch a {
        case "--sgemm-only": o.sgemmOnly = true
        case "--training-only": o.trainingOnly = true
        case "--moe-only": o.moeOnly = true
        case "--parallel-only": o.parallelOnly = true
        case "--attention-only": o.attentionOnly = true
        case "--lm-only": o.lmOnly = true
        case "--checkpoints-only": o.checkpointsOnly = true
        case "--cache-only": o.cacheOnly = true
        case "--baseline": o.baseline = value(a)
        case "--baseline-label": o.baselineLabel = value(a)
        case "--comm-only": o.commOnly = true
        case "--lm-comm-only": o.lmCommOnly = true
        case "--comm-child": o.commChild = true
        case "--scaling": o.scaling = true
        case "--from": o.from = value(a)
        case "--lm-child": o.lmChild = value(a)
        case "--lm-seconds": o.lmSeconds = Double(value(a)) ?? 1
        case "--json": o.json = true
        case "--reference": o.reference = value(a)
        case "--python": o.python = value(a)
        case "--torch": o.torch = value(a)
        case "--rounds": o.rounds = Int(value(a)) ?? 3
        case "--default-kernel": o.defaultKernel = value(a)
        case "--markdown": o.markdown = value(a)
        default: fail("unknown option '\(a)'")
        }
    }
    return o
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("moe-bench: error: \(message)\n".utf8))
    exit(2)
}

func readJSON(_ path: String) -> [String: Any] {
    guard let data = FileManager.default.contents(atPath: path),
          let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        fail("cannot read JSON from \(path)")
    }
    return obj
}

let sizes = [256, 512, 1024, 2048]
let options = parseOptions()
let core = BLASInfo.coreName.trimmingCharacters(in: .whitespaces)

if options.moeOnly {
    let m = Bench.moeLayer()
    print(String(format: "MoE layer (T 4096, d 256, ffn 1024, E 8, top-2) forward+backward: %.1f ms, %.1f GFLOP/s", m.milliseconds, m.gflops))
    for (name, share) in m.phases { print(String(format: "  %5.1f%%  ", share * 100) + name) }
    exit(0)
}

if let name = options.lmChild {
    guard let model = LMBenchModel.named(name) else { fail("--lm-child takes dense or moe, not '\(name)'") }
    let data = try JSONSerialization.data(withJSONObject: Bench.lmChildMeasurement(model, secondsPerTrial: options.lmSeconds), options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
    exit(0)
}

let torchPython = options.torch.flatMap { FileManager.default.isExecutableFile(atPath: $0) ? $0 : nil }
if options.lmOnly {
    let peak = Bench.sgemm(n: 1024)
    let lines = Bench.lmComparison(torch: torchPython, rounds: options.rounds, secondsPerTrial: options.lmSeconds)
        .lines(sgemmPeak: peak, sgemmSize: 1024)
    print(lines.joined(separator: "\n"))
    if let path = options.markdown {
        let section = (["## Transformer language models", "", "Measured alone (`moe-bench --lm-only`) on \(ISO8601DateFormatter().string(from: Date())).", ""] + lines)
        do { try Bench.replaceSection("## Transformer language models", in: path, with: section.joined(separator: "\n")) } catch { fail("cannot write \(path): \(error)") }
        print("wrote the transformer LM section of \(path)")
    }
    exit(0)
}

if options.checkpointsOnly {
    let lines = Bench.checkpointSection(Bench.checkpointCosts(rounds: options.rounds), rounds: options.rounds)
    print(lines.joined(separator: "\n"))
    if let path = options.markdown {
        do { try Bench.replaceSection(Bench.checkpointHeading, in: path, with: lines.joined(separator: "\n")) } catch { fail("cannot write \(path): \(error)") }
        print("wrote the checkpoints section of \(path)")
    }
    exit(0)
}

if options.cacheOnly {
    let lines = Bench.cacheSection(Bench.cacheTimings(rounds: options.rounds, baseline: options.baseline), rounds: options.rounds,
                                   baseline: options.baseline.map { options.baselineLabel ?? $0 })
    print(lines.joined(separator: "\n"))
    if let path = options.markdown {
        do { try Bench.replaceSection(Bench.cacheHeading, in: path, with: lines.joined(separator: "\n")) } catch { fail("cannot write \(path): \(error)") }
        print("wrote the task cache section of \(path)")
    }
    exit(0)
}

if options.commChild {
    do { try Bench.mpiAllReduceChild() } catch { fail("\(error)") }
    exit(0)
}

if options.scaling {
    guard let figures = try? String(contentsOfFile: options.from, encoding: .utf8) else { fail("cannot read \(options.from): run make bench-comm first") }
    do {
        let text = try Bench.scalingDocument(measurements: Bench.ScalingMeasurements(markdown: figures), source: options.from)
        if let path = options.markdown { try text.write(toFile: path, atomically: true, encoding: .utf8); print("wrote \(path)") } else { print(text) }
    } catch { fail("\(error)") }
    exit(0)
}

if options.commOnly {
    let lines = Bench.allReduceSection() + Bench.stepCommunicationLines(Bench.stepCommunication())
    print(lines.joined(separator: "\n"))
    if let path = options.markdown {
        do { try Bench.replaceSection("## Collectives", in: path, with: lines.joined(separator: "\n") + "\n") } catch { fail("cannot write \(path): \(error)") }
        print("wrote the collectives section of \(path)")
    }
}

if options.commOnly || options.lmCommOnly {
    let lines = Bench.lmStepCommunicationLines(Bench.lmStepCommunication())
    print(lines.joined(separator: "\n"))
    if let path = options.markdown {
        do { try Bench.replaceSection(Bench.lmStepHeading, in: path, with: lines.joined(separator: "\n") + "\n") } catch { fail("cannot write \(path): \(error)") }
        print("wrote the data-parallel language model section of \(path)")
    }
    exit(0)
}

if options.parallelOnly {
    if let d = Bench.dataParallel() {
        print(String(format: "data-parallel step %.2f ms: compute %.2f, communication %.2f, waiting %.2f ms; %.0f KB sent; one process %.2f ms",
                     1e3 * d.step, 1e3 * d.compute, 1e3 * d.communication, 1e3 * d.waiting, d.bytes / 1024, 1e3 * d.oneProcessStep))
    }
    for (name, seconds) in Bench.fusion() { print(String(format: "fusion %@: %.3f s", name as NSString, seconds)) }
    print(compressionLine(Bench.gradientCompression()))
    exit(0)
}

if options.attentionOnly {
    let lines = Bench.attentionComparison(torch: torchPython, rounds: options.rounds, sgemm1024: nil)
    print(lines.joined(separator: "\n"))
    if let path = options.markdown {
        do { try Bench.replaceSection("## Causal self-attention", in: path, with: Bench.attentionSection(lines, rounds: options.rounds)) } catch { fail("cannot write \(path): \(error)") }
        print("wrote the attention section of \(path)")
    }
    exit(0)
}

if options.trainingOnly {
    let t = Bench.trainingStep()
    print(String(format: "training step: %.0f samples/s, %.2f ms/step, %.1f GFLOP/s", t.samplesPerSecond, t.stepMilliseconds, t.gflops))
    exit(0)
}

var sgemm: [Int: Double] = [:]
var numpyRounds: [Int: Double] = [:]
var numpyInfo: [String: Any] = [:]
// Alternate: our sgemm, then numpy's, per size and round; keep each side's best. Interleaving
// makes both sides see the same machine state (the machines are shared and noisy).
for _ in 0..<(options.python == nil ? 1 : max(1, options.rounds)) {
    for n in sizes {
        sgemm[n] = max(sgemm[n] ?? 0, Bench.sgemm(n: n))
        if let python = options.python, !options.sgemmOnly {
            let r = Bench.numpyReference(python: python, script: "Tests/python/bench_numpy.py", n: n)
            numpyInfo = r
            if let rate = (r["sgemm"] as? [String: Double])?[String(n)] { numpyRounds[n] = max(numpyRounds[n] ?? 0, rate) }
        }
    }
}

if options.sgemmOnly {
    let obj: [String: Any] = ["core": core, "sgemm": Dictionary(uniqueKeysWithValues: sizes.map { (String($0), sgemm[$0]!) })]
    let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
    exit(0)
}

let training = Bench.trainingStep()
// MoE layer: moe-run and PyTorch alternate over the rounds, each keeping its best (as for sgemm).
var moe = Bench.moeLayer()
var torchMoE: [String: Any]?
for round in 0..<max(1, options.rounds) {
    if round > 0 {
        let again = Bench.moeLayer()
        if again.milliseconds < moe.milliseconds { moe = again }
    }
    if let python = torchPython, let t = Bench.childJSON(python, ["Tests/python/bench_torch_moe.py", String(BLASInfo.threads)]) {
        if let ms = t["ms"] as? Double, ms < (torchMoE?["ms"] as? Double ?? .infinity) { torchMoE = t }
    }
}
let reference = options.reference.map(readJSON) ?? (numpyInfo.isEmpty ? nil : numpyInfo)
let numpySgemm = options.reference != nil ? reference?["sgemm"] as? [String: Double] ?? [:]
    : Dictionary(uniqueKeysWithValues: numpyRounds.map { (String($0.key), $0.value) })
let defaultKernel = options.defaultKernel.map(readJSON)
let defaultSgemm = defaultKernel?["sgemm"] as? [String: Double] ?? [:]

/// The gradient-compression measurement as one sentence.
func compressionLine(_ parts: [String]) -> String {
    "Gradient compression of 1,000,000 floats, encode + decodeAdd with error feedback (best of 5): " + parts.joined(separator: "; ") + "."
}

func fmt(_ x: Double?, _ digits: Int = 1) -> String { x.map { String(format: "%.\(digits)f", $0) } ?? "–" }

var lines: [String] = []
lines.append("| n | moe-run sgemm GFLOP/s (\(core)) | numpy GFLOP/s | ratio moe-run / numpy | OpenBLAS's own kernel choice (\(defaultKernel?["core"] as? String ?? "not measured")) GFLOP/s |")
lines.append("|---:|---:|---:|---:|---:|")
for n in sizes {
    let ours = sgemm[n]!
    let np = numpySgemm[String(n)]
    lines.append("| \(n) | \(fmt(ours)) | \(fmt(np)) | \(np.map { fmt(ours / $0, 2) } ?? "–") | \(fmt(defaultSgemm[String(n)])) |")
}
let trainingLine = "Residual MLP training step (features 64, hidden 256, ffn 1024, 4 blocks, batch 256, AdamW, clip 1.0): "
    + "\(fmt(training.samplesPerSecond, 0)) samples/s, \(fmt(training.stepMilliseconds, 2)) ms/step, "
    + "\(fmt(training.gflops)) GFLOP/s of matrix work (\(fmt(training.gflops / (sgemm[1024]!), 2)) × our sgemm at n = 1024)."

var moeLines = [String(format: "MoE layer forward+backward (T 4096 tokens, d 256, ffn 1024, E 8, top-2, dropless, GELU experts, aux + z loss): **%.1f ms**, %.1f GFLOP/s of matrix work = %.2f × our sgemm at n = 1024 (goal > 0.60).",
                              moe.milliseconds, moe.gflops, moe.gflops / sgemm[1024]!)]
if let t = torchMoE, let ms = t["ms"] as? Double {
    moeLines.append(String(format: "PyTorch %@ eager, same layer and threads, same run: %.1f ms → moe-run is %.2f× its speed (goal ≥ 1).",
                           (t["torch"] as? String ?? "?") as NSString, ms, ms / moe.milliseconds))
} else {
    moeLines.append("PyTorch reference: not measured (no torch venv; `make torch-venv` creates it).")
}
moeLines.append("")
moeLines.append("Where the MoE layer's time goes (5 profiled passes):")
moeLines.append("")
moeLines.append("| phase | share |")
moeLines.append("|---|---:|")
for (name, share) in moe.phases { moeLines.append("| \(name) | " + String(format: "%.1f%%", share * 100) + " |") }

let attentionLines = Bench.attentionComparison(torch: torchPython, rounds: options.rounds, sgemm1024: sgemm[1024])
let lmLines = Bench.lmComparison(torch: torchPython, rounds: options.rounds, secondsPerTrial: options.lmSeconds)
    .lines(sgemmPeak: sgemm[1024]!, sgemmSize: 1024)

let scaling = Bench.branchScaling()
let scalingLine = scaling.map {
    String(format: "Branch run with 2 experts (data task, then the two expert tasks in parallel; `moe-run --workers N`, whole run wall time, best of 2): 1 worker %.2f s, 2 workers %.2f s → speed-up %.2f× (goal ≥ 1.7 on 2 cores).",
           $0.one, $0.two, $0.one / $0.two)
} ?? "Branch scaling: not measured (no moe-run binary next to moe-bench)."

let dataParallel = Bench.dataParallel()
let dataParallelLine = dataParallel.map { d in
    String(format: "Data-parallel training of the training-step model (global batch 256, 2 workers, 1 BLAS thread each), rank 0 per step: %.2f ms = compute %.2f ms + communication %.2f ms + waiting for the peer %.2f ms; %.0f KB sent per step. Communication is **%.1f%%** of the step (goal < 10%%), communication + waiting %.1f%%. One process with both cores: %.2f ms per step → data-parallel speed-up %.2f×.",
           1e3 * d.step, 1e3 * d.compute, 1e3 * d.communication, 1e3 * d.waiting, d.bytes / 1024,
           100 * d.communication / d.step, 100 * (d.communication + d.waiting) / d.step, 1e3 * d.oneProcessStep, d.oneProcessStep / d.step)
} ?? "Data-parallel split: not measured (no moe-run binary next to moe-bench)."
let compression = compressionLine(Bench.gradientCompression())
let collectiveLines = Bench.allReduceSection() + Bench.stepCommunicationLines(Bench.stepCommunication())
let fusionLine = "Fusion of 4 models × 2M parameters: " + Bench.fusion().map { String(format: "%@ %.3f s", $0.0 as NSString, $0.1) }.joined(separator: ", ") + "."

print(lines.joined(separator: "\n"))
print(trainingLine)
print(scalingLine)
print(dataParallelLine)
print(compression)
print(fusionLine)
print(moeLines.joined(separator: "\n"))
print(attentionLines.joined(separator: "\n"))
print(lmLines.joined(separator: "\n"))
let checkpointLines = Bench.checkpointSection(Bench.checkpointCosts(rounds: options.rounds), rounds: options.rounds)
print(checkpointLines.joined(separator: "\n"))

if let path = options.markdown {
    var cpu = "unknown CPU"
    if let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
       let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
       let colon = line.firstIndex(of: ":") {
        cpu = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    let env = ProcessInfo.processInfo.environment
    let date = ISO8601DateFormatter().string(from: Date())
    let md = """
    # Benchmarks

    Written by `make bench` on \(date). Machine: \(cpu), \(BLASEnvironment.cores) cores.
    moe-run: \(BLASInfo.config.trimmingCharacters(in: .whitespaces)), kernel `\(core)`, \
    OPENBLAS_NUM_THREADS=\(env["OPENBLAS_NUM_THREADS"] ?? "unset").
    Reference: numpy \(reference?["numpy"] as? String ?? "not measured") (\(reference?["blas"] as? String ?? "?")), \
    same thread count, measured in the same `make bench` run.
    Method: best of 5 trials, each repeating the product for at least 0.2 s (training: 0.5 s), after a \
    warm-up; moe-run and numpy alternate per size over \(options.rounds) rounds and each keeps its best.
    The last column is OpenBLAS left to detect the CPU itself (no `OPENBLAS_CORETYPE`): what every \
    moe-run process would get without its start-up re-exec.

    \(lines.joined(separator: "\n"))

    \(trainingLine)

    ## Scheduler scaling

    \(scalingLine)

    \(dataParallelLine)

    \(compression)

    \(collectiveLines.joined(separator: "\n"))

    ## Fusion

    \(fusionLine)

    ## Mixture-of-Experts layer

    \(moeLines.joined(separator: "\n"))

    Target (issue 2): moe-run's sgemm within 10% of numpy's (ratio ≥ 0.90) at n ≥ 512.

    \(Bench.attentionSection(attentionLines, rounds: options.rounds))
    ## Transformer language models

    \(lmLines.joined(separator: "\n"))

    """
    // Sections this run does not measure (their own targets: bench-comm, bench-cache) are kept as they were.
    let kept = [Bench.lmStepHeading, Bench.cacheHeading].compactMap { Bench.section($0, in: path) }
    do {
        try md.write(toFile: path, atomically: true, encoding: .utf8)
        try Bench.replaceSection(Bench.checkpointHeading, in: path, with: checkpointLines.joined(separator: "\n"))
        for section in kept { try Bench.replaceSection(section.heading, in: path, with: section.text) }
    } catch { fail("cannot write \(path): \(error)") }
    print("wrote \(path)")
}
