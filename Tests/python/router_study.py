#!/usr/bin/env python3
"""README's "Router balance on real text" (issue 16 item 6), from the runs' HDF5 files alone.

Reads the trials of experiments/lm-router-balance.yaml (softmax | sigmoid scores × aux_loss |
bias balancing) and experiments/lm-router-shared.yaml (sigmoid + loss-free + 1 shared expert +
16 fine-grained experts) that `moe-run sweep SPEC --out RESULTS` wrote, groups them by the
router of their final model (`/models/final` config: moe.score, moe.balance, shared_experts) and
prints the markdown table: per variant, n seeds, parameters total / active, val bits per byte
per domain (mean ± sd), the maximal violation and the dropped fraction over training, wall time.

    python Tests/python/router_study.py RESULTS_DIR [--images docs/images]

Maximal violation (Wang et al. 2024, MaxVio): max_e c_e / mean(c) − 1, c = each expert's
selections before capacity, per log window of 20 training steps (`/router/<i>/max_violation`),
averaged over the 4 MoE blocks; "training" = the mean over all windows, "end" = over the last
10 % of them. Dropped = Σ dropped / Σ routed selections at capacity factor 1.0
(`/router/<i>/dropped_fraction`), the mean over windows and blocks. With --images, the figure
router-balance-violation.svg: the block-mean violation over training, mean over seeds.
"""

import argparse
import glob
import json
import os
import statistics

import h5py
import numpy as np

import lm_study

VARIANTS = [  # (spec, score, balance, shared experts, label) in table order
    ("lm-router-balance", "softmax", "aux_loss", 0, "softmax + aux loss (Switch; moe-run's default)"),
    ("lm-router-balance", "softmax", "bias", 0, "softmax + loss-free bias"),
    ("lm-router-balance", "sigmoid", "aux_loss", 0, "sigmoid + aux loss"),
    ("lm-router-balance", "sigmoid", "bias", 0, "sigmoid + loss-free bias (DeepSeek-V3)"),
    ("lm-router-shared", "sigmoid", "bias", 1, "sigmoid + loss-free + 1 shared expert, 16 × 128 routed, top-3"),
]


def trials(results):
    """{(spec, score, balance, shared): {seed: run directory}} of the complete runs."""
    out = {}
    for spec in sorted({v[0] for v in VARIANTS}):
        for path in sorted(glob.glob(os.path.join(results, spec, "*", "run.h5"))):
            with h5py.File(path, "r") as f:
                if f.attrs["status"] != "complete":
                    continue
                moe = json.loads(f["models/final"].attrs["config"])["moe"]
                key = (spec, moe.get("score", "softmax"), moe.get("balance", "aux_loss"), moe.get("shared_experts", 0))
                out.setdefault(key, {})[int(f.attrs["seed"])] = os.path.dirname(path)
    return out


def router_series(run_dir, name):
    """(steps, the block-mean of /router/<i>/<name> per log row) of the run's train task."""
    with h5py.File(os.path.join(run_dir, "tasks", "train.h5"), "r") as f:
        blocks = sorted(f["router"], key=int)
        steps = np.asarray(f[f"router/{blocks[0]}/step"][()], dtype=np.float64)
        values = np.mean([np.asarray(f[f"router/{b}/{name}"][()], dtype=np.float64) for b in blocks], axis=0)
    return steps, values


def table(results):
    found = trials(results)
    lines = ["| router | n | parameters total / active | bible | jargon | dictionary | python | mean of 4 | max violation, training | max violation, last 10 % | dropped at capacity 1.0 | wall time (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    curves = {}
    for spec, score, balance, shared, label in VARIANTS:
        runs = found.get((spec, score, balance, shared), {})
        if not runs:
            lines.append(f"| {label} | 0 | | | | | | | | | | |")
            continue
        per = {d: [] for d in lm_study.DOMAINS} | {"mean": [], "vio": [], "end": [], "drop": [], "wall": []}
        vio_curves = []
        for seed, run_dir in sorted(runs.items()):
            s = lm_study.summary(run_dir, "final")
            for d in lm_study.DOMAINS:
                per[d].append(s[d])
            per["mean"].append(statistics.mean(s[d] for d in lm_study.DOMAINS))
            steps, vio = router_series(run_dir, "max_violation")
            _, drop = router_series(run_dir, "dropped_fraction")
            tail = max(1, len(vio) // 10)
            per["vio"].append(float(np.nanmean(vio)))
            per["end"].append(float(np.nanmean(vio[-tail:])))
            per["drop"].append(float(np.mean(drop)))
            per["wall"].append(lm_study.wall_seconds(run_dir))
            vio_curves.append((steps, vio))
        f, g = lm_study.model_group(sorted(runs.values())[0], "final")
        total, active, _ = lm_study.counts(g)
        f.close()
        curves[label] = vio_curves
        lines.append(f"| {label} | {len(runs)} | {total:,} / {active:,} | "
                     + " | ".join(lm_study.fmt(per[d]) for d in lm_study.DOMAINS) + f" | **{lm_study.fmt(per['mean'])}** | "
                     + f"{lm_study.fmt(per['vio'], 2)} | {lm_study.fmt(per['end'], 2)} | {lm_study.fmt([100 * x for x in per['drop']], 1)} % | "
                     + f"{statistics.mean(per['wall']):.0f} |")
    return "\n".join(lines), curves


def violation_chart(curves, path):
    """The block-mean maximal violation over training, mean over seeds, one line per variant."""
    colours = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1"]
    W, H, left, top, bottom, right = 900, 480, 60, 34, 160, 20
    series = []
    for label, runs in curves.items():
        n = min(len(s) for s, _ in runs)
        series.append((label, runs[0][0][:n], np.nanmean([v[:n] for _, v in runs], axis=0), len(runs)))
    xmax = max(s[1][-1] for s in series)
    ymax = max(float(np.nanmax(s[2])) for s in series) * 1.05
    x = lambda v: left + (W - left - right) * v / xmax
    y = lambda v: top + (H - top - bottom) * (1 - v / ymax)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">Maximal violation of the expert load over training (mean over 4 MoE blocks and the seeds)</text>']
    step = next(s for s in (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0) if ymax / s <= 8)
    for t in np.arange(0, ymax, step):
        out.append(f'<line x1="{left}" x2="{W - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:.2f}</text>')
    for t in range(0, int(xmax) + 1, 500):
        out.append(f'<text x="{x(t):.1f}" y="{H - bottom + 16}" text-anchor="middle">{t}</text>')
    out.append(f'<text x="{(left + W - right) / 2}" y="{H - bottom + 34}" text-anchor="middle">training step</text>')
    for i, (label, steps, vio, n) in enumerate(series):
        points = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in zip(steps, vio) if np.isfinite(v))
        out.append(f'<polyline fill="none" stroke="{colours[i % len(colours)]}" stroke-width="1.6" points="{points}"/>')
        ly = H - bottom + 56 + 16 * i
        out.append(f'<line x1="{left}" x2="{left + 24}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colours[i % len(colours)]}" stroke-width="3"/>'
                   f'<text x="{left + 30}" y="{ly}">{label} (n = {n})</text>')
    out.append(f'<text x="{W - right}" y="{H - 8}" text-anchor="end" fill="#555">max_e c_e / mean(c) − 1 per window of 20 steps (c = selections before capacity); 0 = even load</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--images")
    args = ap.parse_args()
    text, curves = table(args.results)
    print(text)
    if args.images and curves:
        violation_chart(curves, os.path.join(args.images, "router-balance-violation.svg"))


if __name__ == "__main__":
    main()
