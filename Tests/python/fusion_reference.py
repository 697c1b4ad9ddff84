#!/usr/bin/env python3
"""Independent numpy reference for moe-run's fusion methods (issue 6, item 2).

Usage: fusion_reference.py INPUT.json OUTPUT.json

INPUT (written by Tests/MoEFusionTests/NumpyReferenceTests.swift):
  tensors  [{"name", "shape"}]        tensor names in checkpoint order and their shapes
  base     {name: [float32 ...]}      θ₀, flat row-major
  models   [{name: [...]}]            θ_i
  fishers  [{name: [...]}]            diagonal Fisher F_i of each model
  cases    [{"id", "method", ...}]    what to compute (parameters below)
OUTPUT: {"results": {case id: {name: [float ...]}}}; the Swift test compares each tensor to what
moe-run computed, ‖a − b‖ / max(‖b‖, 1e-12) ≤ 1e-5.

Everything here is computed in float64 from the float32 inputs, from the papers and mergekit's
documented behaviour, not from the Swift code:

  average          θ = Σ w_i θ_i, w normalised to sum 1 when normalize (mergekit `linear`).
  val_loss         w = softmax(−loss / T) (a case returning {"weights": w}).
  task_arithmetic  θ = θ₀ + λ Σ w_i τ_i, τ_i = θ_i − θ₀ (Ilharco et al. 2023); / Σ w_i when normalize.
  ties             Yadav et al. 2023 as mergekit's `ties`: trim each τ_i to its k = int(density · n)
                   largest |τ| (at least 1; ties broken by lower flat index, i.e. a stable sort),
                   weight by w_i, elect the sign of the summed weighted mass (a zero sum elects +),
                   keep the entries whose sign equals the elected one (zeros never agree), sum them
                   and divide by the sum of the weights of the agreeing entries (1 where none agree)
                   when normalize; θ = θ₀ + λ · merged.
  dare_linear      Yu et al. 2024: τ̂ = τ ⊙ mask / density (rescale), then task arithmetic. The mask
  dare_ties        comes from the input (moe-run's counter-based RNG); dare_ties = the DARE drop,
                   then the TIES election and disjoint merge.
  slerp            mergekit's slerp (operands "a", "b": ["models", i], ["fishers", i] or ["base"]):
                   normalise copies (a norm ≤ eps is left as is), dot product; if
                   |dot| > threshold, lerp; else θ = sin((1−t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b on the
                   original tensors, Ω = arccos(dot).
  fisher           Matena & Raffel 2022 with additive smoothing:
                   θ = Σ w_i (F_i + ε) θ_i / Σ w_i (F_i + ε), w normalised.
"""

import json
import sys

import numpy as np

from fusion_recompute import task_merge


def tensors(spec, values):
    return {t["name"]: np.asarray(values[t["name"]], dtype=np.float32).astype(np.float64).reshape(t["shape"])
            for t in spec}


def weights_of(case, count):
    w = np.asarray(case.get("weights") or [1.0] * count, dtype=np.float64)
    return w


def average(models, case):
    w = weights_of(case, len(models))
    if case.get("normalize", True):
        w = w / w.sum()
    return {name: sum(wi * m[name] for wi, m in zip(w, models)) for name in models[0]}


def magnitude_trim(tau, density):
    if density >= 1:
        return tau.copy()
    flat = tau.reshape(-1)
    k = max(1, int(density * flat.size))
    keep = np.zeros(flat.size, dtype=bool)
    keep[np.argsort(-np.abs(flat), kind="stable")[:k]] = True
    return np.where(keep, flat, 0.0).reshape(tau.shape)


def merge_task_vectors(base, taus, w, lam, normalize, consensus):
    """taus: {name: [τ̂_i]} already sparsified; returns θ₀ + λ · merged, tensor by tensor as
    fusion_recompute.task_merge computes it (in float64)."""
    return {name: task_merge(b, np.stack(taus[name]), w, lam, normalize, consensus) for name, b in base.items()}


def task_vectors(base, models):
    return {name: [m[name] - b for m in models] for name, b in base.items()}


def slerp(a, b, t, threshold, eps):
    out = {}
    for name in a:
        x, y = a[name], b[name]
        nx, ny = np.linalg.norm(x), np.linalg.norm(y)
        ux = x / nx if nx > eps else x
        uy = y / ny if ny > eps else y
        dot = float(np.sum(ux * uy))
        if abs(dot) > threshold:
            out[name] = (1 - t) * x + t * y
            continue
        omega = np.arccos(np.clip(dot, -1.0, 1.0))
        s = np.sin(omega)
        out[name] = np.sin((1 - t) * omega) / s * x + np.sin(t * omega) / s * y
    return out


def fisher(models, fishers, case):
    w = weights_of(case, len(models))
    w = w / w.sum()
    eps = case["epsilon"]
    out = {}
    for name in models[0]:
        coeff = [wi * (f[name] + eps) for wi, f in zip(w, fishers)]
        out[name] = sum(c * m[name] for c, m in zip(coeff, models)) / sum(coeff)
    return out


def run_case(case, base, models, fishers, spec):
    method = case["method"]
    w = weights_of(case, len(models))
    lam = case.get("lambda", 1.0)
    normalize = case.get("normalize", True)
    if method == "average":
        return average(models, case)
    if method == "val_loss":
        losses = np.asarray(case["losses"], dtype=np.float64)
        z = -losses / case["temperature"]
        e = np.exp(z - z.max())
        return {"weights": e / e.sum()}
    if method == "task_arithmetic":
        return merge_task_vectors(base, task_vectors(base, models), w, lam, normalize, consensus=False)
    if method == "ties":
        taus = {name: [magnitude_trim(t, case["density"]) for t in ts] for name, ts in task_vectors(base, models).items()}
        return merge_task_vectors(base, taus, w, lam, normalize, consensus=True)
    if method in ("dare_linear", "dare_ties"):
        density = case["density"]
        masks = [tensors(spec, m) for m in case["masks"]]
        scale = 1.0 / density if case.get("rescale", True) else 1.0
        taus = {name: [t * masks[i][name] * scale for i, t in enumerate(ts)]
                for name, ts in task_vectors(base, models).items()}
        return merge_task_vectors(base, taus, w, lam, normalize, consensus=(method == "dare_ties"))
    if method == "slerp":
        def pick(ref):  # ["models", i], ["fishers", i] or ["base"]
            return base if ref[0] == "base" else {"models": models, "fishers": fishers}[ref[0]][ref[1]]
        return slerp(pick(case["a"]), pick(case["b"]), case["t"], case["threshold"], case["epsilon"])
    if method == "fisher":
        return fisher(models, fishers, case)
    raise ValueError(f"unknown method {method}")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        data = json.load(f)
    spec = data["tensors"]
    base = tensors(spec, data["base"])
    models = [tensors(spec, m) for m in data["models"]]
    fishers = [tensors(spec, f) for f in data["fishers"]]
    results = {}
    for case in data["cases"]:
        out = run_case(case, base, models, fishers, spec)
        results[case["id"]] = {name: np.asarray(v, dtype=np.float64).reshape(-1).tolist() for name, v in out.items()}
    with open(sys.argv[2], "w") as f:
        json.dump({"results": results}, f)
    print(f"ok: {len(results)} cases")


if __name__ == "__main__":
    main()
