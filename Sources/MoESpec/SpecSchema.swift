/// The spec schema: every key, its type, range, default and meaning, in the order the resolved
/// YAML and `docs/spec.md` list them. Decoders read ranges and defaults from here.
public enum SpecSchema {
    /// The top-level keys.
    public static let root: [SchemaField] = [
        Root.name, Root.seed, Root.description,
        SchemaField("data", .section(Data.all), "Where the samples come from and how they are split."),
        SchemaField("model", .section(Model.all), "The model: the residual MLP classifier (`kind: mlp`: embed → blocks → norm → head, on feature vectors) or the decoder-only transformer language model (`kind: transformer`: token and position embeddings → pre-norm blocks of causal self-attention and FFN → norm → head, on text; docs/formats.md has both layouts). The defaults of a transformer are nanoGPT's CPU recipe: 4 blocks, 4 heads, hidden 128, context 64, ffn 4·hidden, GELU, no dropout, tied embeddings."),
        Root.experts,
        SchemaField("split", .section(Split.all), "How the model is turned into experts (the four workflows)."),
        SchemaField("router", .section(Router.all), "The MoE router (used when `experts > 1`)."),
        SchemaField("parallelism", .section(Parallelism.all), "How tasks are spread over worker processes."),
        SchemaField("train", .section(Train.all), "Optimisation."),
        SchemaField("fusion", .section(Fusion.all), "How trained experts are combined into one model."),
        SchemaField("eval", .section(Eval.all), "Evaluation of the final model."),
        SchemaField("output", .section(Output.all), "Where and how results are written."),
        SchemaField("sweep", .section(Sweep.all), nullable: true, defaultText: "absent",
                    "Runs the experiment over a grid or a random sample of key values (optional section)."),
    ]

    /// The field at a dotted path (`router.k`), or nil.
    public static func field(at keyPath: String) -> SchemaField? {
        var fields = root
        var found: SchemaField?
        for segment in keyPath.split(separator: ".", omittingEmptySubsequences: false) {
            guard let field = fields.first(where: { $0.key == segment }) else { return nil }
            found = field
            fields = field.children
        }
        return found
    }

    enum Root {
        static let name = SchemaField("name", .string, defaultText: "required",
            "Names the results folder (`output.dir/<name>/`): `[A-Za-z0-9][A-Za-z0-9_.-]*`.")
        static let seed = SchemaField("seed", .integer(min: 0, max: nil), default: .int(0),
            "Seed of every random stream (initialisation, batch order, dropout, router noise, and the data's draws unless `data.seed` is given).")
        static let description = SchemaField("description", .string, nullable: true, default: .null,
            "Free text stored with the run.")
        static let experts = SchemaField("experts", .integer(min: 1, max: 1024), default: .int(1),
            "Number of experts; 1 is a dense model. Above 1 needs a `split.strategy`. (The bound keeps plans, which have a task per expert of `branch`, finite.)")
    }

    enum Data {
        static let source = SchemaField("source", SchemaField.choice(DataSpec.Kind.self), default: .string("synthetic"),
            "`synthetic`: Gaussian domain clusters, each labelled by its own random teacher; `file`: an HDF5 or CSV file (both feature vectors, for `model.kind: mlp`); `text`: a corpus of real text read as byte tokens (vocabulary 256), for `model.kind: transformer`.")
        static let path = SchemaField("path", .string, defaultText: "required with `file` and `text`",
            "The data file (`file`), or the text corpus (`text`: a folder with one `.txt` file or sub-folder per domain, or an HDF5 corpus such as `experiments/data/text-domains.h5`; see docs/formats.md), relative to the spec file's directory; it must exist. A corpus must have a domain with text, and every domain's train, val and test stream at least `model.context + 1` tokens (checked before the run).")
        static let format = SchemaField("format", SchemaField.choice(DataSpec.FileFormat.self), default: .string("auto"),
            "File format (file only); `auto` goes by the extension: `.h5`, `.hdf5` → hdf5, `.csv` → csv.")
        static let features = SchemaField("features", .integer(min: 1, max: nil), default: .int(16),
            "Input features (synthetic only: with `file` they come from the file and the key is a warning).")
        static let classes = SchemaField("classes", .integer(min: 2, max: nil), default: .int(4), "Classes (synthetic only).")
        static let domains = SchemaField("domains", .integer(min: 1, max: nil), default: .int(4), "Domains (synthetic only).")
        static let samples = SchemaField("samples", .integer(min: 10, max: nil), default: .int(4000), "Samples in total (synthetic only).")
        static let separation = SchemaField("separation", .number(.positive), default: .number(6.0),
            "Distance between domain centres, in standard deviations of a cluster (synthetic only; the generator default).")
        static let labelNoise = SchemaField("label_noise", .number(.unitHalfOpen), default: .number(0.0),
            "Fraction of labels replaced by random ones (synthetic only).")
        static let split = SchemaField("split", .section(Fractions.all),
            "Fractions for train, val and test; each in (0, 1), summing to 1. Feature data: of the samples (seeded shuffle). Text: of each domain's token stream, cut in contiguous blocks in that order (no window crosses a split or a domain).")
        static let standardize = SchemaField("standardize", .boolean, default: .bool(true),
            "Standardise features with the training split's mean and standard deviation (feature data only).")
        static let seed = SchemaField("seed", .integer(min: 0, max: nil), nullable: true, default: .null, defaultText: "`seed`",
            "Seed of the data's random draws only: the shuffle before the train/val/test split of feature data, the synthetic generator, and `split.shard_by: random`. The top-level `seed` keeps initialisation, batch order, dropout and router noise, so a study can vary one with the other fixed. Null = `seed` (run ids and results of specs without it stay). Every split's source rows are stored as `/data/<split>/index` in `tasks/data.h5` (docs/formats.md). A text corpus is split without randomness, so with `source: text` it has no effect.")
        static let all = [source, path, format, features, classes, domains, samples, separation, labelNoise, split, standardize, seed]
        /// Keys that only apply to `source: synthetic` / `source: file`.
        static let syntheticOnly = [features, classes, domains, samples, separation, labelNoise]
        static let fileOnly = [path, format]
        /// Keys of feature data only (`synthetic`, `file`): with `text` they are errors.
        static let featureOnly = syntheticOnly + [format, standardize]

        enum Fractions {
            static let train = SchemaField("train", .number(.unitOpen), default: .number(0.8), "Training fraction.")
            static let val = SchemaField("val", .number(.unitOpen), default: .number(0.1), "Validation fraction.")
            static let test = SchemaField("test", .number(.unitOpen), default: .number(0.1), "Test fraction.")
            static let all = [train, val, test]
        }
    }

    enum Model {
        static let kind = SchemaField("kind", SchemaField.choice(ModelSpec.Kind.self), default: .string("mlp"),
            "`mlp`: the residual MLP classifier (feature data); `transformer`: the decoder-only language model (`data.source: text`).")
        static let context = SchemaField("context", .integer(min: 1, max: nil), default: .int(64),
            "Tokens the model reads per window (transformer only): training windows are `context + 1` tokens at random offsets, evaluation windows tile each stream (docs/formats.md).")
        static let hidden = SchemaField("hidden", .integer(min: 1, max: nil), default: .int(128), "Width of the residual stream.")
        static let heads = SchemaField("heads", .integer(min: 1, max: nil), default: .int(4),
            "Attention heads (transformer only); each has `hidden / heads` dimensions, so `heads` must divide `hidden`.")
        static let ffn = SchemaField("ffn", .integer(min: 1, max: nil), default: .int(512), "Hidden units of each FFN (and of each expert; with `neurons`, each expert takes `ffn / experts` of them).")
        static let blocks = SchemaField("blocks", .integer(min: 1, max: 1024), default: .int(2),
            defaultText: "`2` (`4` with `kind: transformer`)",
            "Pre-norm residual blocks: FFN blocks of the mlp, attention + FFN blocks of the transformer.")
        static let activation = SchemaField("activation", SchemaField.choice(ModelSpec.Activation.self), default: .string("gelu"),
            "FFN activation.")
        static let dropout = SchemaField("dropout", .number(.unitHalfOpen), default: .number(0.0),
            "Dropout probability while training: after the FFN activation (mlp); on the embedding sum and on each residual branch (transformer, as GPT-2).")
        static let normEps = SchemaField("norm_eps", .number(.positive), default: .number(1e-5), "LayerNorm epsilon.")
        static let tieEmbeddings = SchemaField("tie_embeddings", .boolean, default: .bool(true),
            "The output head is the token embedding, `logits = LN(x)·embed/weightᵀ` (transformer only; GPT-2, nanoGPT); false = a separate `head/weight`.")
        static let moeBlocks = SchemaField("moe_blocks",
            .custom("`all`, a non-empty list of distinct block indices (each < `blocks`), or `{every: N}` (1 <= N <= `blocks`)"),
            default: .string("all"), "Blocks that become MoE layers when `experts > 1`; `{every: N}` picks blocks N-1, 2N-1, ...")
        static let sharedExperts = SchemaField("shared_experts", .integer(min: 0, max: 1024), default: .int(0),
            "Always-active shared experts in every MoE layer, added to the routed output with gate 1 (DeepSeekMoE, Dai et al. 2024; Qwen-MoE); `split.strategy: replicate` only. 0 = none.")
        static let sharedFFN = SchemaField("shared_ffn", .integer(min: 1, max: nil), nullable: true, default: .null,
            defaultText: "`null` (= `ffn`, the routed experts' width)",
            "Hidden units of each shared expert (`blocks/<i>/moe/shared/w1 [shared_experts, shared_ffn, hidden]`).")
        static let all = [kind, context, hidden, heads, ffn, blocks, activation, dropout, normEps, tieEmbeddings, moeBlocks,
                          sharedExperts, sharedFFN]
        /// Keys of the transformer only: with `kind: mlp` they are errors.
        static let transformerOnly = [context, heads, tieEmbeddings]
        /// `blocks` of a transformer when not given (nanoGPT's CPU recipe; the mlp's is the schema default).
        static let transformerBlocks = 4
        static let every = SchemaField("every", .integer(min: 1, max: nil), defaultText: "required", "Period N.")
    }

    enum Split {
        static let strategy = SchemaField("strategy", SchemaField.choice(SplitSpec.Strategy.self), default: .string("none"),
            "`replicate`: FFN copies + router; `neurons`: partition a trained FFN (MoEfication); `layerwise`: stages of blocks; `branch`: full copies trained apart, then fused.")
        static let upcycleFrom = SchemaField("upcycle_from", .string, nullable: true, default: .null,
            "Checkpoint whose dense FFNs initialise the experts (replicate only; sparse upcycling); relative to the spec file's directory; it must exist.")
        static let pretrainEpochs = SchemaField("pretrain_epochs", .integer(min: 0, max: nil), default: .int(0),
            "Dense epochs before splitting: with `replicate`, a dense pre-training task whose model is upcycled into the experts; the seed model of `branch`; the dense FFN of `neurons`, which needs at least 1.")
        static let pretrainSteps = SchemaField("pretrain_steps", .integer(min: 0, max: nil), default: .int(0),
            "Dense pre-training length in optimizer steps instead of `pretrain_epochs` (the natural unit of a language model); give at most one of the two. 0, like `pretrain_epochs: 0`, means no pre-training.")
        static let method = SchemaField("method", SchemaField.choice(SplitSpec.NeuronMethod.self), default: .string("cluster"),
            "How `neurons` groups hidden units: `cluster` (balanced k-means on the normalised input-weight vectors), `contiguous` ranges, or `random` (seeded).")
        static let shardBy = SchemaField("shard_by", SchemaField.choice(SplitSpec.ShardBy.self), default: .string("domain"),
            "How `branch` shards the training data between experts: by `domain` id (shard i takes domains d with d mod experts = i), contiguous `index` ranges, a seeded `random` partition, or `none` (every expert trains on the whole training split, e.g. a model soup over `overrides`).")
        static let seedModel = SchemaField("seed_model", SchemaField.choice(SplitSpec.SeedModel.self), default: .string("shared"),
            "Where `branch` experts start: `shared` (one seed model, pre-trained with `pretrain_epochs` or the initialisation from `seed`, copied into every expert) or `independent` (expert i from its own random initialisation, seeded by `seed` and i; no pre-training). Weight averaging needs `shared`: `independent` is the contrast case whose loss barrier fusion reports.")
        static let overrides = SchemaField("overrides",
            .custom("a list of mappings, one per expert, with keys `lr`, `seed`, `epochs`, `steps`, `batch_size`, `weight_decay`"),
            nullable: true, default: .null, "Per-expert training settings (branch only); missing keys keep the `train` value.")
        static let source = SchemaField("source", SchemaField.choice(ModelSource.self), default: .string("final"),
            "Which model of the `pretrain` task is upcycled (`replicate`), moefied (`neurons`) or branched (`branch`): `final`, the model at the end of pre-training, or `best`, its best model by `eval.metric` (`/best` of `tasks/pretrain.h5`).")
        static let all = [strategy, upcycleFrom, pretrainEpochs, pretrainSteps, method, shardBy, seedModel, overrides, source]
        /// Keys of one `overrides` entry (typed and ranged like their `train`/top-level namesakes).
        static let overrideFields = [Train.lr, Root.seed, Train.epochs, Train.steps, Train.batchSize, Train.weightDecay]
    }

    enum Router {
        static let type = SchemaField("type", SchemaField.choice(RouterSpec.Kind.self), default: .string("topk"),
            "`topk` softmax (GShard), `switch` (top-1), `noisy_topk` (Shazeer), `expert_choice`, `hash` (fixed), `domain` (oracle: domain d goes to expert d mod `experts`; the data needs domain ids).")
        static let k = SchemaField("k", .integer(min: 1, max: nil), defaultText: "2 (1 with `switch` and `domain`; at most `experts`)",
            "Experts per token; at most `experts`; `switch` and `domain` require 1.")
        static let capacityFactor = SchemaField("capacity_factor", .number(.positive), nullable: true, default: .null,
            "Expert capacity = max(`min_capacity`, ⌈factor · tokens · k / experts⌉), tokens counted per batch (training and `eval.batch_size` batches); null = dropless (`expert_choice` needs a value).")
        static let minCapacity = SchemaField("min_capacity", .integer(min: 0, max: nil), default: .int(4), "Lower bound of the capacity.")
        static let dropPolicy = SchemaField("drop_policy", SchemaField.choice(RouterSpec.DropPolicy.self), default: .string("probs"),
            "Which tokens overflow first: lowest router probability, or latest position.")
        static let auxLoss = SchemaField("aux_loss", .number(.nonNegative), default: .number(0.01),
            "Load-balancing loss coefficient (Switch form E · Σ f_i · P_i, per layer).")
        static let zLoss = SchemaField("z_loss", .number(.nonNegative), default: .number(0.001),
            "Router z-loss coefficient (mean logsumexp² of the logits).")
        static let jitter = SchemaField("jitter", .number(.unitHalfOpen), default: .number(0.0),
            "Multiplicative input jitter ε: inputs scaled by U(1-ε, 1+ε) in training.")
        static let normalizeTopk = SchemaField("normalize_topk", .boolean, default: .bool(true),
            "Renormalise the k selected gate values to sum to 1.")
        static let score = SchemaField("score", SchemaField.choice(RouterSpec.Score.self), default: .string("softmax"),
            "Expert affinities from the logits z = W_r·x: `softmax` over the experts, or `sigmoid` per expert, s = σ(z) (DeepSeek-V3; gates are the chosen s, renormalised to sum 1 with `normalize_topk` and k > 1). `sigmoid` needs `topk` or `switch`.")
        static let balance = SchemaField("balance", SchemaField.choice(RouterSpec.Balance.self), default: .string("aux_loss"),
            "Load balancing: `aux_loss` (the Switch loss, weighted by `aux_loss`), `bias` (loss-free, Wang et al. 2024: a per-expert bias b added to the affinities for selection only, b_i += `bias_rate` · sign(mean load − load_i) after every optimizer step, the load counted over the whole global batch; `topk` or `switch` only), or `none`.")
        static let biasRate = SchemaField("bias_rate", .number(.positive), default: .number(0.001),
            "Step u of the expert-bias update of `balance: bias`.")
        static let all = [type, k, capacityFactor, minCapacity, dropPolicy, auxLoss, zLoss, jitter, normalizeTopk, score, balance, biasRate]
    }

    enum Parallelism {
        static let mode = SchemaField("mode", SchemaField.choice(ParallelismSpec.Mode.self), default: .string("none"),
            "`branch`: experts in parallel processes; `data`: data parallel; `expert`: expert parallel; `pipeline`: GPipe stages (layerwise).")
        static let workers = SchemaField("workers", .integer(min: 1, max: nil), default: .int(1), "Worker processes at once.")
        static let retries = SchemaField("retries", .integer(min: 0, max: nil), default: .int(1),
            "Restarts of a crashed task from its last checkpoint.")
        static let microbatches = SchemaField("microbatches", .integer(min: 1, max: nil), default: .int(4),
            "Micro-batches per batch (pipeline mode).")
        static let compression = SchemaField("compression", SchemaField.choice(ParallelismSpec.Compression.self), default: .string("none"),
            "Gradient compression for data-parallel all-reduce.")
        static let ratio = SchemaField("ratio", .number(.unitOpenClosed), default: .number(0.01),
            "Fraction of gradient entries kept by `topk` compression.")
        static let backend = SchemaField("backend", SchemaField.choice(ParallelismSpec.Backend.self), default: .string("auto"),
            "Where the workers run: `shm` processes on this machine, `mpi` the ranks of `mpirun`/`srun` (a group task spans `workers` ranks), `auto` MPI when launched by it. The same bits either way (not part of the run id).")
        static let all = [mode, workers, retries, microbatches, compression, ratio, backend]
    }

    enum Train {
        static let epochs = SchemaField("epochs", .integer(min: 1, max: nil), default: .int(10),
            "Passes over the training split (without `steps`; give one of the two, not both).")
        static let steps = SchemaField("steps", .integer(min: 1, max: nil), nullable: true, default: .null,
            "Optimizer steps in all, instead of `epochs` (both kinds of model; give one of the two, not both); null = train for `epochs`. The learning-rate schedule spans these steps; with `steps`, `eval_every: 0` means at the end of training, and `checkpoint_every: 0` a kept checkpoint at the end plus a resume point every 10 s.")
        static let batchSize = SchemaField("batch_size", .integer(min: 1, max: nil), default: .int(64),
            "Samples per step (transformer: windows of `model.context + 1` tokens).")
        static let optimizer = SchemaField("optimizer", SchemaField.choice(TrainSpec.Optimizer.self), default: .string("adamw"),
            "AdamW (decoupled weight decay) or SGD with momentum.")
        static let lr = SchemaField("lr", .number(.positive), default: .number(0.001), "Peak learning rate.")
        static let weightDecay = SchemaField("weight_decay", .number(.nonNegative), default: .number(0.01), "Weight decay.")
        static let momentum = SchemaField("momentum", .number(.unitHalfOpen), default: .number(0.9), "SGD momentum.")
        static let nesterov = SchemaField("nesterov", .boolean, default: .bool(false), "Nesterov momentum (SGD).")
        static let betas = SchemaField("betas", .custom("`[b1, b2]`, each in [0, 1)"), default: .list([.number(0.9), .number(0.999)]),
            "AdamW moment decay rates.")
        static let eps = SchemaField("eps", .number(.positive), default: .number(1e-8), "AdamW epsilon.")
        static let gradClip = SchemaField("grad_clip", .number(.positive), nullable: true, default: .number(1.0),
            "Global gradient-norm clip; null = no clipping.")
        static let schedule = SchemaField("schedule", SchemaField.choice(TrainSpec.Schedule.self), default: .string("cosine"),
            "Learning-rate schedule after the warm-up.")
        static let warmupSteps = SchemaField("warmup_steps", .integer(min: 0, max: nil), default: .int(0), "Linear warm-up steps.")
        static let minLR = SchemaField("min_lr", .number(.nonNegative), default: .number(0.0),
            "Final learning rate of the cosine schedule; at most `lr`.")
        static let logEvery = SchemaField("log_every", .integer(min: 1, max: nil), default: .int(10), "Steps between metric rows.")
        static let evalEvery = SchemaField("eval_every", .integer(min: 0, max: nil), default: .int(0),
            "Steps between validations; 0 = at the end of each epoch.")
        static let checkpointEvery = SchemaField("checkpoint_every", .integer(min: 0, max: nil), default: .int(0),
            "Steps between checkpoints, each written to a file; 0 = a checkpoint at the end of each epoch, written to a file once 10 s have passed since the last one (none for the last epoch: the task file follows); with `train.steps` (every language model), whose one epoch may be all of training, also a resume point after any step once 10 s have passed (a file `--resume` goes on from, not one of the kept checkpoints). `--resume` goes on from the newest file; the task file keeps the newest `output.keep_checkpoints` either way.")
        static let local = SchemaField("local", .boolean, default: .bool(false),
            "Stage-local training with auxiliary heads (layerwise only; not with pipeline mode).")
        static let initFrom = SchemaField("init_from", .string, nullable: true, default: .null,
            "A checkpoint the run's first trained model starts from instead of its random initialisation (continued training or fine-tuning): the `pretrain` model when the run pre-trains, else the `train` model (`none`, `replicate`, and `layerwise`: the stacked dense model, so each stage starts from its blocks; auxiliary heads start fresh), or the shared seed model of `branch` experts. A checkpoint file, a task file (`tasks/<id>.h5`, its `/model`), a run's `run.h5` or its directory (the task file of its final model); relative to the spec file's directory; it must exist. Every tensor of the model must be in it with the same shape (dense or MoE, mlp or transformer; the error names the tensor); the optimizer starts fresh. The run id holds the SHA-256 of the checkpoint file's bytes, not its path.")
        static let earlyStopping = SchemaField("early_stopping", .section(EarlyStopping.all), nullable: true, default: .null,
            "Stops training when `patience` validations in a row have not improved `eval.metric` by more than `min_delta` on the best value so far (Prechelt 1998; Keras `EarlyStopping`). Validations come every `eval_every` steps (or every epoch), so patience is counted in them. The decision depends only on the logged validation values: a resumed run stops at the same step. The learning-rate schedule keeps the planned length; the task file stores `stopped_early` and `/best`.")
        static let all = [epochs, steps, batchSize, optimizer, lr, weightDecay, momentum, nesterov, betas, eps, gradClip, schedule,
                          warmupSteps, minLR, logEvery, evalEvery, checkpointEvery, local, initFrom, earlyStopping]

        enum EarlyStopping {
            static let patience = SchemaField("patience", .integer(min: 1, max: nil), defaultText: "required",
                "Validations without improvement before training stops.")
            static let minDelta = SchemaField("min_delta", .number(.nonNegative), default: .number(0.0),
                "The least change of `eval.metric` that counts as an improvement.")
            static let all = [patience, minDelta]
        }
    }

    enum Fusion {
        static let method = SchemaField("method", SchemaField.choice(FusionSpec.Method.self), default: .string("none"),
            "`stack` needs layerwise; the other methods need branch; `slerp` exactly 2 experts.")
        static let weights = SchemaField("weights",
            .custom("`uniform`, `data_size`, `val_loss`, `optimized`, or a list of numbers >= 0, one per expert"),
            default: .string("uniform"), "Expert weights for averaging methods (`val_loss`: softmax with `temperature`).")
        static let temperature = SchemaField("temperature", .number(.positive), default: .number(1.0), "Softmax temperature of `val_loss` weights.")
        static let lambda = SchemaField("lambda", .number(.any), default: .number(1.0), "Task-vector scale (task_arithmetic, ties, dare_ties).")
        static let density = SchemaField("density", .number(.unitOpenClosed), default: .number(0.5), "Fraction of task-vector entries kept (ties, dare).")
        static let rescale = SchemaField("rescale", .boolean, default: .bool(true), "DARE: rescale kept entries by 1/density.")
        static let t = SchemaField("t", .number(.unitClosed), default: .number(0.5), "SLERP interpolation point.")
        static let normalize = SchemaField("normalize", .boolean, default: .bool(true), "Normalise the weights to sum to 1.")
        static let epsilon = SchemaField("epsilon", .number(.positive), default: .number(1e-8), "Fisher merging: added to the Fisher weights.")
        static let fisherSamples = SchemaField("fisher_samples", .integer(min: 1, max: nil), default: .int(16),
            "Batches used to estimate the diagonal Fisher.")
        static let finetune = SchemaField("finetune", .section(Finetune.all), nullable: true, default: .null,
            "Fine-tuning after fusion; null = none.")
        static let prior = SchemaField("prior", SchemaField.choice(FusionSpec.Prior.self), default: .string("validation"),
            "Prior of the BTM ensemble of transformer LMs: `uniform`, or `validation` (the experts' mean posterior over the validation windows, BTM's cached prior).")
        static let source = SchemaField("source", SchemaField.choice(ModelSource.self), default: .string("final"),
            "Which model of each branch expert is fused (and with `split.strategy: layerwise`, which stacked model is fine-tuned): `final`, the model at the end of its training, or `best`, its best model by `eval.metric` (`/best` of its task file).")
        static let all = [method, weights, temperature, lambda, density, rescale, t, normalize, epsilon, fisherSamples, prior, finetune, source]

        enum Finetune {
            static let epochs = SchemaField("epochs", .integer(min: 1, max: nil), default: .int(1), "Fine-tuning epochs (without `steps`).")
            static let steps = SchemaField("steps", .integer(min: 1, max: nil), nullable: true, default: .null,
                "Fine-tuning optimizer steps instead of `epochs` (give one of the two, not both); null = `epochs`.")
            static let lr = SchemaField("lr", .number(.positive), defaultText: "`train.lr`", "Fine-tuning learning rate.")
            static let all = [epochs, steps, lr]
        }
    }

    enum Eval {
        static let batchSize = SchemaField("batch_size", .integer(min: 1, max: nil), default: .int(1024), "Samples per evaluation batch.")
        static let splits = SchemaField("splits", .custom("a non-empty list of `train`, `val`, `test` without repeats"),
            default: .list([.string("val"), .string("test")]), "Splits the final model is evaluated on.")
        static let metric = SchemaField("metric", SchemaField.choice(EvalSpec.Metric.self), default: .string("val_loss"),
            "The validation number that picks every training task's best model (`/best` of its task file, `/models/best` of the run; ties keep the earlier step) and that `train.early_stopping` watches: `val_loss` (lower is better) or `val_accuracy` (higher is better; for a language model the top-1 next-token accuracy).")
        static let all = [batchSize, splits, metric]
    }

    enum Output {
        static let dir = SchemaField("dir", .string, default: .string("results"),
            "Results folder, relative to the working directory.")
        static let keepCheckpoints = SchemaField("keep_checkpoints", .integer(min: 1, max: nil), default: .int(2),
            "Checkpoints kept per task (older ones are deleted).")
        static let compression = SchemaField("compression", .integer(min: 0, max: 9), default: .int(4), "gzip level of datasets.")
        static let all = [dir, keepCheckpoints, compression]
    }

    enum Sweep {
        static let method = SchemaField("method", SchemaField.choice(SweepSpec.Method.self), default: .string("grid"),
            "`grid`: every combination; `random`: `trials` samples.")
        static let trials = SchemaField("trials", .integer(min: 1, max: nil), defaultText: "required with `random`",
            "Sampled combinations (random only).")
        static let seed = SchemaField("seed", .integer(min: 0, max: nil), default: .int(0), "Seed of the random sampling.")
        static let parameters = SchemaField("parameters",
            .custom("a mapping from key paths (`router.k`) to non-empty lists of values"), defaultText: "required",
            "The swept keys: each path names a key of this schema, each value has that key's type and range; rules between keys apply to each combination.")
        static let all = [method, trials, seed, parameters]
    }
}
