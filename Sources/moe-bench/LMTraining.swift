import Foundation
import MoECore
import MoENN

/// moe-run's side of the LM training-step comparison (`moe-bench --lm-child NAME`): one model per
/// fresh process, so its peak RSS is that of the training alone.
extension Bench {
    /// `TransformerLM` for one of the bench's models, with a tied head and no dropout.
    static func transformerConfig(_ m: LMBenchModel) -> TransformerConfig {
        let moe = m.isMoE ? MoEConfig(experts: m.experts, blocks: Array(0..<m.blocks), router: .topk, k: m.k, expertFFN: m.expertFFN) : nil
        return TransformerConfig(vocab: m.vocab, context: m.context, hidden: m.hidden, heads: m.heads, blocks: m.blocks,
                                 ffn: m.ffn, activation: .gelu, dropout: 0, tieEmbeddings: true, moe: moe)
    }

    /// The `moe-bench --lm-child NAME` process of `lmComparison` (nil when it fails).
    static func lmChild(_ model: LMBenchModel, secondsPerTrial: Double, threads: Int) -> [String: Any]? {
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        return childJSON(me, ["--lm-child", model.name, "--lm-seconds", String(secondsPerTrial)],
                         environment: ["OPENBLAS_NUM_THREADS": String(threads)])
    }

    /// One training step as the project's training loop takes it (`Trainer<TransformerLM>`, the
    /// local step strategy): zero gradients, forward with the next-token loss, backward (with the
    /// MoE layers' aux and z losses), clip the global gradient norm at 1, AdamW update.
    final class LMStep {
        let trainer: Trainer<TransformerLM>
        let tokens: [Int32]
        let spec: LMBenchModel
        private(set) var lastLoss = Double.nan
        var model: TransformerLM { trainer.model }

        init(_ spec: LMBenchModel) {
            self.spec = spec
            let config = OptimizerConfig(kind: .adamw, lr: 1e-3, weightDecay: 0.1, beta1: 0.9, beta2: 0.99, gradClip: 1.0)
            trainer = Trainer(model: TransformerLM(config: Bench.transformerConfig(spec), seed: 0), config: config,
                              totalSteps: 1_000_000, seed: 0)
            var rng = RNG(seed: 0, purpose: "bench/lm-tokens")
            tokens = (0..<(spec.batch * (spec.context + 1))).map { _ in Int32(rng.int(below: spec.vocab)) }
        }

        private func withBatch(_ body: (TokenWindows) -> Void) {
            tokens.withUnsafeBufferPointer { body(TokenWindows(tokens: $0.baseAddress!, batch: spec.batch, length: spec.context + 1)) }
        }

        /// One step through `Trainer.trainStep`.
        func run() { withBatch { lastLoss = trainer.trainStep(on: $0).loss } }

        /// The same step spelled out, adding each part's seconds to `parts`.
        func runProfiled(_ parts: inout [String: Double]) {
            var clock = Bench.profileClock()
            func mark(_ name: String) {
                let t = Bench.profileClock()
                parts[name, default: 0] += t - clock
                clock = t
            }
            withBatch { batch in
                let step = trainer.step
                model.parameters.zeroGrad()
                mark("zero gradients")
                let sums = model.forward(batch, context: ForwardContext(training: true, step: step, seed: trainer.seed))
                lastLoss = sums.lossSum / Double(sums.scored)
                mark("forward")
                model.backward(lossScale: 1)
                mark("backward")
                model.parameters.clipGradientNorm(1.0)
                mark("clip")
                trainer.optimizer.step(lr: trainer.schedule.lr(at: step))
                mark("AdamW")
            }
        }
    }

    /// Best step time (3 trials of ≥ `secondsPerTrial` s after 2 warm-up steps; also the best CPU
    /// time of the process per step, which load inflates far less than wall time when it runs one
    /// thread), then the step's parts (each its fastest of 10 more steps), the components alone,
    /// and this process's peak RSS: the JSON object `lmComparison` reads.
    static func lmChildMeasurement(_ spec: LMBenchModel, secondsPerTrial: Double) -> [String: Any] {
        let step = LMStep(spec)
        precondition(step.model.parameters.reduce(0) { $0 + $1.value.count } == spec.totalParameters,
                     "the bench's parameter count of \(spec.title) disagrees with TransformerLM's")
        for _ in 0..<2 { step.run() }
        var best = Double.infinity, bestCPU = Double.infinity
        for _ in 0..<3 {
            var reps = 0
            let start = now(), startCPU = processCPUTime()
            repeat {
                step.run()
                reps += 1
            } while now() - start < secondsPerTrial
            best = min(best, (now() - start) / Double(reps))
            bestCPU = min(bestCPU, (processCPUTime() - startCPU) / Double(reps))
        }
        let rate = 1 / best
        // Each part's fastest of 10 profiled steps (the machine is shared: minima are the stable figures).
        var parts: [String: Double] = [:], moePhases: [String: Double] = [:]
        for _ in 0..<10 {
            var these: [String: Double] = [:], phases: [String: Double] = [:]
            for layer in step.model.moeLayers { layer.profile = MoEProfile() }
            step.runProfiled(&these)
            for layer in step.model.moeLayers {
                for (phase, s) in layer.profile?.seconds ?? [:] { phases[phase.rawValue, default: 0] += s }
                layer.profile = nil
            }
            parts.merge(these, uniquingKeysWith: min)
            moePhases.merge(phases, uniquingKeysWith: min)
        }
        let components = componentSeconds(spec, steps: 10, step.model)
        return ["config": spec.name, "ms": 1000 / rate, "cpu_ms": 1000 * bestCPU, "tokens_per_second": rate * Double(spec.tokensPerStep),
                "max_rss_kb": peakRSSKB(), "threads": BLASInfo.threads, "loss": step.lastLoss, "parts": parts, "moe_phases": moePhases,
                "components": components]
    }

    /// This process's peak resident set in KB: `VmHWM` of /proc/self/status, which belongs to the
    /// image exec'd (ru_maxrss would also count the parent's resident set at the fork).
    static func peakRSSKB() -> Double {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
        return line.flatMap { Double($0.split(separator: " ").dropFirst().first ?? "") } ?? .nan
    }

    /// The profile's clock: the process's CPU time when OpenBLAS runs one thread (what load
    /// inflates least), else wall time (CPU time would count the BLAS threads' spinning).
    static func profileClock() -> Double { BLASInfo.threads == 1 ? processCPUTime() : now() }

    /// CPU seconds this process has used (all its threads).
    static func processCPUTime() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Seconds per step (blocks × the fastest of `steps` passes) of the forward and the backward of
    /// block 0's attention and of its FFN or MoE layer, each alone on the step's shape (unit-normal
    /// input, as after a LayerNorm): the step's breakdown. The gradients they leave are cleared.
    static func componentSeconds(_ spec: LMBenchModel, steps: Int, _ model: TransformerLM) -> [String: Double] {
        let n = spec.batch * spec.context, h = spec.hidden
        var rng = RNG(seed: 0, purpose: "bench/lm-components")
        let x = Tensor(shape: [n, h]), y = Tensor(shape: [n, h]), dy = Tensor(shape: [n, h]), dx = Tensor(shape: [n, h])
        rng.fillNormal(x)
        rng.fillNormal(dy)
        let attention = model.blocks[0].attention, feedForward = model.blocks[0].feedForward
        let context = ForwardContext(training: true, step: 0, seed: 0)
        var seconds: [String: Double] = [:]
        func time(_ name: String, _ body: () -> Void) {
            let t = profileClock()
            body()
            seconds[name] = min(seconds[name] ?? .infinity, Double(spec.blocks) * (profileClock() - t))
        }
        for _ in 0..<steps {
            time("attention forward") { attention.forward(x.data, batch: spec.batch, tokens: spec.context, into: y.data) }
            time("attention backward") { attention.backward(dy.data, dx: dx.data) }
            time("ffn forward") { feedForward.forward(x.data, rows: n, into: y.data, context: context) }
            time("ffn backward") { feedForward.backward(dy.data, rows: n, dx: dx.data) }
        }
        model.parameters.zeroGrad()
        return seconds
    }
}
