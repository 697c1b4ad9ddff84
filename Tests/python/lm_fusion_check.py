"""The fused model of a transformer LM branch run recomputed from the experts with numpy (issue
15 item 6), used by check_run.py. Reads only the run's HDF5 files:

  /tasks/fuse/fusion           attributes method, normalize, lambda; coefficients [E] (w_i)
  /models/expert-<i>           the experts' checkpoints (θ_i)
  /models/seed                 θ₀ (the pre-trained seed, or the spec seed's initialisation)
  /models/fused                the fused checkpoint

  average, task_arithmetic, ties, dare, dare_ties, slerp, fisher, greedy_soup
                    every tensor recomputed by fusion_recompute.weight_space, as for an MLP run
  mix (BTX)         for every MoE block b: experts/<t>[i] = expert i's blocks/b/ffn/<t> exactly;
                    every other tensor but the routers Σ w_i θ_i; router/weight [E, hidden] the fresh
                    N(0, 0.02²) initialisation times 0.01 (checked: |w| < 0.01 · 0.02 · 6)
Each mix tensor must match to 1e-6 relative (‖a − b‖ / max(‖b‖, 1e-12)), a weight-space one to
fusion_recompute's 1e-5.
The probe's /fusion/metrics/<model>/{val,test}_loss must equal the evaluate task's /summary/<model>/…
(both are the §5.4 protocol in batches of eval.batch_size) to 1e-9 relative.
"""
import json

import numpy as np

import fusion_recompute


def tensors(group):
    out = {}
    group.visititems(lambda n, o: out.__setitem__(n, np.asarray(o[()], dtype=np.float64)) if hasattr(o, "shape") else None)
    return out


def relative(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def check_fusion(f, fail):
    """Returns a one-line description of what was checked, or None when the run has no fuse task."""
    if "tasks/fuse/fusion" not in f or "models/fused" not in f:
        return None
    g = f["tasks/fuse/fusion"]
    method = g.attrs["method"]
    method = method.decode() if isinstance(method, bytes) else method
    w = np.asarray(g["coefficients"], dtype=np.float64)
    experts = [tensors(f[f"models/expert-{i}"]) for i in range(len(w))]
    fused = tensors(f["models/fused"])
    config = json.loads(f["models/fused"].attrs["config"])
    recomputed = 0
    if method in fusion_recompute.METHODS:
        # Every weight-space method, as for an MLP branch run (float32 tensors, as stored).
        as32 = lambda t: {n: v.astype(np.float32) for n, v in t.items()}  # noqa: E731 (float64 → float32 is exact)
        recomputed = fusion_recompute.weight_space(f, g, method, w, [as32(e) for e in experts], as32(fused), fail)
    elif method == "mix":
        for name, value in fused.items():
            parts = name.split("/")
            if len(parts) == 5 and parts[2] == "moe" and parts[3] == "experts":
                for i, e in enumerate(experts):
                    source = f"blocks/{parts[1]}/ffn/{parts[4]}"
                    if not np.array_equal(value[i], e[source]):
                        fail(f"mix: {name}[{i}] is not expert {i}'s {source}")
            elif len(parts) == 5 and parts[2] == "moe" and parts[3] == "router":
                if parts[4] == "weight" and (value.shape != (len(w), config["hidden"]) or np.abs(value).max() >= 0.01 * 0.02 * 6):
                    fail(f"mix: {name} is not a fresh router x 0.01 (shape {value.shape}, max {np.abs(value).max()})")
            else:
                rel = relative(value, sum(wi * e[name] for wi, e in zip(w, experts)))
                if rel > 1e-6:
                    fail(f"mix: numpy {name} differs from /models/fused by {rel:.1e} relative")
            recomputed += 1
    for model in [f"expert-{i}" for i in range(len(w))] + ["fused"]:
        for split in ["val", "test"]:
            key = f"summary/{model}/{split}_loss"
            if key not in f:
                continue
            probe = float(g[f"metrics/{model}/{split}_loss"][()])
            reported = float(f[key][()])
            if abs(probe - reported) > 1e-9 * abs(reported):
                fail(f"/fusion/metrics/{model}/{split}_loss {probe!r} differs from /{key} {reported!r}")
    what = f"{recomputed} tensors recomputed from the experts" if recomputed else "an ensemble: no fused tensors"
    return f"fused by {method} ({what}; fusion metrics = evaluate's)"
