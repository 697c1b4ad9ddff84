"""PyTorch eager reference for `make bench`: forward + backward of causal self-attention at
lm-dense's shape, as nanoGPT's CausalSelfAttention writes it (qkv Linear, split into heads,
F.scaled_dot_product_attention(is_causal=True), merge heads, out Linear), loss = Σ y ⊙ dy.

Usage: bench_torch_attention.py THREADS BATCH CONTEXT HIDDEN HEADS
Prints JSON {"torch": VERSION, "threads": N, "ms": layer, "sdpa_ms": SDPA alone (q, k, v → y)}.
Same method as moe-bench: warm-up, then the best of 5 trials of at least 0.3 s.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F


def best_ms(step, trials=5, min_time=0.3):
    step()
    best = float("inf")
    for _ in range(trials):
        reps, start = 0, time.perf_counter()
        while True:
            step()
            reps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        best = min(best, elapsed / reps)
    return best * 1000


def main(b, t, h, nh):
    torch.manual_seed(0)
    d = h // nh
    x = torch.randn(b, t, h, requires_grad=True)
    w_qkv = (torch.randn(3 * h, h) * 0.02).requires_grad_()
    b_qkv = torch.zeros(3 * h, requires_grad=True)
    w_out = (torch.randn(h, h) * 0.01).requires_grad_()
    b_out = torch.zeros(h, requires_grad=True)
    dy = torch.randn(b, t, h)
    params = [x, w_qkv, b_qkv, w_out, b_out]

    def layer():
        for p in params:
            p.grad = None
        q, k, v = F.linear(x, w_qkv, b_qkv).split(h, dim=2)
        q, k, v = (u.view(b, t, nh, d).transpose(1, 2) for u in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(b, t, h)
        (F.linear(a, w_out, b_out) * dy).sum().backward()

    q, k, v = (torch.randn(b, nh, t, d, requires_grad=True) for _ in range(3))
    dout = torch.randn(b, nh, t, d)

    def sdpa():
        for p in (q, k, v):
            p.grad = None
        F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(dout)

    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "ms": best_ms(layer), "sdpa_ms": best_ms(sdpa)}))


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    main(*(int(a) for a in sys.argv[2:6])) if len(sys.argv) >= 6 else main(12, 64, 128, 4)
