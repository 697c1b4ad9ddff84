"""Checks a finished moe-run run directory from Python alone (h5py + numpy, no moe-run code).

1. The layout of ARCHITECTURE §5.2: run.h5 attributes, /spec, /plan, /data/<split>/{x,y},
   /models/final, /summary/final/*, task files with /metrics.
2. The checkpoint of §5.3 is self-describing: a numpy forward pass built only from the
   checkpoint's `config` attribute and its parameters reproduces moe-run's test loss to 1e-4
   relative.

Usage: python check_run.py RUN_DIR      (exit 0 and "interop: ok ..." on success)
"""
import json
import math
import os
import sys

import h5py
import numpy as np


def fail(message):
    print(f"interop: FAILED: {message}")
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def activation(name, x):
    if name == "relu":
        return np.maximum(x, 0)
    if name == "silu":
        return x / (1 + np.exp(-x))
    if name == "gelu":  # exact GELU: x·Φ(x)
        erf = np.vectorize(math.erf)
        return 0.5 * x * (1 + erf(x / math.sqrt(2)))
    fail(f"unknown activation {name}")


def forward(group, x):
    """The residual MLP of ARCHITECTURE §5.3, in float64, from the checkpoint group alone."""
    config = json.loads(group.attrs["config"])
    p = lambda name: np.asarray(group[name], dtype=np.float64)
    if "input" in group:
        x = (x - p("input/mean")) / p("input/std")
    h = x @ p("embed/weight").T + p("embed/bias")
    for i in range(config["blocks"]):
        b = f"blocks/{i}"
        z = layer_norm(h, p(f"{b}/norm/weight"), p(f"{b}/norm/bias"), config["norm_eps"])
        a = activation(config["activation"], z @ p(f"{b}/ffn/w1").T + p(f"{b}/ffn/b1"))
        h = h + a @ p(f"{b}/ffn/w2").T + p(f"{b}/ffn/b2")
    h = layer_norm(h, p("norm/weight"), p("norm/bias"), config["norm_eps"])
    return h @ p("head/weight").T + p("head/bias")


def cross_entropy(logits, y):
    m = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(lse - logits[np.arange(len(y)), y]))


def main(run_dir):
    path = os.path.join(run_dir, "run.h5")
    with h5py.File(path, "r") as f:
        for attr in ["format", "status", "seed", "spec_sha256", "moe_run_version", "started", "finished"]:
            check(attr in f.attrs, f"run.h5 lacks attribute {attr}")
        check(f.attrs["format"] == "moe-run/1", f"format is {f.attrs['format']!r}")
        check(isinstance(f.attrs["status"], str), "string attributes must read as str")
        check(f.attrs["status"] == "complete", f"status is {f.attrs['status']!r}")
        spec = f["spec"][()].decode() if isinstance(f["spec"][()], bytes) else f["spec"][()]
        check("name:" in spec, "/spec does not hold the resolved YAML")
        plan = json.loads(f["plan"][()])
        check([t["id"] for t in plan["tasks"]][:2] == ["data", "train"], f"unexpected plan {plan}")
        for split in ["train", "val", "test"]:
            check(f[f"data/{split}/x"].dtype == np.float32, f"/data/{split}/x is not float32")
            check(f[f"data/{split}/y"].dtype == np.int64, f"/data/{split}/y is not int64")
            check(f[f"data/{split}/x"].shape[0] == f[f"data/{split}/y"].shape[0], f"/data/{split} x/y lengths differ")
        model = f["models/final"]
        check(model.attrs["format"] == "moe-run/1" and model.attrs["kind"] == "model", "/models/final is not a model checkpoint")
        config = json.loads(model.attrs["config"])
        check(model["embed/weight"].shape == (config["hidden"], config["features"]), "embed/weight is not [hidden, features]")
        check(model["blocks/0/ffn/w1"].shape == (config["ffn"], config["hidden"]), "w1 is not [ffn, hidden]")
        check(model["head/weight"].dtype == np.float32, "parameters must be float32")
        for task in plan["tasks"]:
            check(f"tasks/{task['id']}" in f, f"/tasks/{task['id']} link missing")
        metrics = f["tasks/train/metrics"]
        check(metrics["step"].dtype == np.int64 and metrics["train_loss"].dtype == np.float64, "metric dtypes")
        check(len(metrics["step"]) == len(metrics["train_loss"]) > 0, "metric series lengths")

        reported = float(f["summary/final/test_loss"][()])
        x = np.asarray(f["data/test/x"], dtype=np.float64)
        y = np.asarray(f["data/test/y"])
        loss = cross_entropy(forward(model, x), y)
        rel = abs(loss - reported) / abs(reported)
        check(rel < 1e-4, f"numpy test loss {loss:.8f} vs moe-run {reported:.8f} (relative {rel:.2e})")
        accuracy = float(np.mean(forward(model, x).argmax(axis=1) == y))
        check(abs(accuracy - float(f["summary/final/test_accuracy"][()])) < 1e-9, "test accuracy differs")
    print(f"interop: ok: numpy test loss {loss:.6f} = moe-run {reported:.6f} (relative {rel:.1e}), accuracy {accuracy:.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1])
