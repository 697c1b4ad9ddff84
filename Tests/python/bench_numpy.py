"""numpy float32 matmul GFLOP/s: the reference `make bench` compares moe-run's sgemm with.

Same method as moe-bench: for each n, one warm-up product, then 5 trials each repeating the
product until at least 0.2 s have passed; the best trial's rate is reported.
Prints JSON: {"numpy": VERSION, "blas": "...", "sgemm": {"256": gflops, ...}}.
Arguments: the sizes to measure (default 256 512 1024 2048). moe-bench calls it once per size
and round, alternating with its own measurement, so both sides see the same machine state.
"""
import json
import time

import numpy as np


def blas_name():
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy without mode=
        return "?"


def gflops(n, trials=5, min_time=0.2):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    best = 0.0
    for _ in range(trials):
        reps = 0
        start = time.perf_counter()
        while True:
            np.matmul(a, b, out=c)
            reps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        best = max(best, 2.0 * n ** 3 * reps / elapsed / 1e9)
    return best


if __name__ == "__main__":
    import sys
    sizes = [int(a) for a in sys.argv[1:]] or [256, 512, 1024, 2048]
    out = {"numpy": np.__version__, "blas": blas_name(),
           "sgemm": {str(n): gflops(n) for n in sizes}}
    print(json.dumps(out))
