"""Independent check of a Branch-Train-Merge ensemble checkpoint (fusion.method: ensemble) with
h5py + numpy only: the mixture NLL and accuracy of

    p(y | x) = sum_i w_i(x) softmax(f_i(x))_y,   w_i(x) ∝ prior_i · N(x'; mean_i, diag(variance_i))

where x' = (x − input/mean) / input/std (the ensemble group's standardisation) and each expert
f_i is rebuilt from its checkpoint `experts/<i>` by check_run.forward (ARCHITECTURE §5.3).

Usage: python ensemble_reference.py CHECKPOINT.h5 GROUP DATA.h5
Prints "loss <float> accuracy <float>".
"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_run import forward  # noqa: E402


def log_softmax(z):
    m = z.max(axis=1, keepdims=True)
    return z - (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))


def main(checkpoint, group_path, data):
    with h5py.File(data, "r") as d:
        x = np.asarray(d["x"], dtype=np.float64)
        y = np.asarray(d["y"], dtype=np.int64)
    with h5py.File(checkpoint, "r") as f:
        g = f[group_path]
        assert g.attrs["kind"] == "ensemble", g.attrs["kind"]
        e = int(g.attrs["experts"])
        xs = x
        if "input" in g:
            xs = (x - np.asarray(g["input/mean"], dtype=np.float64)) / np.asarray(g["input/std"], dtype=np.float64)
        prior = np.asarray(g["posterior/prior"], dtype=np.float64)
        mean = np.asarray(g["posterior/mean"], dtype=np.float64)
        var = np.asarray(g["posterior/variance"], dtype=np.float64)
        logp = np.stack([log_softmax(forward(g[f"experts/{i}"], x)) for i in range(e)])  # [E, n, C]
    # log N(x'; mean_i, var_i), diagonal: [n, E]
    lg = -0.5 * (np.log(2 * np.pi * var)[None, :, :] + (xs[:, None, :] - mean[None, :, :]) ** 2 / var[None, :, :]).sum(axis=2)
    lw = np.log(prior)[None, :] + lg
    lw -= lw.max(axis=1, keepdims=True)
    lw -= np.log(np.exp(lw).sum(axis=1, keepdims=True))
    mix = lw.T[:, :, None] + logp  # [E, n, C]
    m = mix.max(axis=0)
    log_mixture = m + np.log(np.exp(mix - m[None]).sum(axis=0))  # [n, C]
    loss = float(-log_mixture[np.arange(len(y)), y].mean())
    accuracy = float((log_mixture.argmax(axis=1) == y).mean())
    print(f"loss {loss:.9f} accuracy {accuracy:.6f}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
