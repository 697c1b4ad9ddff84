#!/usr/bin/env python3
"""Independent PyTorch reference for moe-run's MoE layer (issue 4, item 7).

Usage: torch_reference.py FILE.h5 [FILE.h5 ...]

Each file (written by Tests/TorchReferenceTests) holds one MoE layer's configuration (attribute
`config`, JSON), its parameters under the checkpoint names (`router/weight [E, hidden]`,
`experts/w1 [E, ffn, hidden]`, `experts/b1 [E, ffn]`, `experts/w2 [E, hidden, ffn]`,
`experts/b2 [E, hidden]`), a batch `x [T, hidden]`, an upstream gradient `dy`, and what moe-run
computed: `y`, `aux`, `z`, `aux_weighted`, `grad/<parameter>` and `dx`.

The layer is rebuilt here from the documented maths only (ARCHITECTURE §2, docs/spec.md, the doc
comments of MoELayer/MoERouter), not from the Swift code, in the style of a plain PyTorch MoE:
every expert runs densely on every token and the outputs are combined through a sparse [T, E]
gate matrix, and autograd does the backward of

    loss = Σ dy ⊙ y + aux_loss · aux / L + z_loss · z / L

Maths:
  logits z = x · Wᵀ; p = softmax(z) in float32, or p = σ(z) with score "sigmoid" (DeepSeek-V3).
  With balance "bias", the file holds router/expert_bias b [E] (a constant: no gradient); token
    choice takes the k largest p + b, and the gates are p alone (as below); capacity priority by p.
  Token choice (topk, switch = top-1): each token's k most probable experts (torch.topk; the
    inputs are random floats, so exact ties, which moe-run breaks to the lower index, do not
    occur: the script checks the margins and reports the smallest). Gates g = p, or
    p / Σ_selected p with normalize_topk and k > 1 (docs/spec.md: normalize_topk applies with
    k > 1 only; Switch keeps g = p).
  Capacity C = max(min_capacity, ceil(k·T/E · capacity_factor)); null = dropless. Each expert
    keeps at most C of its assignments, in priority order:
      probs:    highest p first, ties by slot t·k + j (stable sort);
      position: choice rank j first, then token t (GShard / Switch order).
    A dropped assignment contributes nothing (its gate is 0); renormalisation uses all k choices.
  Expert choice: each expert takes its top-C tokens by p (C as above, at most T), gate = p.
  FFN_e(x) = W2_e · GELU(W1_e · x + b1_e) + b2_e, exact erf GELU; y_t = Σ_e G_te · FFN_e(x_t).
  aux = E · Σ_i f_i · P_i, f_i = fraction of the T·k selections (before capacity) choosing i (a
    count, not differentiated), P_i = mean_t p̂_ti (p̂ = p for softmax, p̂_ti = p_ti / Σ_j p_tj for
    sigmoid); expert choice has no load-balancing loss (docs/spec.md), so aux = 0 there. The
    loss adds aux_loss · aux / L only with balance "aux_loss" (the default); aux is still compared.
  z = mean_t (logsumexp_j z_tj)².

Comparison: per tensor, ‖a − b‖ / max(‖b‖, 1e-12) (a = moe-run, b = torch), all to 1e-4.
Prints one line per case ("case NAME: ok ..." or "case NAME: FAIL ...") and closes with
"ok: N cases ..." (exit 0) or "FAIL: ..." (exit 1).
"""

import json
import math
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

TOLERANCE = 1e-4
TINY = 1e-12

torch.set_default_dtype(torch.float32)
torch.manual_seed(0)


def load(f, name):
    return torch.from_numpy(np.asarray(f[name][()], dtype=np.float32))


def capacity(cfg, tokens, k, experts):
    cf = cfg.get("capacity_factor")
    if cf is None:
        return None
    return max(int(cfg["min_capacity"]), math.ceil(k * tokens / experts * cf))


def token_choice_gates(p, cfg, k, bias=None):
    """[T, E] combine weights of a token-choice router, the chosen experts, the smallest margin."""
    T, E = p.shape
    chooser = p.detach() if bias is None else p.detach() + bias
    top_c, top_i = torch.topk(chooser, k + 1 if k < E else k, dim=-1)  # sorted, largest first
    margin = (top_c[:, k - 1] - top_c[:, k]).min().item() if k < E else float("inf")
    top_i = top_i[:, :k]
    top_p = torch.gather(p, 1, top_i)  # the gates never contain the bias
    if cfg["normalize_topk"] and k > 1:
        gates = top_p / top_p.sum(dim=-1, keepdim=True)
    else:
        gates = top_p

    keep = torch.ones(T, k, dtype=torch.bool)
    cap = capacity(cfg, T, k, E)
    cut_margin = float("inf")
    if cap is not None:
        slots_expert = top_i.reshape(-1)  # slot s = t·k + j
        slots_p = top_p.detach().reshape(-1)
        if cfg["drop_policy"] == "probs":
            order = torch.sort(slots_p, descending=True, stable=True).indices
        elif cfg["drop_policy"] == "position":
            order = top_i.new_tensor(np.arange(T * k).reshape(T, k).T.reshape(-1))  # (j, t) order
        else:
            raise ValueError("unknown drop_policy " + cfg["drop_policy"])
        # Position of each slot within its expert's queue (1-based), GShard-style cumsum.
        one_hot = F.one_hot(slots_expert[order], E)
        rank = (one_hot.cumsum(dim=0) * one_hot).sum(dim=-1)
        kept_sorted = rank <= cap
        keep_flat = torch.empty_like(kept_sorted)
        keep_flat[order] = kept_sorted
        keep = keep_flat.view(T, k)
        if cfg["drop_policy"] == "probs":
            # How close the last kept and first dropped assignment of each full expert are.
            for e in range(E):
                pe = slots_p[order][slots_expert[order] == e]
                if pe.numel() > cap:
                    cut_margin = min(cut_margin, (pe[cap - 1] - pe[cap]).item())
    G = torch.zeros(T, E).scatter_add(1, top_i, gates * keep)
    selections = torch.bincount(top_i.reshape(-1), minlength=E).to(torch.float32)
    return G, selections, min(margin, cut_margin), keep


def expert_choice_gates(p, cfg, k):
    T, E = p.shape
    cap = capacity(cfg, T, k, E)
    if cap is None:
        cap = max(int(cfg["min_capacity"]), math.ceil(k * T / E))
    cap = min(T, cap)
    pt = p.t()  # [E, T]
    m = min(cap + 1, T)
    top_p, top_i = torch.topk(pt, m, dim=-1)
    margin = (top_p[:, cap - 1] - top_p[:, cap]).min().item() if cap < T else float("inf")
    G = torch.zeros(E, T).scatter_add(1, top_i[:, :cap], top_p[:, :cap]).t()
    return G, margin


def reference(f):
    cfg = json.loads(f.attrs["config"])
    L = int(f.attrs["moe_layers"])
    activation = f.attrs["activation"]
    assert activation == "gelu", "the reference implements GELU experts only, got " + activation
    kind = cfg["router"]
    k = 1 if kind == "switch" else int(cfg["k"])
    if kind not in ("topk", "switch", "expert_choice"):
        raise ValueError("router type %r is not covered by the reference" % kind)

    x = load(f, "x").requires_grad_(True)
    dy = load(f, "dy")
    params = {name: load(f, name).requires_grad_(True)
              for name in ("router/weight", "experts/w1", "experts/b1", "experts/w2", "experts/b2")}
    W, w1, b1, w2, b2 = (params[n] for n in ("router/weight", "experts/w1", "experts/b1", "experts/w2", "experts/b2"))
    T = x.shape[0]
    E = W.shape[0]

    logits = x @ W.t()
    sigmoid = cfg.get("score", "softmax") == "sigmoid"
    p = torch.sigmoid(logits) if sigmoid else torch.softmax(logits, dim=-1)
    z = torch.logsumexp(logits, dim=-1).pow(2).mean()
    bias = load(f, "router/expert_bias") if cfg.get("balance", "aux_loss") == "bias" else None

    if kind == "expert_choice":
        G, margin = expert_choice_gates(p, cfg, k)
        aux = torch.zeros(())
    else:
        G, selections, margin, _ = token_choice_gates(p, cfg, k, bias)
        f_frac = selections / (T * k)
        P = (p / p.sum(dim=-1, keepdim=True) if sigmoid else p).mean(dim=0)
        aux = E * (f_frac * P).sum()

    # Every expert on every token; the sparse gate matrix does the routing.
    h = torch.einsum("th,efh->tef", x, w1) + b1  # [T, E, ffn]
    out = torch.einsum("tef,ehf->teh", F.gelu(h), w2) + b2  # [T, E, hidden]
    y = torch.einsum("te,teh->th", G, out)

    aux_coefficient = cfg["aux_loss"] if cfg.get("balance", "aux_loss") == "aux_loss" else 0.0
    aux_weighted = aux_coefficient * aux / L + cfg["z_loss"] * z / L
    loss = (dy * y).sum() + aux_weighted
    loss.backward()

    computed = {"y": y.detach(), "aux": aux.detach(), "z": z.detach(), "aux_weighted": aux_weighted.detach(),
                "dx": x.grad}
    for name, t in params.items():
        computed["grad/" + name] = t.grad
    candidates = E * min(T, capacity(cfg, T, k, E)) if kind == "expert_choice" else T * k
    return computed, G.detach(), margin, candidates


def relative_error(a, b):
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        return float("inf")
    return (torch.linalg.vector_norm(a - b) / max(torch.linalg.vector_norm(b).item(), TINY)).item()


CLASSES = [
    ("forward", ["y"]),
    ("losses", ["aux", "z", "aux_weighted"]),
    ("router grad", ["grad/router/weight"]),
    ("expert grads", ["grad/experts/w1", "grad/experts/b1", "grad/experts/w2", "grad/experts/b2"]),
    ("dx", ["dx"]),
]


def check(path):
    with h5py.File(path, "r") as f:
        name = f.attrs["case"]
        ref, G, margin, candidates = reference(f)
        swift = {key: load(f, key) for key in ref}
        # Routing as moe-run grouped it: expert e serves tokens token[offsets[e]:offsets[e+1]].
        offsets = f["routing/offsets"][()]
        tokens = f["routing/token"][()]
        gates = f["routing/gate"][()]
    E = G.shape[1]
    G_swift = torch.zeros_like(G)
    for e in range(E):
        for a in range(offsets[e], offsets[e + 1]):
            G_swift[tokens[a], e] = float(gates[a])
    routing_diff = int(((G_swift != 0) != (G != 0)).sum())
    errors = {key: relative_error(swift[key], ref[key]) for key in ref}
    failures = [key for key, err in errors.items() if not err <= TOLERANCE]
    if routing_diff:
        failures.insert(0, "routing (%d assignments differ)" % routing_diff)
    worst_key = max(errors, key=errors.get)
    parts = []
    for cls, keys in CLASSES:
        k = max(keys, key=lambda key: errors[key])
        parts.append("%s %.1e" % (cls, errors[k]))
    status = "ok" if not failures else "FAIL"
    line = "case %s: %s  worst %.2e (%s)  %s  assignments %d of %d  margin %.1e" % (
        name, status, errors[worst_key], worst_key, "  ".join(parts), int((G != 0).sum()), candidates, margin)
    return name, status, errors, failures, line, routing_diff, margin


def run_checks(paths, check_file, usage):
    """Runs `check_file(path) -> (name, errors, failures, line, notes)` on every file, prints each
    case's line (and its notes and per-tensor errors when it failed), then the closing line.
    Returns the exit status: 0 when every case is within TOLERANCE, 1 otherwise, 2 without files."""
    if not paths:
        print(usage, file=sys.stderr)
        return 2
    print("torch %s, float32, tolerance %.0e (norm-based relative error per tensor)" % (torch.__version__, TOLERANCE))
    worst = (0.0, "", "")
    failed = []
    for path in paths:
        name, errors, failures, line, notes = check_file(path)
        print(line)
        for key in sorted(errors):
            if failures:
                print("    %-20s %.3e%s" % (key, errors[key], "  <-- over tolerance" if key in failures else ""))
        for note in notes:
            print("    " + note)
        for key, err in errors.items():
            if err > worst[0]:
                worst = (err, name, key)
        if failures:
            failed.append("%s: %s" % (name, ", ".join(failures)))
    if failed:
        print("FAIL: %d of %d cases: %s" % (len(failed), len(paths), "; ".join(failed)))
        return 1
    print("ok: %d cases match torch, worst relative error %.2e (%s, %s)" % (len(paths), worst[0], worst[1], worst[2]))
    return 0


def check_moe_file(path):
    name, status, errors, failures, line, routing_diff, margin = check(path)
    notes = []
    if routing_diff:
        notes.append("routing differs from the reference in %d assignments (smallest top-k/capacity margin %.1e)"
                     % (routing_diff, margin))
    return name, errors, failures, line, notes


def main(paths):
    return run_checks(paths, check_moe_file, "usage: torch_reference.py FILE.h5 [FILE.h5 ...]")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
