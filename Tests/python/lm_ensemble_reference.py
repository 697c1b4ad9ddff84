#!/usr/bin/env python3
"""Independent check of a Branch-Train-Merge ensemble of transformer LMs (kind "ensemble" whose
config has kind "transformer") with h5py + numpy only, from the checkpoint and a data file.

Usage: lm_ensemble_reference.py CHECKPOINT.h5 GROUP DATA.h5 SPLIT

DATA.h5 is in the tasks/data.h5 layout (ARCHITECTURE §5.4): /data/<SPLIT>/tokens and
/data/<SPLIT>/domain. Each domain's stream is cut into windows of context + 1 tokens at offsets
0, context, 2·context, ... (an incomplete last window dropped). Each expert's logits come from
transformer_forward.logits_of (the §5.3 forward pass rebuilt from `experts/<i>`), and per window,
with ℓ_j(s) = log p_j(x_{s+1} | x_≤s) and the stored prior π = posterior/prior,

    log w_j(t) = log π_j + Σ_{s<t} ℓ_j(s) − logsumexp_k (same for k)
    log p(v | x_≤t) = logsumexp_j (log w_j(t) + log p_j(v | x_≤t))

Prints one JSON line {"loss": mean NLL in nats, "correct": top-1 hits of the mixture, "scored": N}.
"""
import json
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transformer_forward import load, logits_of  # noqa: E402


def logsumexp(z, axis):
    m = np.max(z, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.exp(z - m).sum(axis=axis))


def windows(tokens, domain, context):
    rows = []
    for d in np.unique(domain):
        stream = tokens[domain == d]
        count = (len(stream) - 1) // context if len(stream) >= context + 1 else 0
        rows += [stream[i * context:i * context + context + 1] for i in range(count)]
    return np.array(rows, dtype=np.int64).reshape(-1, context + 1)


def load_ensemble(g):
    """(experts [(P, cfg)], prior [E]) of an LM ensemble checkpoint group."""
    assert g.attrs["format"] == "moe-run/1" and g.attrs["kind"] == "ensemble", "not an ensemble checkpoint"
    assert g.attrs["posterior"] == "prefix", g.attrs["posterior"]
    e = int(g.attrs["experts"])
    return [load(g[f"experts/{i}"]) for i in range(e)], np.asarray(g["posterior/prior"], dtype=np.float64)


def scores(experts, prior, w):
    """(Σ NLL in nats, top-1 hits, scored) of the ensemble on windows `w` [B, T + 1]."""
    inputs, targets = w[:, :-1], w[:, 1:]
    logp = []
    for P, cfg in experts:
        z = logits_of(P, cfg, inputs)  # [B, T, V]
        logp.append(z - logsumexp(z, -1)[..., None])
    logp = np.stack(logp)  # [E, B, T, V]
    ell = np.take_along_axis(logp, np.broadcast_to(targets[None, ..., None], logp.shape[:3] + (1,)), -1)[..., 0]  # [E, B, T]
    evidence = np.log(prior)[:, None, None] + np.concatenate([np.zeros_like(ell[:, :, :1]), np.cumsum(ell, -1)[:, :, :-1]], -1)
    log_w = evidence - logsumexp(evidence, 0)[None]
    mixture = logsumexp(log_w[..., None] + logp, 0)  # [B, T, V]
    nll = -np.take_along_axis(mixture, targets[..., None], -1)[..., 0]
    return float(nll.sum()), int((mixture.argmax(-1) == targets).sum()), int(nll.size)


def main(path, group_path, data_path, split):
    with h5py.File(path, "r") as f:
        experts, prior = load_ensemble(f[group_path])
    with h5py.File(data_path, "r") as f:
        tokens = np.asarray(f[f"data/{split}/tokens"][()], dtype=np.int64)
        domain = np.asarray(f[f"data/{split}/domain"][()], dtype=np.int64)
    total, correct, scored = scores(experts, prior, windows(tokens, domain, experts[0][1]["context"]))
    print(json.dumps({"loss": total / scored, "correct": correct, "scored": scored}))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: lm_ensemble_reference.py CHECKPOINT.h5 GROUP DATA.h5 SPLIT")
    main(*sys.argv[1:])
