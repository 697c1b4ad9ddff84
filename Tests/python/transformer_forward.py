#!/usr/bin/env python3
"""Recomputes a moe-run transformer LM's loss with numpy from a checkpoint file alone
(ARCHITECTURE §5.3: the layout and `config` must be enough to rebuild the forward pass).

Usage: transformer_forward.py CHECKPOINT.h5 GROUP WINDOWS.h5

CHECKPOINT.h5/GROUP is a model checkpoint written by moe-run (attributes format="moe-run/1",
kind="model", config JSON with kind="transformer"); WINDOWS.h5 holds `tokens` int [B, T + 1].
Nothing else is read: not moe-run's code, not its other files. Prints one JSON line
{"loss": mean next-token cross-entropy in nats, "correct": top-1 hits, "scored": B·T}.

The forward pass, in float64, exactly as §5.3 states it (GPT-2, pre-norm; d = hidden / heads):
    x_0 = embed/weight[tokens 0..T-1] + pos/weight[0..T-1]
    h = x + Attn(LN(x))·out/weightᵀ + out/bias, LN = blocks/<i>/attn/norm,
        q|k|v = LN(x)·qkv/weightᵀ + qkv/bias split in thirds, head j = columns j·d..(j+1)·d,
        per head softmax(q·kᵀ/√d + causal mask)·v, heads concatenated in order
    x' = h + F(LN(h)), LN = blocks/<i>/norm, F = blocks/<i>/ffn: w2·act(w1·u + b1) + b2
         or blocks/<i>/moe: Σ_selected gate·expert_e(u) with the config's router, plus
         Σ_s shared_s(u) over the moe.shared_experts always-active shared experts
         (blocks/<i>/moe/shared/{w1 [S, shared_ffn, hidden], b1, w2, b2}, gate 1)
    logits = LN(x)·Wᵀ, LN = norm, W = head/weight (embed/weight when tie_embeddings)
LayerNorm: biased variance, eps = config.norm_eps. Activations: exact erf GELU, ReLU, SiLU.
MoE routers implemented: topk / switch (softmax router, k most probable experts, gates
renormalised over the k when normalize_topk and k > 1), dropless (capacity_factor null); with
score: sigmoid the affinities are σ(logits) per expert, and with balance: bias the k experts are
chosen on affinity + router/expert_bias while the gates stay the affinities (DeepSeek-V3).
"""

import json
import math
import sys

import h5py
import numpy as np

ERF = np.vectorize(math.erf)
ACTIVATIONS = {
    "gelu": lambda x: 0.5 * x * (1 + ERF(x / math.sqrt(2))),
    "relu": lambda x: np.maximum(x, 0),
    "silu": lambda x: x / (1 + np.exp(-x)),
}


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention(u, P, prefix, heads):
    B, T, H = u.shape
    d = H // heads
    qkv = u @ P[prefix + "qkv/weight"].T + P[prefix + "qkv/bias"]
    q, k, v = qkv[..., :H], qkv[..., H:2 * H], qkv[..., 2 * H:]
    out = np.empty_like(u)
    mask = np.triu(np.ones((T, T), dtype=bool), 1)
    for j in range(heads):
        cols = slice(j * d, (j + 1) * d)
        s = q[..., cols] @ np.swapaxes(k[..., cols], 1, 2) / math.sqrt(d)
        s[:, mask] = -np.inf
        out[..., cols] = softmax(s) @ v[..., cols]
    return out @ P[prefix + "out/weight"].T + P[prefix + "out/bias"]


def moe(u, P, prefix, m, act, counts=None):
    """The MoE FFN; `counts` [E], when given, accumulates each expert's top-k selections."""
    if m["router"] not in ("topk", "switch") or m["capacity_factor"] is not None:
        sys.exit(f"transformer_forward.py: router {m['router']} with capacity {m['capacity_factor']} is not implemented here")
    k = 1 if m["router"] == "switch" else m["k"]
    shape = u.shape
    x = u.reshape(-1, shape[-1])
    logits = x @ P[prefix + "router/weight"].T
    # Affinities: softmax, or σ per expert (score: sigmoid); selection on p + b (balance: bias), gates p.
    p = 1 / (1 + np.exp(-logits)) if m.get("score", "softmax") == "sigmoid" else softmax(logits)
    b = P[prefix + "router/expert_bias"] if m.get("balance", "aux_loss") == "bias" else np.zeros(p.shape[1])
    y = np.zeros_like(x)
    for t in range(x.shape[0]):
        chosen = sorted(range(p.shape[1]), key=lambda e: (-(p[t, e] + b[e]), e))[:k]
        gates = p[t, chosen]
        if counts is not None:
            counts[chosen] += 1
        if m["normalize_topk"] and k > 1:
            gates = gates / gates.sum()
        for e, g in zip(chosen, gates):
            hid = act(P[prefix + "experts/w1"][e] @ x[t] + P[prefix + "experts/b1"][e])
            y[t] += g * (P[prefix + "experts/w2"][e] @ hid + P[prefix + "experts/b2"][e])
    for s in range(m.get("shared_experts", 0)):  # always active, gate 1
        hid = act(x @ P[prefix + "shared/w1"][s].T + P[prefix + "shared/b1"][s])
        y += hid @ P[prefix + "shared/w2"][s].T + P[prefix + "shared/b2"][s]
    return y.reshape(shape)


def load(group):
    """The parameters (float64, by checkpoint path) and the config of a checkpoint group."""
    assert group.attrs["format"] == "moe-run/1" and group.attrs["kind"] == "model", "not a moe-run model checkpoint"
    cfg = json.loads(group.attrs["config"])
    assert cfg["kind"] == "transformer", f"kind is {cfg['kind']}"
    P = {}
    group.visititems(lambda n, o: P.__setitem__(n, np.asarray(o[()], dtype=np.float64)) if isinstance(o, h5py.Dataset) else None)
    return P, cfg


def logits_of(P, cfg, inputs, routing=None):
    """Logits [B, T, vocab] of token windows `inputs` [B, T] (the forward pass above); `routing`,
    a dict when given, receives per MoE block i the selections per expert `routing[i]` [E]."""
    eps, act = cfg["norm_eps"], ACTIVATIONS[cfg["activation"]]
    T = inputs.shape[1]
    x = P["embed/weight"][inputs] + P["pos/weight"][:T]
    moe_blocks = set(cfg["moe"]["blocks"]) if cfg["moe"] else set()
    for i in range(cfg["blocks"]):
        b = f"blocks/{i}/"
        x = x + attention(layer_norm(x, P[b + "attn/norm/weight"], P[b + "attn/norm/bias"], eps), P, b + "attn/", cfg["heads"])
        u = layer_norm(x, P[b + "norm/weight"], P[b + "norm/bias"], eps)
        if i in moe_blocks:
            counts = None if routing is None else routing.setdefault(i, np.zeros(cfg["moe"]["experts"]))
            x = x + moe(u, P, b + "moe/", cfg["moe"], act, counts)
        else:
            x = x + act(u @ P[b + "ffn/w1"].T + P[b + "ffn/b1"]) @ P[b + "ffn/w2"].T + P[b + "ffn/b2"]
    x = layer_norm(x, P["norm/weight"], P["norm/bias"], eps)
    W = P["embed/weight"] if cfg["tie_embeddings"] else P["head/weight"]
    assert cfg["tie_embeddings"] == ("head/weight" not in P), "head/weight must be absent exactly when tie_embeddings"
    return x @ W.T


def scores(P, cfg, tokens):
    """(Σ next-token NLL in nats, top-1 hits, scored) of windows `tokens` [B, T + 1]."""
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    logits = logits_of(P, cfg, inputs)
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    return float(nll.sum()), int((logits.argmax(-1) == targets).sum()), int(nll.size)


def main(path, group_path, windows_path):
    with h5py.File(path, "r") as f:
        P, cfg = load(f[group_path])
    with h5py.File(windows_path, "r") as f:
        tokens = np.asarray(f["tokens"][()], dtype=np.int64)
    total, correct, scored = scores(P, cfg, tokens)
    print(json.dumps({"loss": total / scored, "correct": correct, "scored": scored}))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: transformer_forward.py CHECKPOINT.h5 GROUP WINDOWS.h5")
    main(*sys.argv[1:])
