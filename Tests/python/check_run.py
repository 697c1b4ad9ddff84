"""Checks a finished moe-run run directory from Python alone (h5py + numpy, no moe-run code).

1. The layout of ARCHITECTURE §5.2: run.h5 attributes, /spec, /plan, /data/<split>/{x,y},
   /models/final, /summary/final/*, task files with /metrics.
2. The checkpoint of §5.3 is self-describing: a numpy forward pass built only from the
   checkpoint's `config` attribute and its parameters reproduces moe-run's test loss to 1e-4
   relative.
3. MoE blocks (config "moe"), in evaluation mode, from the documented maths (ARCHITECTURE §2):
   router probabilities p = softmax(x·Wᵀ); `topk`/`noisy_topk` (no noise at evaluation) take each
   token's k most probable experts, `switch` the top one; gates are p, renormalised over the k
   chosen when `normalize_topk` and k > 1; `expert_choice` lets each expert take its C most
   probable tokens with gate p; `domain` sends domain d to expert d mod E with gate 1. With a
   `capacity_factor`, C = max(min_capacity, ceil(k·T/E·capacity_factor)) where T counts the
   tokens of one evaluation batch: moe-run evaluates in batches of `eval.batch_size` (stored as
   the `batch_size` attribute of tasks/evaluate.h5), so this forward pass batches the test split
   the same way. Token-choice overflow keeps, per expert, the assignments with the highest
   probability (`drop_policy: probs`) or the earlier choice rank, then the earlier token
   (`position`); ties go to the lower slot t·k + j. A dropped assignment contributes nothing (the
   token passes through the residual). The `hash` router (seeded Philox stream per token) is
   not re-implemented here: the check reports it and fails.
   Sigmoid scores (config `score: sigmoid`, DeepSeek-V3): p = σ(x·Wᵀ) per expert instead of the
   softmax. Loss-free balancing (`balance: bias`): token choice takes the k largest p + b, b the
   checkpoint's `router/expert_bias [E]`; the gates are p (never b), renormalised as above.
   Shared experts (config moe.shared_experts S > 0, DeepSeekMoE): every token also passes
   through S always-active FFNs `blocks/<i>/moe/shared/{w1 [S, shared_ffn, hidden], b1, w2
   [S, hidden, shared_ffn], b2}` (shared_ffn defaults to the routed experts' width), added with
   gate 1 (a dropped token still gets them): y_t = Σ_kept g·FFN_e(z_t) + Σ_s FFN^shared_s(z_t).

4. Every model checkpoint the run links under /models (final, and for branch and fusion runs also
   seed, expert-<i>, fused; moe for expert merging) whose /summary/<model>/test_loss exists is
   re-computed the same way. Ensemble checkpoints (kind "ensemble") are checked by
   ensemble_reference.py instead. A weight-space fusion (average, task_arithmetic, ties, dare,
   dare_ties, slerp, fisher, greedy_soup) is recomputed from the experts by fusion_recompute.py.

5. A transformer language model (data.source: text, ARCHITECTURE §5.4): /data/<split>/tokens
   (uint16) and /domain (int64, ascending), /data/domains; every domain's stream of val and test
   is cut into windows of context + 1 tokens at offsets 0, context, 2·context, … (the incomplete
   last one dropped), scored on tokens 1...context by the numpy forward pass of
   transformer_forward.py (built from the checkpoint alone), in batches of the evaluate task's
   `batch_size` windows; <split>_loss (mean nats over every scored token), _accuracy and
   _bits_per_byte (= loss / ln 2), overall and under /summary/<model>/domains/<name>/, must match
   moe-run's to 1e-4 relative (accuracy exactly), for every model linked under /models with a
   summary (final; the branch experts, seed and fused model); every training task has /metrics.
   With a fuse task, the fused LM is recomputed from the experts (average, task_arithmetic, and
   BTX's mix; lm_fusion_check.py) and the fuse task's metrics must equal the evaluate task's.
   A BTM ensemble of LMs (kind "ensemble") is scored by the posterior-weighted mixture of
   lm_ensemble_reference.py.

Usage: python check_run.py RUN_DIR      (exit 0 and "interop: ok ..." on success)
"""
import json
import math
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fusion_recompute  # noqa: E402
import lm_ensemble_reference  # noqa: E402
import lm_fusion_check  # noqa: E402
import transformer_forward  # noqa: E402


def fail(message):
    print(f"interop: FAILED: {message}")
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def activation(name, x):
    if name == "relu":
        return np.maximum(x, 0)
    if name == "silu":
        return x / (1 + np.exp(-x))
    if name == "gelu":  # exact GELU: x·Φ(x)
        erf = np.vectorize(math.erf)
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))
    fail(f"unknown activation {name}")


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def router_scores(moe, p, prefix, z):
    """The affinities p [T, E] of a learned router and the selection bias b [E] (zeros without one)."""
    logits = z @ p(f"{prefix}/router/weight").T
    probs = 1 / (1 + np.exp(-logits)) if moe.get("score", "softmax") == "sigmoid" else softmax(logits)
    bias = p(f"{prefix}/router/expert_bias") if moe.get("balance", "aux_loss") == "bias" else np.zeros(moe["experts"])
    return probs, bias


def route(moe, probs, domains, bias=None):
    """Assignments (expert, token, gate) of one batch, after capacity; `bias` (selection only)."""
    t_count, e_count = probs.shape
    kind, k = moe["router"], moe["k"]
    cf = moe["capacity_factor"]
    capacity = None if cf is None else max(moe["min_capacity"], math.ceil(k * t_count / e_count * cf))
    if kind == "expert_choice":
        out = []
        for e in range(e_count):
            # Most probable first; equal probabilities go to the lower token.
            order = sorted(range(t_count), key=lambda t: (-probs[t, e], t))[: min(capacity, t_count)]
            out += [(e, t, probs[t, e]) for t in order]
        return out
    if kind == "hash":
        fail("the numpy check does not implement the hash router (a seeded Philox stream per token)")
    if kind == "domain":
        check(domains is not None, "the domain router needs /data/test/domain")
        chosen = [[int(d) % e_count] for d in domains]
        gates = [[1.0] for _ in domains]
    else:
        chosen, gates = [], []
        for t in range(t_count):
            chosen_by = probs[t] if bias is None else probs[t] + bias
            order = sorted(range(e_count), key=lambda e: (-chosen_by[e], e))[:k]
            g = [probs[t, e] for e in order]
            if moe["normalize_topk"] and k > 1:
                g = [v / sum(g) for v in g]
            chosen.append(order)
            gates.append(g)
    pairs = [(chosen[t][j], t, gates[t][j], t * k + j, j) for t in range(t_count) for j in range(k)]
    if capacity is None:
        return [(e, t, g) for e, t, g, _, _ in pairs]
    learned = kind in ("topk", "switch", "noisy_topk")
    if moe["drop_policy"] == "probs" and learned:
        priority = lambda a: (-probs[a[1], a[0]], a[3])
    else:
        priority = lambda a: (a[4] * t_count + a[1], a[3])
    load = [0] * e_count
    kept = []
    for a in sorted(pairs, key=priority):
        if load[a[0]] < capacity:
            load[a[0]] += 1
            kept.append((a[0], a[1], a[2]))
    return kept


def moe_layer(moe, p, prefix, z, domains, act):
    """y_t = Σ over the kept assignments (e, t, g) of g · FFN_e(z_t)."""
    if moe["router"] in ("hash", "domain"):
        probs, bias = np.zeros((z.shape[0], moe["experts"])), None
    else:
        probs, bias = router_scores(moe, p, prefix, z)
    w1, b1 = p(f"{prefix}/experts/w1"), p(f"{prefix}/experts/b1")
    w2, b2 = p(f"{prefix}/experts/w2"), p(f"{prefix}/experts/b2")
    y = np.zeros_like(z)
    for e, t, g in route(moe, probs, domains, bias):
        h = activation(act, z[t] @ w1[e].T + b1[e])
        y[t] += g * (h @ w2[e].T + b2[e])
    for s in range(moe.get("shared_experts", 0)):  # always active, gate 1
        s1, c1 = p(f"{prefix}/shared/w1")[s], p(f"{prefix}/shared/b1")[s]
        s2, c2 = p(f"{prefix}/shared/w2")[s], p(f"{prefix}/shared/b2")[s]
        y += activation(act, z @ s1.T + c1) @ s2.T + c2
    return y


def forward(group, x, domains=None, batch_size=None):
    """The residual MLP of ARCHITECTURE §5.3, in float64, from the checkpoint group alone,
    over batches of `batch_size` rows (MoE capacity counts the tokens of one batch)."""
    config = json.loads(group.attrs["config"])
    moe = config.get("moe")
    p = lambda name: np.asarray(group[name], dtype=np.float64)
    if "input" in group:
        x = (x - p("input/mean")) / p("input/std")
    if batch_size is None or moe is None:
        batch_size = max(len(x), 1)
    outputs = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        db = None if domains is None else domains[start : start + batch_size]
        h = xb @ p("embed/weight").T + p("embed/bias")
        for i in range(config["blocks"]):
            b = f"blocks/{i}"
            z = layer_norm(h, p(f"{b}/norm/weight"), p(f"{b}/norm/bias"), config["norm_eps"])
            if moe is not None and i in moe["blocks"]:
                h = h + moe_layer(moe, p, f"{b}/moe", z, db, config["activation"])
            else:
                a = activation(config["activation"], z @ p(f"{b}/ffn/w1").T + p(f"{b}/ffn/b1"))
                h = h + a @ p(f"{b}/ffn/w2").T + p(f"{b}/ffn/b2")
        h = layer_norm(h, p("norm/weight"), p("norm/bias"), config["norm_eps"])
        outputs.append(h @ p("head/weight").T + p("head/bias"))
    return np.concatenate(outputs)


def cross_entropy(logits, y):
    m = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(lse - logits[np.arange(len(y)), y]))


def metrics_step(f):
    return f["tasks/train/metrics/step"]


def main(run_dir):
    path = os.path.join(run_dir, "run.h5")
    with h5py.File(path, "r") as f:
        for attr in ["format", "status", "seed", "spec_sha256", "moe_run_version", "started", "finished"]:
            check(attr in f.attrs, f"run.h5 lacks attribute {attr}")
        check(f.attrs["format"] == "moe-run/1", f"format is {f.attrs['format']!r}")
        check(isinstance(f.attrs["status"], str), "string attributes must read as str")
        check(f.attrs["status"] == "complete", f"status is {f.attrs['status']!r}")
        spec = f["spec"][()].decode() if isinstance(f["spec"][()], bytes) else f["spec"][()]
        check("name:" in spec, "/spec does not hold the resolved YAML")
        plan = json.loads(f["plan"][()])
        ids = [t["id"] for t in plan["tasks"]]
        check(ids[0] == "data" and ids[-1] == "evaluate" and ("train" in ids or "expert-0" in ids), f"unexpected plan {plan}")
        if "tokens" in f["data/train"]:
            return check_lm(f, ids)
        for split in ["train", "val", "test"]:
            check(f[f"data/{split}/x"].dtype == np.float32, f"/data/{split}/x is not float32")
            check(f[f"data/{split}/y"].dtype == np.int64, f"/data/{split}/y is not int64")
            check(f[f"data/{split}/x"].shape[0] == f[f"data/{split}/y"].shape[0], f"/data/{split} x/y lengths differ")
        model = f["models/final"]
        check(model.attrs["format"] == "moe-run/1" and model.attrs["kind"] in ("model", "ensemble"), "/models/final is not a checkpoint")
        if model.attrs["kind"] == "ensemble":
            model = f["models/fused"] if "models/fused" in f and f["models/fused"].attrs["kind"] == "model" else None
        check(model is not None or "models/expert-0" in f, "no model checkpoint to check")
        if model is None:
            model = f["models/expert-0"]
        config = json.loads(model.attrs["config"])
        check(model["embed/weight"].shape == (config["hidden"], config["features"]), "embed/weight is not [hidden, features]")
        moe = config.get("moe")
        moe_blocks = [] if moe is None else moe["blocks"]
        for i in range(config["blocks"]):
            if i in moe_blocks:
                e, ffn, hidden = moe["experts"], moe.get("expert_ffn") or config["ffn"], config["hidden"]
                if moe["router"] not in ("hash", "domain"):  # the fixed routers have no weights
                    check(model[f"blocks/{i}/moe/router/weight"].shape == (e, hidden), "router/weight is not [E, hidden]")
                check(model[f"blocks/{i}/moe/experts/w1"].shape == (e, ffn, hidden), "experts/w1 is not [E, ffn, hidden]")
                check(model[f"blocks/{i}/moe/experts/w2"].shape == (e, hidden, ffn), "experts/w2 is not [E, hidden, ffn]")
                check(f"blocks/{i}/ffn" not in model, f"MoE block {i} also has a dense ffn")
                shared = moe.get("shared_experts", 0)
                check((f"blocks/{i}/moe/shared" in model) == (shared > 0), f"MoE block {i}: shared experts do not match config shared_experts {shared}")
                if shared > 0:
                    sffn = moe.get("shared_ffn") or ffn
                    check(model[f"blocks/{i}/moe/shared/w1"].shape == (shared, sffn, hidden), "shared/w1 is not [S, shared_ffn, hidden]")
                    check(model[f"blocks/{i}/moe/shared/w2"].shape == (shared, hidden, sffn), "shared/w2 is not [S, hidden, shared_ffn]")
                if f"tasks/train/router/{i}" in f:
                    router = f[f"tasks/train/router/{i}"]
                    rows = len(metrics_step(f))
                    check(router["load"].shape == (rows, e), f"router/{i}/load is not [log rows, E]")
                    for name in ["step", "dropped_fraction", "unused_experts", "gate_entropy", "load_cv", "max_mean_load", "aux_loss", "z_loss"]:
                        check(router[name].shape == (rows,), f"router/{i}/{name} is not [log rows]")
                    if "max_violation" in router:
                        check(router["max_violation"].shape == (rows,), f"router/{i}/max_violation is not [log rows]")
                        check(router["gate_mass"].shape == (rows, e), f"router/{i}/gate_mass is not [log rows, E]")
                if moe.get("balance", "aux_loss") == "bias":
                    check(model[f"blocks/{i}/moe/router/expert_bias"].shape == (e,), "router/expert_bias is not [E]")
                    if f"tasks/train/router/{i}" in f:
                        series = f[f"tasks/train/router/{i}/expert_bias"]
                        check(series.shape == (rows, e), f"router/{i}/expert_bias is not [log rows, E]")
            else:
                check(model[f"blocks/{i}/ffn/w1"].shape == (config["ffn"], config["hidden"]), "w1 is not [ffn, hidden]")
        check(model["head/weight"].dtype == np.float32, "parameters must be float32")
        for task in plan["tasks"]:
            check(f"tasks/{task['id']}" in f, f"/tasks/{task['id']} link missing")
        for task in [t for t in ids if t in ("train", "expert-0", "finetune")]:
            metrics = f[f"tasks/{task}/metrics"]
            check(metrics["step"].dtype == np.int64 and metrics["train_loss"].dtype == np.float64, f"{task} metric dtypes")
            check(len(metrics["step"]) == len(metrics["train_loss"]) > 0, f"{task} metric series lengths")

        x = np.asarray(f["data/test/x"], dtype=np.float64)
        y = np.asarray(f["data/test/y"])
        domains = np.asarray(f["data/test/domain"]) if "data/test/domain" in f else None
        batch_size = int(f["tasks/evaluate"].attrs["batch_size"])
        checked = []
        for name in sorted(f["models"]):
            group = f[f"models/{name}"]
            if group.attrs["kind"] != "model" or f"summary/{name}/test_loss" not in f:
                continue
            reported = float(f[f"summary/{name}/test_loss"][()])
            logits = forward(group, x, domains, batch_size)
            loss = cross_entropy(logits, y)
            rel = abs(loss - reported) / abs(reported)
            check(rel < 1e-4, f"{name}: numpy test loss {loss:.8f} vs moe-run {reported:.8f} (relative {rel:.2e})")
            accuracy = float(np.mean(logits.argmax(axis=1) == y))
            check(abs(accuracy - float(f[f"summary/{name}/test_accuracy"][()])) < 1e-9, f"{name}: test accuracy differs")
            model_moe = json.loads(group.attrs["config"]).get("moe")
            kind = "dense" if model_moe is None else f"MoE {model_moe['router']} k={model_moe['k']}, {model_moe['experts']} experts in blocks {model_moe['blocks']}"
            checked.append(f"{name} ({kind}): numpy test loss {loss:.6f} = moe-run {reported:.6f} (relative {rel:.1e}), accuracy {accuracy:.4f}")
        check("final" in [c.split(" ")[0] for c in checked] or f["models/final"].attrs["kind"] == "ensemble", "the final model was not checked")
        fusion = fusion_recompute.check(f, fail)
        if fusion:
            checked.append(fusion)
    print("interop: ok: " + "; ".join(checked))


def check_dense_start(f):
    """An upcycled or moefied LM (issue 15): /models/dense is the pre-trained dense LM of the same
    architecture but for the MoE blocks, every tensor outside the FFNs has the final model's
    shape, and a `neurons` run's /moefication/<block>/units partitions each dense FFN's units."""
    dense, final = f["models/dense"], f["models/final"]
    dcfg, fcfg = json.loads(dense.attrs["config"]), json.loads(final.attrs["config"])
    check(dcfg.get("moe") is None, "models/dense is not a dense LM")
    check({k: v for k, v in dcfg.items() if k != "moe"} == {k: v for k, v in fcfg.items() if k != "moe"},
          f"models/dense and models/final differ beyond the MoE blocks: {dcfg} vs {fcfg}")
    names = []
    dense.visit(lambda n: names.append(n) if isinstance(dense[n], h5py.Dataset) else None)
    moe_blocks = set(fcfg["moe"]["blocks"]) if fcfg.get("moe") else set()
    for n in names:
        if any(n.startswith(f"blocks/{b}/ffn/") for b in moe_blocks):
            continue
        check(n in final and final[n].shape == dense[n].shape, f"{n}: not in models/final with the dense model's shape")
    metrics = f["tasks/pretrain/metrics"]
    check(len(metrics["train_loss"]) == len(metrics["step"]) > 0, "/tasks/pretrain/metrics missing")
    if "moefication" in f["tasks/train"]:
        for b in moe_blocks:
            units = np.asarray(f[f"tasks/train/moefication/{b}/units"])
            check(units.shape[0] == fcfg["moe"]["experts"] and sorted(units.ravel().tolist()) == list(range(fcfg["ffn"])),
                  f"moefication/{b}/units is not a partition of the {fcfg['ffn']} dense FFN units")


def check_lm(f, ids):
    """Check 5: a transformer LM's val and test figures recomputed by the §5.4 protocol, for every
    model the run links under /models (final; branch experts, seed, fused) that has a summary."""
    names = [n.decode() if isinstance(n, bytes) else n for n in f["tasks/data/data/domains"][()]]
    for split in ["train", "val", "test"]:
        check(f[f"data/{split}/tokens"].dtype == np.uint16, f"/data/{split}/tokens is not uint16")
        check(f[f"data/{split}/domain"].dtype == np.int64, f"/data/{split}/domain is not int64")
        d = np.asarray(f[f"data/{split}/domain"])
        check(len(d) == len(f[f"data/{split}/tokens"]), f"/data/{split} tokens/domain lengths differ")
        check(bool(np.all(np.diff(d) >= 0)) and (len(d) == 0 or (d[0] >= 0 and d[-1] < len(names))), f"/data/{split}/domain not ascending ids")
    trained = [t for t in ids if t in ("pretrain", "train", "finetune") or t.startswith("expert-")]
    check(trained, "the plan has no training task")
    for task in trained:
        metrics = f[f"tasks/{task}/metrics"]
        for name in ["train_loss", "tokens_per_second", "lr", "grad_norm"]:
            check(name in metrics and len(metrics[name]) == len(metrics["step"]) > 0, f"{task}: /metrics/{name} missing or of the wrong length")
    if "pretrain" in ids and "models/dense" in f:
        check_dense_start(f)
    batch = int(f["tasks/evaluate"].attrs["batch_size"])
    checked = []
    for model in sorted(f["models"]):
        group = f[f"models/{model}"]
        if group.attrs["kind"] not in ("model", "ensemble") or f"summary/{model}" not in f:
            continue
        checked.append(check_lm_model(f, model, group, names, batch))
    check(checked, "no LM model with a summary to check")
    fusion = lm_fusion_check.check_fusion(f, fail)
    if fusion:
        checked.append(fusion)
    check("final" in f["models"] or any(c.startswith("expert-") for c in checked), "neither the final model nor an expert was checked")
    print("interop: ok: " + " | ".join(checked))


def check_lm_model(f, model, group, names, batch):
    """One LM checkpoint: its val and test figures (overall and per domain) against /summary/<model>."""
    if group.attrs["kind"] == "ensemble":
        # A BTM ensemble: the posterior-weighted mixture of lm_ensemble_reference.py.
        experts, prior = lm_ensemble_reference.load_ensemble(group)
        configs = [c for _, c in experts]
        score = lambda windows: lm_ensemble_reference.scores(experts, prior, windows)  # noqa: E731
    else:
        P, cfg = transformer_forward.load(group)
        configs = [cfg]
        score = lambda windows: transformer_forward.scores(P, cfg, windows)  # noqa: E731
    for cfg in configs:
        if cfg["moe"] is not None and (cfg["moe"]["router"] not in ("topk", "switch") or cfg["moe"]["capacity_factor"] is not None):
            fail(f"the numpy LM check implements dropless topk/switch routers only, not {cfg['moe']}")
    cfg = configs[0]
    context = cfg["context"]
    checked = []
    for split in ["val", "test"]:
        if f"summary/{model}/{split}_loss" not in f:
            continue
        tokens = np.asarray(f[f"data/{split}/tokens"], dtype=np.int64)
        domain = np.asarray(f[f"data/{split}/domain"])
        totals = np.zeros(3)
        for d, name in enumerate(names):
            stream = tokens[domain == d]
            count = (len(stream) - 1) // context if len(stream) > context else 0
            sums = np.zeros(3)
            for start in range(0, count, batch):
                rows = range(start, min(count, start + batch))
                windows = np.stack([stream[i * context : i * context + context + 1] for i in rows])
                sums += score(windows)
            if sums[2] == 0:
                continue
            totals += sums
            base = f"summary/{model}/domains/{name}/{split}_"
            loss, accuracy = sums[0] / sums[2], sums[1] / sums[2]
            reported = float(f[base + "loss"][()])
            check(abs(loss - reported) / reported < 1e-4, f"{model} {name} {split}: numpy loss {loss:.8f} vs moe-run {reported:.8f}")
            check(abs(accuracy - float(f[base + "accuracy"][()])) < 1e-9, f"{model} {name} {split}: accuracy {accuracy} differs")
            check(abs(float(f[base + "bits_per_byte"][()]) - reported / math.log(2)) < 1e-12, f"{model} {name} {split}: bits per byte is not loss / ln 2")
        loss, accuracy = totals[0] / totals[2], totals[1] / totals[2]
        reported = float(f[f"summary/{model}/{split}_loss"][()])
        rel = abs(loss - reported) / reported
        check(rel < 1e-4, f"{model} {split}: numpy loss {loss:.8f} vs moe-run {reported:.8f} (relative {rel:.1e})")
        check(abs(accuracy - float(f[f"summary/{model}/{split}_accuracy"][()])) < 1e-9, f"{model} {split}: accuracy differs")
        bpb = float(f[f"summary/{model}/{split}_bits_per_byte"][()])
        check(abs(bpb - reported / math.log(2)) < 1e-12, f"{model} {split}: bits per byte is not loss / ln 2")
        checked.append(f"{split} loss {loss:.6f} = moe-run {reported:.6f} (relative {rel:.1e}), {bpb:.4f} bits per byte")
    check(checked, f"{model}: no val or test summary to check")
    kind = "dense" if cfg["moe"] is None else f"MoE {cfg['moe']['router']} k={cfg['moe']['k']}, {cfg['moe']['experts']} experts"
    return f"{model} (transformer {kind}, {len(names)} domains): " + "; ".join(checked)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1])
