#!/usr/bin/env python3
"""The README study "What works on real text", computed from the runs' HDF5 files alone.

Reads, for every recipe and seed, `run.h5` (status, seed, wall time), `tasks/evaluate.h5`
(`/summary/<model>/domains/<domain>/val_bits_per_byte`) and the model checkpoints the run links
under `/models` (parameter counts), and prints the markdown table of README (mean ± sd over the
seeds, and n). With --images DIR it also writes the SVG figures (bits per byte per domain for
each recipe, BTX's router load per domain recomputed with numpy from the fine-tuned MoE's
checkpoint and the val tokens of tasks/data.h5).

    python Tests/python/lm_study.py RESULTS_DIR [--images docs/images] [--times LOGDIR]

RESULTS_DIR holds results/<name>/<run id>/ as `moe-run experiments/<name>.yaml --set seed=S`
writes them (`make lm-study`). Nothing here is needed to run an experiment: it is a reader of
finished runs, as h5py users would write one.

Parameters: total = every float parameter tensor of the final model (not the expert_bias buffers) (BTM ensemble: of its experts);
active per token = total minus, per MoE block, the experts a token is not routed to
((E − k) · expert size). Inference FLOPs per token (forward only, as nanoGPT's estimate_mfu
without the backward: 2·N + 4·L·hidden·T, N = active parameters without the position
embedding, and without the token embedding when the head is untied, since a lookup multiplies
nothing; T = context, L = blocks); a BTM ensemble runs every expert: the sum of theirs.
"""

import argparse
import glob
import json
import math
import os
import statistics
import sys

import h5py
import numpy as np

DOMAINS = ["bible", "jargon", "dictionary", "python"]
# (spec name, recipe label, evaluate.h5 summary model) in table order.
ROWS = [
    ("lm-dense", "dense GPT", "final"),
    ("lm-moe", "MoE, 8 experts × 256, top-2", "final"),
    ("lm-switch", "MoE, 8 experts × 512, Switch (top-1)", "final"),
    ("lm-upcycle", "sparse upcycling: dense (FFN 256) 1000 steps → 8 × 256 top-2 MoE 1000 steps", "final"),
    ("lm-upcycle", "… the dense GPT it was upcycled from (FFN 256, 1000 steps)", "dense"),
    ("lm-btm", "… BTM's shared seed: the dense GPT after 400 steps", "seed"),
    ("lm-btm", "BTM ensemble of 4 domain experts (400 + 4 × 400 steps)", "final"),
    ("lm-btm-average", "BTM average of 4 domain experts, before fine-tuning", "fused"),
    ("lm-btm-average", "BTM average, after 200 fine-tuning steps (400 + 4 × 350 + 200)", "final"),
    ("lm-btx", "BTX: the 4 experts' FFNs mixed into a 4 × 512 top-2 MoE, 200 fine-tuning steps", "final"),
    ("lm-seed-recipe", "seed recipe: 4 layer-wise stages (1600 local steps), stacked, 400 fine-tuning steps", "final"),
]


def runs_of(results, name):
    """{seed: run directory} of the complete runs of spec `name`."""
    out = {}
    for path in sorted(glob.glob(os.path.join(results, name, "*", "run.h5"))):
        with h5py.File(path, "r") as f:
            if f.attrs["status"] != "complete":
                continue
            out[int(f.attrs["seed"])] = os.path.dirname(path)
    return out


def wall_seconds(run_dir):
    from datetime import datetime
    with h5py.File(os.path.join(run_dir, "run.h5"), "r") as f:
        start, end = (datetime.fromisoformat(str(f.attrs[k]).replace("Z", "+00:00")) for k in ("started", "finished"))
    return (end - start).total_seconds()


def summary(run_dir, model):
    with h5py.File(os.path.join(run_dir, "tasks", "evaluate.h5"), "r") as f:
        g = f["summary"][model]
        return {d: float(g["domains"][d]["val_bits_per_byte"][()]) for d in DOMAINS} | {
            "test": {d: float(g["domains"][d]["test_bits_per_byte"][()]) for d in DOMAINS}}


def tensors(group):
    """{name: shape} of the float parameters of a checkpoint group (buffers such as the routers'
    expert_bias are state, not parameters)."""
    out = {}
    group.visititems(lambda n, o: out.__setitem__(n, o.shape)
                     if isinstance(o, h5py.Dataset) and o.dtype.kind == "f" and not n.endswith("expert_bias") else None)
    return out


def counts(group):
    """(total, active, forward FLOPs per token) of a model checkpoint group (or an ensemble)."""
    if group.attrs["kind"] == "ensemble":
        parts = [counts(group["experts"][k]) for k in sorted(group["experts"], key=int)]
        return tuple(sum(p[i] for p in parts) for i in range(3))
    cfg = json.loads(group.attrs["config"])
    shapes = tensors(group)
    size = lambda s: int(np.prod(s)) if len(s) else 1
    total = sum(size(s) for s in shapes.values())
    active = total
    moe = cfg.get("moe")
    if moe:
        k = 1 if moe["router"] == "switch" else moe["k"]
        for i in moe["blocks"]:
            per_expert = sum(size(s[1:]) for n, s in shapes.items() if n.startswith(f"blocks/{i}/moe/experts/"))
            active -= (moe["experts"] - k) * per_expert
    n = active - size(shapes["pos/weight"]) - (0 if cfg["tie_embeddings"] else size(shapes["embed/weight"]))
    # Auxiliary heads of layer-wise training are not part of the stacked model.
    flops = 2 * n + 4 * cfg["blocks"] * cfg["hidden"] * cfg["context"]
    return total, active, flops


def model_group(run_dir, name):
    f = h5py.File(os.path.join(run_dir, "run.h5"), "r")
    return f, f["models"][name]


def fmt(values, digits=3):
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(results, seeds):
    lines = ["| run | recipe | n | parameters total / active | forward FLOPs per token | bible | jargon | dictionary | python | mean of 4 | test mean of 4 | wall time (s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = {}
    for name, label, model in ROWS:
        runs = {s: d for s, d in runs_of(results, name).items() if s in seeds}
        if not runs:
            lines.append(f"| `{name}` | {label} | 0 | | | | | | | | | |")
            continue
        per = {d: [] for d in DOMAINS} | {"mean": [], "test": [], "wall": []}
        for seed, run_dir in sorted(runs.items()):
            s = summary(run_dir, model)
            for d in DOMAINS:
                per[d].append(s[d])
            per["mean"].append(statistics.mean(s[d] for d in DOMAINS))
            per["test"].append(statistics.mean(s["test"][d] for d in DOMAINS))
            per["wall"].append(wall_seconds(run_dir))
        f, g = model_group(sorted(runs.values())[0], model)
        total, active, flops = counts(g)
        f.close()
        rows[(name, model)] = per
        lines.append(f"| `{name}` | {label} | {len(runs)} | {total:,} / {active:,} | {flops / 1e6:.2f} M | "
                     + " | ".join(fmt(per[d]) for d in DOMAINS) + f" | **{fmt(per['mean'])}** | {fmt(per['test'])} | "
                     + (f"{statistics.mean(per['wall']):.0f} |" if model not in ("dense", "seed") else "(the run above) |"))
    return "\n".join(lines), rows


def bar_chart(rows, path):
    """Grouped bars: val bits per byte per domain (mean over seeds, ± sd), one colour per recipe."""
    keys = [(n, m) for n, _, m in ROWS if (n, m) in rows]
    colours = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f3b57"]
    groups = DOMAINS + ["mean"]
    W, H, left, top, bottom = 960, 420, 60, 30, 150
    lo, hi = 2.0, max(max(rows[k][g]) for k in keys for g in groups) + 0.1
    gw = (W - left - 20) / len(groups)
    bw = gw * 0.85 / len(keys)
    y = lambda v: top + (H - top - bottom) * (1 - (v - lo) / (hi - lo))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">Validation bits per byte per domain (lower is better), mean ± sd over seeds, equal training tokens</text>']
    step = next(s for s in (0.1, 0.2, 0.5, 1.0, 2.0) if (hi - lo) / s <= 10)
    for t in np.arange(lo, hi, step):
        out.append(f'<line x1="{left}" x2="{W - 20}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:.1f}</text>')
    for gi, g in enumerate(groups):
        x0 = left + gi * gw + gw * 0.075
        out.append(f'<text x="{x0 + gw * 0.425:.1f}" y="{H - bottom + 18}" text-anchor="middle">{g if g != "mean" else "mean of 4"}</text>')
        for ki, k in enumerate(keys):
            vals = rows[k][g]
            m = statistics.mean(vals)
            sd = statistics.stdev(vals) if len(vals) > 1 else 0
            x = x0 + ki * bw
            out.append(f'<rect x="{x:.1f}" y="{y(m):.1f}" width="{bw * 0.9:.1f}" height="{y(lo) - y(m):.1f}" fill="{colours[ki % len(colours)]}"/>')
            if sd > 0:
                cx = x + bw * 0.45
                out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(m - sd):.1f}" y2="{y(m + sd):.1f}" stroke="black"/>')
    for ki, k in enumerate(keys):
        lx, ly = left + (ki % 3) * 300, H - bottom + 40 + (ki // 3) * 20
        label = k[0] + {"fused": " (before fine-tuning)", "dense": " (its dense start)", "seed": " (its seed)"}.get(k[1], "")
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{colours[ki % len(colours)]}"/>'
                   f'<text x="{lx + 18}" y="{ly}">{label}</text>')
    out.append(f'<text x="{left}" y="{H - 8}" fill="#555">y axis starts at {lo}; bars: mean over seeds; whiskers: ± 1 sd; data: each domain\'s val split (10 % of its text)</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


def router_load(run_dir, windows_per_domain=32):
    """Per MoE block, the share of each val domain's top-k assignments each expert receives,
    recomputed with numpy from the final MoE LM's checkpoint and the val tokens alone."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import transformer_forward as tf
    f, g = model_group(run_dir, "final")
    P, cfg = tf.load(g)
    f.close()
    moe = cfg["moe"]
    T = cfg["context"]
    with h5py.File(os.path.join(run_dir, "tasks", "data.h5"), "r") as d:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in d["data/domains"][()]]
        tokens, domain = d["data/val/tokens"][()], d["data/val/domain"][()]
    loads = np.zeros((len(moe["blocks"]), len(names), moe["experts"]))
    for di in range(len(names)):
        stream = tokens[domain == di].astype(np.int64)
        starts = np.linspace(0, len(stream) - T - 1, windows_per_domain).astype(int)
        routing = {}
        tf.logits_of(P, cfg, np.stack([stream[s:s + T] for s in starts]), routing)
        for row, i in enumerate(sorted(moe["blocks"])):
            loads[row, di] = routing[i]
    return names, loads / loads.sum(2, keepdims=True)


def heatmaps(names, loads, path, title):
    L, D, E = loads.shape
    cell, left, top = 38, 90, 50
    W = left + L * (E * cell + 30) + 10
    H = top + D * cell + 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>', f'<text x="10" y="18" font-size="14">{title}</text>']
    for i in range(L):
        x0 = left + i * (E * cell + 30)
        out.append(f'<text x="{x0 + E * cell / 2}" y="{top - 8}" text-anchor="middle">block {i}</text>')
        for d in range(D):
            if i == 0:
                out.append(f'<text x="{left - 6}" y="{top + d * cell + cell / 2 + 4}" text-anchor="end">{names[d]}</text>')
            for e in range(E):
                v = loads[i, d, e]
                shade = int(255 * (1 - v))
                out.append(f'<rect x="{x0 + e * cell}" y="{top + d * cell}" width="{cell - 2}" height="{cell - 2}" fill="rgb({shade},{shade},255)"/>'
                           f'<text x="{x0 + e * cell + cell / 2 - 1}" y="{top + d * cell + cell / 2 + 4}" text-anchor="middle" fill="{"white" if v > 0.5 else "black"}">{v:.2f}</text>')
        for e in range(E):
            out.append(f'<text x="{x0 + e * cell + cell / 2}" y="{top + D * cell + 14}" text-anchor="middle">e{e}</text>')
    out.append(f'<text x="10" y="{H - 8}" fill="#555">share of each val domain\'s top-k assignments per expert (rows sum to 1); expert i was trained on domain i; 32 val windows per domain, numpy recomputation</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--images")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    text, rows = table(args.results, seeds)
    print(text)
    if args.images:
        bar_chart(rows, os.path.join(args.images, "lm-study-bpb.svg"))
        btx = runs_of(args.results, "lm-btx")
        if 0 in btx:
            names, loads = router_load(btx[0])
            heatmaps(names, loads, os.path.join(args.images, "lm-btx-router-load.svg"),
                     "lm-btx (seed 0): where each domain's tokens go, per MoE block")
            print("\nBTX router load per domain (seed 0), block × domain × expert:")
            for i in range(loads.shape[0]):
                print(f"block {i}: " + "; ".join(f"{n} " + " ".join(f"{v:.2f}" for v in loads[i, d]) for d, n in enumerate(names)))


if __name__ == "__main__":
    main()
