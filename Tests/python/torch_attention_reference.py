#!/usr/bin/env python3
"""Independent PyTorch reference for moe-run's causal self-attention layer (issue 13, item 4).

Usage: torch_attention_reference.py FILE.h5 [FILE.h5 ...]

Each file (written by Tests/TorchReferenceTests/AttentionTorchReferenceTests.swift) holds one
layer's shape (attributes `batch`, `tokens`, `hidden`, `heads`), its parameters under the
checkpoint names of ARCHITECTURE §5.3 without the `blocks/<i>/attn/` prefix (`qkv/weight
[3H, H]`, `qkv/bias [3H]`, `out/weight [H, H]`, `out/bias [H]`), an input `x [B·T, H]`, an
upstream gradient `dy`, and what moe-run computed: `y`, `dx` and `grad/<parameter>`.

The layer is rebuilt here from ARCHITECTURE §5.3 only, as nanoGPT's CausalSelfAttention writes it
(explicit masked softmax, not the Swift code):

    q, k, v = split(x · W_qkvᵀ + b_qkv, H)       rows 0..H-1 of W_qkv are q, H..2H-1 k, 2H..3H-1 v
    head j = columns j·d ..< (j+1)·d of each, d = H / heads
    A_j = softmax(q_j k_jᵀ / √d + causal mask) v_j,  A = heads concatenated in order
    y = A · W_outᵀ + b_out

and autograd does the backward of loss = Σ dy ⊙ y. The forward is also recomputed with
F.scaled_dot_product_attention(is_causal=True) as a second, library-side reference.

Comparison: per tensor, ‖a − b‖ / max(‖b‖, 1e-12) (a = moe-run, b = torch), all to 1e-4.
Prints one line per case ("case NAME: ok ..." or "case NAME: FAIL ...") and closes with
"ok: N cases ..." (exit 0) or "FAIL: ..." (exit 1).
"""

import math
import os
import sys

import h5py
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import TOLERANCE, load, relative_error, run_checks  # noqa: E402

PARAMETERS = ("qkv/weight", "qkv/bias", "out/weight", "out/bias")


def reference(f):
    B, T, H, nh = (int(f.attrs[k]) for k in ("batch", "tokens", "hidden", "heads"))
    d = H // nh
    x = load(f, "x").reshape(B, T, H).requires_grad_(True)
    dy = load(f, "dy").reshape(B, T, H)
    params = {name: load(f, name).requires_grad_(True) for name in PARAMETERS}

    q, k, v = F.linear(x, params["qkv/weight"], params["qkv/bias"]).split(H, dim=2)
    q, k, v = (t.view(B, T, nh, d).transpose(1, 2) for t in (q, k, v))  # [B, nh, T, d]
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    att = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    a = (att @ v).transpose(1, 2).contiguous().view(B, T, H)
    y = F.linear(a, params["out/weight"], params["out/bias"])
    (dy * y).sum().backward()

    with torch.no_grad():
        a_sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, H)
        y_sdpa = F.linear(a_sdpa, params["out/weight"], params["out/bias"])

    computed = {"y": y.detach().reshape(B * T, H), "dx": x.grad.reshape(B * T, H)}
    for name, t in params.items():
        computed["grad/" + name] = t.grad
    return computed, y_sdpa.reshape(B * T, H)


def check(path):
    with h5py.File(path, "r") as f:
        name = f.attrs["case"]
        shape = "B %d T %d H %d heads %d" % tuple(int(f.attrs[k]) for k in ("batch", "tokens", "hidden", "heads"))
        ref, y_sdpa = reference(f)
        swift = {key: load(f, key) for key in ref}
    errors = {key: relative_error(swift[key], ref[key]) for key in ref}
    errors["y (sdpa)"] = relative_error(swift["y"], y_sdpa)
    failures = [key for key, err in errors.items() if not err <= TOLERANCE]
    worst_key = max(errors, key=errors.get)
    status = "ok" if not failures else "FAIL"
    detail = "  ".join("%s %.1e" % (key, errors[key]) for key in errors)
    line = "case %s: %s  %s  worst %.2e (%s)  %s" % (name, status, shape, errors[worst_key], worst_key, detail)
    return name, errors, failures, line, []


def main(paths):
    return run_checks(paths, check, "usage: torch_attention_reference.py FILE.h5 [FILE.h5 ...]")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
