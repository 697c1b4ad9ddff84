import Foundation
import MoECore
import MoENN
import MoEFusion
import MoEHDF5

/// Measurements shared by the benchmark modes. Every rate is the best of `trials` trials, each
/// repeating the operation until `minTime` seconds have passed (the same method as the numpy
/// reference script), so the two sides are measured alike.
enum Bench {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Best rate (operations per second) of `body` over the trials.
    static func bestRate(trials: Int = 5, minTime: Double = 0.2, _ body: () -> Void) -> Double {
        body()  // warm-up
        var best = 0.0
        for _ in 0..<trials {
            var reps = 0
            let start = now()
            var elapsed = 0.0
            repeat {
                body()
                reps += 1
                elapsed = now() - start
            } while elapsed < minTime
            best = max(best, Double(reps) / elapsed)
        }
        return best
    }

    /// GFLOP/s of `C = A·B` for n×n float32 matrices through `BLAS.gemm`.
    static func sgemm(n: Int) -> Double {
        var rng = RNG(seed: 0, purpose: "bench/sgemm")
        let a = Tensor(shape: [n, n]), b = Tensor(shape: [n, n]), c = Tensor(shape: [n, n])
        rng.fillNormal(a)
        rng.fillNormal(b)
        let rate = bestRate { BLAS.matmul(a, b, into: c) }
        return rate * 2 * Double(n * n * n) / 1e9
    }

    /// numpy's rate for one size, measured by the reference script in a child process whose
    /// environment lacks OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (numpy bundles its own, newer
    /// OpenBLAS, which detects this CPU itself) and uses the same thread count as moe-run.
    static func numpyReference(python: String, script: String, n: Int) -> [String: Any] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [script, String(n)]
        var env = ProcessInfo.processInfo.environment
        env["OPENBLAS_CORETYPE"] = nil
        env["OPENBLAS_L2_SIZE"] = nil
        env["OPENBLAS_NUM_THREADS"] = String(BLASInfo.threads)
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        do { try p.run() } catch { return [:] }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }

    /// Wall time of a whole `moe-run` run of a 2-expert `branch` spec (two independent expert
    /// tasks after the data task) with 1 and with 2 worker processes, best of `rounds` each; the
    /// `moe-run` binary next to this one runs it, exactly as a user would.
    static func branchScaling(rounds: Int = 2) -> (one: Double, two: Double)? {
        let spec = """
        name: bench-branch
        seed: 0
        data: {source: synthetic, samples: 16000, features: 16, classes: 4, domains: 2}
        model: {hidden: 128, ffn: 512, blocks: 2}
        experts: 2
        split: {strategy: branch, shard_by: domain}
        parallelism: {mode: branch}
        train: {epochs: 8, batch_size: 128, lr: 0.002}
        output: {dir: out}
        """
        guard let workspace = RunWorkspace(name: "branch", spec: spec) else { return nil }
        func wall(_ workers: Int) -> Double {
            var best = Double.infinity
            for _ in 0..<rounds {
                let start = now()
                if workspace.run(["--workers", String(workers)]) != nil { best = min(best, now() - start) }
            }
            return best
        }
        return (wall(1), wall(2))
    }

    /// Data-parallel training of the bench model (features 64, hidden 256, ffn 1024, 4 blocks,
    /// global batch 256, AdamW) with 2 workers: rank 0's mean per-step compute, communication
    /// and waiting (from the run's `/metrics`, first log row left out as warm-up), and the step
    /// time of one process training the same model on the same batches with all cores.
    struct DataParallelResult {
        var compute: Double, communication: Double, waiting: Double, bytes: Double
        var oneProcessStep: Double
        var step: Double { compute + communication + waiting }
    }

    static func dataParallel() -> DataParallelResult? {
        guard let workspace = RunWorkspace(name: "data", spec: dataParallelSpec) else { return nil }
        func run(_ extra: [String]) -> String? { workspace.run(extra).map { $0 + "/tasks/train.h5" } }
        guard let single = run([]), let grouped = run(["--set", "parallelism.mode=data", "--set", "parallelism.workers=2"]),
              let one = try? H5File.open(single), let two = try? H5File.open(grouped) else { return nil }
        return dataParallelResult(two, oneProcessStep: 256 / meanMetric(one, "samples_per_second"))
    }

    /// Mean of /metrics/NAME of a task file, without the first logged window (warm-up).
    static func meanMetric(_ file: H5File, _ name: String) -> Double {
        let v = ((try? file.read("metrics/" + name, as: Double.self).values) ?? []).dropFirst()
        return v.isEmpty ? .nan : v.reduce(0, +) / Double(v.count)
    }

    static func dataParallelResult(_ file: H5File, oneProcessStep: Double) -> DataParallelResult {
        DataParallelResult(compute: meanMetric(file, "compute_seconds"), communication: meanMetric(file, "communication_seconds"),
                           waiting: meanMetric(file, "wait_seconds"), bytes: meanMetric(file, "bytes_sent"), oneProcessStep: oneProcessStep)
    }

    /// The training-step model (residual MLP, 2.12M parameters), global batch 256, 40 steps.
    static let dataParallelSpec = """
        name: bench-data
        seed: 0
        data: {source: synthetic, samples: 12800, features: 64, classes: 10, domains: 4, split: {train: 0.8, val: 0.1, test: 0.1}}
        model: {hidden: 256, ffn: 1024, blocks: 4}
        train: {epochs: 2, batch_size: 256, lr: 0.001, log_every: 8}
        output: {dir: out}
        """

    /// Fusing 4 models of 2M parameters (two [1000, 1000] tensors) with TIES, DARE-TIES, average
    /// and slerp: seconds each.
    static func fusion() -> [(String, Double)] {
        var rng = RNG(seed: 1, purpose: "fusion-bench")
        func model() -> NamedTensors {
            NamedTensors(["blocks/0/w1", "blocks/0/w2"].map { name in
                (name: name, shape: [1000, 1000], values: (0..<1_000_000).map { _ in rng.uniform(-1, 1) })
            })
        }
        let base = model()
        let models = (0..<4).map { _ in model() }
        func time(_ body: () throws -> Void) -> Double {
            let start = now()
            _ = try? body()
            return now() - start
        }
        return [
            ("ties (density 0.2)", time { _ = try Fusion.ties(base: base, models: models, density: 0.2, lambda: 1) }),
            ("dare_ties (density 0.2)", time { _ = try Fusion.dareTies(base: base, models: models, density: 0.2, seed: 3) }),
            ("average", time { _ = try Fusion.average(models) }),
            ("slerp (2 models)", time { _ = try Fusion.slerp(models[0], models[1], t: 0.5) }),
        ]
    }

    /// The `moe-run` built next to this `moe-bench`.
    /// The `moe-run` the benches time: `MOE_BENCH_MOE_RUN` (the Makefile passes the static build
    /// users run, `.build/static/release/moe-run`), else the one next to this binary.
    static var moeRunBinary: String {
        if let path = ProcessInfo.processInfo.environment["MOE_BENCH_MOE_RUN"], !path.isEmpty {
            return URL(fileURLWithPath: path).standardizedFileURL.path
        }
        return URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("moe-run").path
    }

    /// A temporary directory holding `spec.yaml`, run by the `moe-run` binary next to this one,
    /// exactly as a user would; removed when the workspace is released.
    final class RunWorkspace {
        let binary: String, directory: String

        init?(name: String, spec: String) {
            binary = Bench.moeRunBinary
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("moe-bench-\(name)-\(getpid())").path
            guard FileManager.default.isExecutableFile(atPath: binary),
                  (try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)) != nil,
                  (try? spec.write(toFile: directory + "/spec.yaml", atomically: true, encoding: .utf8)) != nil else { return nil }
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        /// `moe-run spec.yaml --quiet --force EXTRA…` (the scheduler divides the cores among its
        /// workers itself: no OPENBLAS_NUM_THREADS); the run directory, or nil if it failed.
        /// With `launcher` (e.g. `mpirun -np 2 …`), that command runs moe-run; `environment` is
        /// added to this process's.
        func run(_ extra: [String], launcher: [String] = [], environment: [String: String] = [:]) -> String? {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: launcher.first ?? binary)
            p.arguments = Array(launcher.dropFirst()) + (launcher.isEmpty ? [] : [binary]) + ["spec.yaml", "--quiet", "--force"] + extra
            p.currentDirectoryURL = URL(fileURLWithPath: directory)
            var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") }
            env["OPENBLAS_NUM_THREADS"] = nil
            p.environment = env.merging(environment) { $1 }
            let out = Pipe()
            p.standardOutput = out
            guard (try? p.run()) != nil else { return nil }
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            guard p.terminationStatus == 0, let last = text.split(separator: "\n").last else { return nil }
            return directory + "/" + last
        }
    }

    struct MoEResult {
        var milliseconds: Double
        var gflops: Double
        /// Share of the time per phase, from 5 profiled forward+backward passes.
        var phases: [(String, Double)]
    }

    /// Forward + backward of one MoE layer: T tokens, hidden d, ffn F, E experts, top-k
    /// (GELU experts, renormalised gates, dropless, aux and z losses on).
    /// Matrix FLOPs: 2·(T·k)·2·d·F forward, twice that backward, plus the router's 3·2·T·d·E.
    static func moeLayer(tokens t: Int = 4096, hidden d: Int = 256, ffn f: Int = 1024, experts e: Int = 8, k: Int = 2) -> MoEResult {
        let config = MoEConfig(experts: e, blocks: [0], router: .topk, k: k)
        let layer = MoELayer("blocks/0/moe", index: 0, hidden: d, ffn: f, activation: .gelu, config: config, moeLayers: 1)
        layer.initialize(seed: 0)
        var rng = RNG(seed: 0, purpose: "bench/moe")
        let x = Tensor(shape: [t, d]), y = Tensor(shape: [t, d]), dy = Tensor(shape: [t, d]), dx = Tensor(shape: [t, d])
        rng.fillNormal(x)
        rng.fillNormal(dy)
        let ctx = ForwardContext(training: true, step: 0, seed: 0)
        let rate = bestRate(trials: 3, minTime: 0.5) {
            layer.forward(x.data, rows: t, into: y.data, context: ctx)
            layer.backward(dy.data, rows: t, dx: dx.data)
        }
        let flops = 3.0 * 2 * Double(t * k) * 2 * Double(d * f) + 3 * 2 * Double(t * d * e)
        layer.profile = MoEProfile()
        for _ in 0..<5 {
            layer.forward(x.data, rows: t, into: y.data, context: ctx)
            layer.backward(dy.data, rows: t, dx: dx.data)
        }
        let total = layer.profile!.seconds.values.reduce(0, +)
        let phases = MoEProfile.Phase.allCases.map { ($0.rawValue, (layer.profile!.seconds[$0] ?? 0) / total) }
        return MoEResult(milliseconds: 1000 / rate, gflops: rate * flops / 1e9, phases: phases)
    }

    struct TrainingResult {
        var samplesPerSecond: Double
        var gflops: Double
        var stepMilliseconds: Double
    }

    /// Training-step throughput of the residual MLP (features 64, hidden 256, ffn 1024, 4 blocks,
    /// 10 classes, batch 256, AdamW with clipping): forward, backward, clip and update.
    static func trainingStep(batch: Int = 256) -> TrainingResult {
        let config = ModelConfig(features: 64, classes: 10, hidden: 256, ffn: 1024, blocks: 4)
        let model = ResidualMLP(config: config, seed: 0)
        let trainer = Trainer(model: model, config: OptimizerConfig(lr: 1e-3), totalSteps: 1_000_000, seed: 0)
        var rng = RNG(seed: 0, purpose: "bench/data")
        let x = Tensor(shape: [batch, 64])
        rng.fillNormal(x)
        let labels = (0..<batch).map { _ in rng.int(below: 10) }
        let rate = labels.withUnsafeBufferPointer { lb in
            bestRate(minTime: 0.5) { trainer.trainStep(x.data, labels: lb.baseAddress!, rows: batch) }
        }
        // Matrix FLOPs per step: forward 2·B·Σ(in·out) over the Linear layers, backward twice that.
        let h = config.hidden, f = config.ffn
        let macs = config.features * h + config.blocks * 2 * h * f + h * config.classes
        let flopsPerStep = 3 * 2 * Double(batch) * Double(macs)
        return TrainingResult(samplesPerSecond: rate * Double(batch), gflops: rate * flopsPerStep / 1e9,
                              stepMilliseconds: 1000 / rate)
    }
}
