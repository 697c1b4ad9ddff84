"""PyTorch eager reference for `make bench`: forward + backward of the same MoE layer as
moe-bench's (T tokens, hidden d, ffn F, E experts, top-k softmax routing with renormalised gates,
dropless, exact-GELU experts, Switch aux loss and z-loss), written the usual eager way: a loop
over experts, each gathering its tokens with index_select and scattering back with index_add_.

Prints JSON {"torch": VERSION, "threads": N, "ms": best_ms}. Same method as moe-bench: warm-up,
then the best of 3 trials of at least 0.5 s.
"""
import json
import sys
import time

import torch


def moe_step(x, wr, w1, b1, w2, b2, k, dy):
    t, e = x.shape[0], wr.shape[0]
    logits = x @ wr.t()
    probs = torch.softmax(logits, dim=-1)
    gates, experts = torch.topk(probs, k, dim=-1)
    gates = gates / gates.sum(dim=-1, keepdim=True)
    y = torch.zeros_like(x)
    flat_expert = experts.reshape(-1)
    flat_token = torch.arange(t).repeat_interleave(k)
    flat_gate = gates.reshape(-1)
    for i in range(e):
        mask = flat_expert == i
        tok = flat_token[mask]
        h = torch.nn.functional.gelu(x.index_select(0, tok) @ w1[i].t() + b1[i])
        out = (h @ w2[i].t() + b2[i]) * flat_gate[mask].unsqueeze(1)
        y.index_add_(0, tok, out)
    f = torch.bincount(flat_expert, minlength=e).float() / (t * k)
    aux = e * (f * probs.mean(dim=0)).sum()
    z = (torch.logsumexp(logits, dim=-1) ** 2).mean()
    loss = (y * dy).sum() + 0.01 * aux + 0.001 * z
    loss.backward()


def main(t=4096, d=256, f=1024, e=8, k=2):
    torch.manual_seed(0)
    x = torch.randn(t, d, requires_grad=True)
    wr = (torch.rand(e, d) * 2 - 1).div(d ** 0.5).requires_grad_()
    w1 = (torch.rand(e, f, d) * 2 - 1).div(d ** 0.5).requires_grad_()
    b1 = torch.zeros(e, f, requires_grad=True)
    w2 = (torch.rand(e, d, f) * 2 - 1).div(f ** 0.5).requires_grad_()
    b2 = torch.zeros(e, d, requires_grad=True)
    dy = torch.randn(t, d)
    params = [x, wr, w1, b1, w2, b2]

    def step():
        for p in params:
            p.grad = None
        moe_step(x, wr, w1, b1, w2, b2, k, dy)

    step()
    best = float("inf")
    for _ in range(3):
        reps, start = 0, time.perf_counter()
        while True:
            step()
            reps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= 0.5:
                break
        best = min(best, elapsed / reps)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "ms": best * 1000}))


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    main()
