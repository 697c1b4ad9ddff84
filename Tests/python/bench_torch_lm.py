"""PyTorch eager reference for `make bench`: one training step (forward + backward + gradient
clipping + AdamW) of the transformer LMs of issue 13 item 7, written in the style of nanoGPT's
model.py (Karpathy) and measured like nanoGPT's bench.py (a fixed random batch).

Usage: bench_torch_lm.py THREADS dense|moe [SECONDS_PER_TRIAL]

The model (lm-dense): byte vocabulary 256, context T = 64, hidden 128, 4 heads, 4 pre-norm
blocks, batch 12, no dropout:

    x₀ = wte[idx] + wpe[0..T)                   learned token and position embeddings
    x  = x + c_proj(SDPA(c_attn(LN₁(x))))        one qkv Linear [3·hidden, hidden] with bias,
                                                 F.scaled_dot_product_attention(is_causal=True)
                                                 as nanoGPT uses it, out Linear with bias
    x  = x + FFN(LN₂(x))                         FFN = Linear(128→512) · GELU (exact) · Linear(512→128)
    logits = LN_f(x) · wteᵀ                      head tied to the token embedding
    loss = cross-entropy over the B·T positions

lm-moe: the same with every block's FFN replaced by a Mixture-of-Experts layer of E = 8 GELU
experts with a top-2 softmax router (no bias, gates renormalised over the 2, dropless) plus the
Switch load-balancing loss (0.01·E·Σ f_i P_i) and the router z-loss (0.001·mean lse²), averaged
over the MoE layers, as moe-run's MoE layer computes them. "Equal active FFN width": each expert
is ffn_e = 512 / 2 = 256 wide, so the two experts a token uses add up to the dense FFN's 512.
The MoE is written the way a competent eager user writes it: sort the B·T·k (token, expert)
assignments by expert, gather the rows once with index_select, each expert (an nn.Module of its own, as in Hugging Face's
Mixtral: indexing stacked [E, …] weights instead would make every expert's backward zero-fill and
add a full [E, …] gradient) runs Linear–GELU–Linear on its contiguous slice, scale by the gates
and scatter-add back with index_add_.

Optimiser as nanoGPT's configure_optimizers: AdamW(lr 1e-3, β = (0.9, 0.99), weight decay 0.1 on
the ≥ 2-D parameters only), gradient clipping at norm 1.0. nanoGPT asks for the fused AdamW on
CUDA only; here it is also used on CPU, where PyTorch supports it and it is its fastest AdamW.

Method (as moe-bench): warm-up steps, then the best of 3 trials of at least SECONDS_PER_TRIAL
(default 1) seconds each; `cpu_ms` is the best CPU time of the process per step (all threads: with
one thread it is what load inflates least, with more it includes OpenMP's spinning). One configuration per process, so `max_rss_kb` (VmHWM of /proc/self/status)
is the peak resident set of this training process alone (the interpreter and torch's libraries
included: `import_rss_kb` is the resident set just after `import torch`).

Prints one JSON object: torch version, threads, config, tokens_per_step, ms (best step time),
cpu_ms, tokens_per_second, params (total) and active_params (per token; 2 of 8 experts for lm-moe),
max_rss_kb, import_rss_kb, final loss.
"""
import inspect
import json
import math
import sys
import time

def peak_rss_kb():
    """VmHWM of /proc/self/status: this image's peak resident set (ru_maxrss would also count the
    parent's resident set at the fork)."""
    with open("/proc/self/status") as f:
        return next(float(line.split()[1]) for line in f if line.startswith("VmHWM:"))


import_rss_kb = peak_rss_kb()
import torch  # noqa: E402  (the resident set before and after the import is reported)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import_rss_kb = peak_rss_kb()

CONFIGS = {
    "dense": dict(vocab=256, context=64, hidden=128, heads=4, blocks=4, ffn=512, batch=12, experts=0, k=0),
    "moe": dict(vocab=256, context=64, hidden=128, heads=4, blocks=4, ffn=512, batch=12, experts=8, k=2,
                expert_ffn=256),
}


class CausalSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_attn = nn.Linear(c["hidden"], 3 * c["hidden"], bias=True)
        self.c_proj = nn.Linear(c["hidden"], c["hidden"], bias=True)
        self.n_head = c["heads"]

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, c, ffn=None):
        super().__init__()
        self.c_fc = nn.Linear(c["hidden"], ffn or c["ffn"], bias=True)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(ffn or c["ffn"], c["hidden"], bias=True)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class MoE(nn.Module):
    """Top-k softmax router over E expert MLPs, dropless, by sorting the assignments by expert."""

    def __init__(self, c, moe_layers):
        super().__init__()
        self.e, self.k = c["experts"], c["k"]
        self.router = nn.Linear(c["hidden"], self.e, bias=False)
        self.experts = nn.ModuleList([MLP(c, c["expert_ffn"]) for _ in range(self.e)])
        self.aux_scale, self.z_scale = 0.01 / moe_layers, 0.001 / moe_layers
        self.aux_total = None

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        n = x.shape[0]
        logits = self.router(x)
        probs = F.softmax(logits, dim=-1)
        top_p, top_i = torch.topk(probs, self.k, dim=-1)
        gates = top_p / top_p.sum(dim=-1, keepdim=True)
        flat_expert = top_i.reshape(-1)
        order = torch.argsort(flat_expert, stable=True)
        token = order // self.k
        counts = torch.bincount(flat_expert, minlength=self.e)
        rows = x.index_select(0, token)
        outs = [expert(chunk) for expert, chunk in zip(self.experts, rows.split(counts.tolist()))]
        y_sorted = torch.cat(outs) * gates.reshape(-1).index_select(0, order).unsqueeze(1)
        y = torch.zeros_like(x).index_add_(0, token, y_sorted)
        f = counts.float() / (n * self.k)
        aux = self.e * (f * probs.mean(dim=0)).sum()
        z = (torch.logsumexp(logits, dim=-1) ** 2).mean()
        self.aux_total = self.aux_scale * aux + self.z_scale * z
        return y.reshape(shape)


class Block(nn.Module):
    def __init__(self, c, moe_layers):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c["hidden"], bias=True)
        self.attn = CausalSelfAttention(c)
        self.ln_2 = nn.LayerNorm(c["hidden"], bias=True)
        self.mlp = MoE(c, moe_layers) if c["experts"] else MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        moe_layers = c["blocks"] if c["experts"] else 0
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c["vocab"], c["hidden"]),
            wpe=nn.Embedding(c["context"], c["hidden"]),
            h=nn.ModuleList([Block(c, moe_layers) for _ in range(c["blocks"])]),
            ln_f=nn.LayerNorm(c["hidden"], bias=True),
        ))
        self.lm_head = nn.Linear(c["hidden"], c["vocab"], bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as nanoGPT
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c["blocks"]))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        aux = [blk.mlp.aux_total for blk in self.transformer.h if isinstance(blk.mlp, MoE)]
        return loss + sum(aux) if aux else loss

    def configure_optimizers(self, weight_decay, learning_rate, betas):
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        fused = "fused" in inspect.signature(torch.optim.AdamW).parameters
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **({"fused": True} if fused else {}))


def parameter_counts(model, c):
    """Total parameters, and those one token uses (k of E experts; the router counts)."""
    total = sum(p.numel() for p in model.parameters())
    if not c["experts"]:
        return total, total
    per_expert = 2 * c["hidden"] * c["expert_ffn"] + c["expert_ffn"] + c["hidden"]
    return total, total - c["blocks"] * (c["experts"] - c["k"]) * per_expert


def main(name, min_time):
    c = CONFIGS[name]
    torch.manual_seed(0)
    model = GPT(c)
    model.train()
    optimizer = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-3, betas=(0.9, 0.99))
    data = torch.randint(0, c["vocab"], (c["batch"], c["context"] + 1))
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()

    def step():
        loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss

    for _ in range(3):
        step()
    best = best_cpu = float("inf")
    for _ in range(3):
        reps, start, start_cpu = 0, time.perf_counter(), time.process_time()
        while True:
            loss = step()
            reps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        best = min(best, elapsed / reps)
        best_cpu = min(best_cpu, (time.process_time() - start_cpu) / reps)
    total, active = parameter_counts(model, c)
    tokens = c["batch"] * c["context"]
    print(json.dumps({
        "torch": torch.__version__, "threads": torch.get_num_threads(), "config": name,
        "tokens_per_step": tokens, "ms": best * 1000, "cpu_ms": best_cpu * 1000, "tokens_per_second": tokens / best,
        "params": total, "active_params": active,
        "max_rss_kb": peak_rss_kb(), "import_rss_kb": import_rss_kb,
        "loss": float(loss.item()),
    }))


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[2] not in CONFIGS:
        sys.exit("usage: bench_torch_lm.py THREADS dense|moe [SECONDS_PER_TRIAL]")
    torch.set_num_threads(int(sys.argv[1]))
    main(sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 1.0)
