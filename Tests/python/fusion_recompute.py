"""The fused model of a branch run recomputed from its experts with numpy, for every weight-space
fusion method (issues 6 and 15), from the run's HDF5 files alone; used by check_run.py for MLP and
transformer runs alike (lm_fusion_check.py adds BTX's mix and the LM probe metrics).

Inputs: /tasks/fuse/fusion (attributes method, normalize, lambda, density, rescale, t, epsilon,
seed, soup_order, soup_chosen; dataset coefficients [E] = w_i), /models/expert-<i> (θ_i),
/models/seed (θ₀), /models/fused, and for `fisher` the per-expert diagonal Fisher F_i that the
fuse task stores in /tasks/fuse/fusion/fisher/expert-<i>/<tensor>. With τ_i = θ_i − θ₀ (float32,
as moe-run forms it):

  average          θ = Σ w_i θ_i
  task_arithmetic  θ = θ₀ + λ Σ w_i τ_i  (/ Σ w_i when normalize)              Ilharco et al. 2023
  ties             trim each τ_i to its k = max(1, int(density · n)) largest |τ| (ties: lower flat
                   index first), elect the sign of Σ w_i τ̂_i (0 elects +), keep the agreeing entries
                   (zeros agree with nothing), Σ over them / Σ of their weights (1 where none agree)
                   when normalize; θ = θ₀ + λ · merged                          Yadav et al. 2023
  dare, dare_ties  τ̂_i = τ_i ⊙ m_i (/ density when rescale), m_i[j] = [u_j < density], u_j the j-th
                   uniform of moe-run's RNG(seed, purpose "fusion/dare/<tensor>", stream i):
                   Philox4x32-10 keyed by SplitMix64(seed ^ FNV-1a(purpose)), counter (block, stream),
                   u = (x >> 8) · 2⁻²⁴ (Sources/MoECore/RNG.swift, re-implemented below); then task
                   arithmetic (dare) or TIES' election and disjoint merge (dare_ties)   Yu et al. 2024
  slerp            per tensor: cos Ω = â·b̂ (a norm ≤ 1e-8 left as is); |cos Ω| > 1 − 1e-6: lerp;
                   else sin((1−t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b                Shoemake 1985
  fisher           θ = Σ w_i (F_i + ε) θ_i / Σ w_i (F_i + ε), w normalised       Matena & Raffel 2022
  greedy_soup      the experts ordered by validation accuracy (descending, lower index first) must
                   be soup_order; soup_chosen starts with the best one; θ = the plain mean of the
                   chosen experts, and the soup's val accuracy is at least the best expert's
                   (strictly more when it took a second ingredient)             Wortsman et al. 2022
Each tensor must match /models/fused to 1e-5 relative (‖a − b‖ / max(‖b‖, 1e-12)).
"""
import numpy as np

M32 = np.uint64(0xFFFFFFFF)
MASK64 = (1 << 64) - 1


def fnv1a(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return h


def splitmix(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def uniforms(seed, purpose, stream, count):
    """The first `count` uniform() draws of moe-run's RNG(seed, purpose, stream), as float32."""
    key = splitmix((seed ^ fnv1a(purpose)) & MASK64)
    blocks = np.arange((count + 3) // 4, dtype=np.uint64)
    c0, c1 = blocks & M32, blocks >> np.uint64(32)
    c2 = np.full_like(blocks, np.uint64(stream & 0xFFFFFFFF))
    c3 = np.full_like(blocks, np.uint64(stream >> 32))
    k0, k1 = key & 0xFFFFFFFF, key >> 32
    for r in range(10):
        if r > 0:
            k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & M32
        hi1, lo1 = p1 >> np.uint64(32), p1 & M32
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
    draws = np.stack([c0, c1, c2, c3], axis=1).reshape(-1)[:count]
    return (draws >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24)


def relative(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def magnitude_trim(tau, density):
    if density >= 1:
        return tau
    flat = tau.reshape(-1)
    k = min(flat.size, max(1, int(density * flat.size)))
    keep = np.zeros(flat.size, dtype=bool)
    keep[np.argsort(-np.abs(flat), kind="stable")[:k]] = True
    return np.where(keep, flat, 0).reshape(tau.shape)


def dare_drop(tau, density, rescale, seed, model, name):
    if density >= 1:
        return tau
    d = np.float32(density)
    keep = uniforms(seed, "fusion/dare/" + name, model, tau.size).reshape(tau.shape) < d
    return np.where(keep, tau / d if rescale else tau, np.float32(0))


def task_merge(base, taus, w, lam, normalize, consensus):
    """θ₀ + λ · merged for one tensor; taus [E, ...] already sparsified (float32)."""
    stacked = taus.astype(np.float64)
    wb = w.reshape((-1,) + (1,) * base.ndim)
    weighted = stacked * wb
    if consensus:
        elected = np.where(weighted.sum(axis=0) >= 0, 1.0, -1.0)
        agree = np.sign(weighted) == elected
        merged = (weighted * agree).sum(axis=0)
        divisor = (wb * agree).sum(axis=0)
        divisor[divisor == 0] = 1.0
    else:
        merged = weighted.sum(axis=0)
        divisor = w.sum()
    if normalize:
        merged = merged / divisor
    return base.astype(np.float64) + lam * merged


def slerp(x, y, t, threshold=1 - 1e-6, eps=1e-8):
    x, y = x.astype(np.float64), y.astype(np.float64)
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    dot = float(np.sum(x * y)) / ((nx if nx > eps else 1) * (ny if ny > eps else 1))
    if abs(dot) > threshold:
        return (1 - t) * x + t * y
    omega = np.arccos(min(1.0, max(-1.0, dot)))
    s = np.sin(omega)
    return np.sin((1 - t) * omega) / s * x + np.sin(t * omega) / s * y


def attr(g, name, default=None):
    v = g.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


def weight_space(f, g, method, w, experts, fused, fail):
    """Recomputes every tensor of /models/fused for a weight-space method; returns the count."""
    base = None
    if method in ("task_arithmetic", "ties", "dare", "dare_ties"):
        seed_group = f["models/seed"]
        base = {n: np.asarray(seed_group[n][()], dtype=np.float32) for n in fused if not n.startswith("input/")}
    lam = float(attr(g, "lambda", 1.0))
    normalize = bool(attr(g, "normalize", 0))
    density = float(attr(g, "density", 1.0))
    rescale = bool(attr(g, "rescale", 1))
    seed = int(attr(g, "seed", 0)) & MASK64
    if method == "greedy_soup":
        order = [int(i) for i in attr(g, "soup_order").split(",")]
        chosen = [int(i) for i in attr(g, "soup_chosen").split(",")]
        acc = [float(g[f"metrics/expert-{i}/val_accuracy"][()]) for i in range(len(experts))]
        want_order = sorted(range(len(acc)), key=lambda i: (-acc[i], i))
        if order != want_order:
            fail(f"greedy_soup: soup_order {order} is not the experts by val accuracy {acc}")
        if chosen[0] != order[0] or len(set(chosen)) != len(chosen) or [c for c in order if c in chosen] != chosen:
            fail(f"greedy_soup: soup_chosen {chosen} is not a greedy prefix-ordered choice from {order}")
        soup_acc = float(g["metrics/fused/val_accuracy"][()])
        if soup_acc < acc[order[0]] or (len(chosen) > 1 and not soup_acc > acc[order[0]]):
            fail(f"greedy_soup: soup val accuracy {soup_acc} vs best expert {acc[order[0]]} with {len(chosen)} ingredients")
        if not np.allclose(np.asarray(g["coefficients"]), [1 / len(chosen) if i in chosen else 0 for i in range(len(experts))]):
            fail("greedy_soup: coefficients are not 1/|chosen| on the chosen experts")
    fishers = None
    if method == "fisher":
        if "fisher" not in g:
            fail("fisher: /tasks/fuse/fusion/fisher (the experts' diagonal Fisher) is missing")
        fishers = [{n: np.asarray(g[f"fisher/expert-{i}/{n}"][()], dtype=np.float64) for n in fused if not n.startswith("input/")}
                   for i in range(len(experts))]
        for i, F in enumerate(fishers):
            if not all(np.all(np.isfinite(v)) and np.all(v >= 0) for v in F.values()):
                fail(f"fisher: expert-{i}'s Fisher has a negative or non-finite entry")
    eps = float(attr(g, "epsilon", 0.0))
    t = float(attr(g, "t", 0.5))
    count = 0
    for name, value in fused.items():
        if name.startswith("input/"):
            continue  # an MLP's input standardisation (the data's, not a parameter; copied, not fused)
        thetas = [e[name] for e in experts]
        if method == "average":
            want = sum(wi * th.astype(np.float64) for wi, th in zip(w, thetas))
        elif method == "greedy_soup":
            chosen = [int(i) for i in attr(g, "soup_chosen").split(",")]
            want = sum(thetas[i].astype(np.float64) for i in chosen) / len(chosen)
        elif method == "slerp":
            want = slerp(thetas[0], thetas[1], t)
        elif method == "fisher":
            wn = w / w.sum()
            coeff = [wi * (F[name] + eps) for wi, F in zip(wn, fishers)]
            want = sum(c * th.astype(np.float64) for c, th in zip(coeff, thetas)) / sum(coeff)
        else:
            taus = np.stack([th - base[name] for th in thetas])  # float32, as moe-run
            if method == "ties":
                taus = np.stack([magnitude_trim(tau, density) for tau in taus])
            elif method in ("dare", "dare_ties"):
                taus = np.stack([dare_drop(tau, density, rescale, seed, i, name) for i, tau in enumerate(taus)])
            want = task_merge(base[name], taus, w, lam, normalize, consensus=method in ("ties", "dare_ties"))
        rel = relative(value.astype(np.float64), want)
        if rel > 1e-5:
            fail(f"{method}: numpy {name} differs from /models/fused by {rel:.1e} relative")
        count += 1
    return count


METHODS = ("average", "task_arithmetic", "ties", "dare", "dare_ties", "slerp", "fisher", "greedy_soup")


def check(f, fail):
    """The weight-space fusion of a branch run (any model kind) recomputed from its experts:
    a one-line description, or None when the run has no such fusion (no fuse task; mix, ensemble,
    stack, or a replicate MoE's expert merging)."""
    if "tasks/fuse/fusion" not in f or "models/fused" not in f or "models/expert-0" not in f:
        return None
    g = f["tasks/fuse/fusion"]
    method = attr(g, "method")
    if method not in METHODS or attr(g, "merge") == "experts":
        return None
    w = np.asarray(g["coefficients"], dtype=np.float64)

    def load(group):
        out = {}
        group.visititems(lambda n, o: out.__setitem__(n, np.asarray(o[()], dtype=np.float32)) if hasattr(o, "shape") else None)
        return out

    experts = [load(f[f"models/expert-{i}"]) for i in range(len(w))]
    count = weight_space(f, g, method, w, experts, load(f["models/fused"]), fail)
    return f"fused by {method} ({count} tensors recomputed from the experts)"
