#!/usr/bin/env python3
"""Independent PyTorch reference for moe-run's transformer LM (issue 13, item 4).

Usage: torch_transformer_reference.py IN.h5 OUT.h5 [IN.h5 OUT.h5 ...]

Each IN file (written by Tests/TorchReferenceTests/TorchTransformerReferenceTests.swift) holds
a model checkpoint in the ARCHITECTURE §5.3 `transformer` layout under group `model` (attribute
`config`, JSON; one float32 dataset per parameter) and a batch `tokens` int32 [B, T + 1] of
windows. The model is rebuilt here from §5.3 and the documented maths only, in the style of
nanoGPT's model.py (Karpathy), with module names chosen so that the state_dict keys are the
checkpoint names with "/" replaced by "." (loaded with strict=True: every tensor of the file is
a parameter of the model and the reverse):

    x_0   = embed[tokens[:, :T]] + pos[0..T-1]
    h     = x + out(Attn(LN(x)))     Attn: per head softmax(q·kᵀ/√d + causal mask)·v, heads concatenated;
                                     qkv rows 0..H-1 are q, H..2H-1 k, 2H..3H-1 v, head j is rows j·d..(j+1)·d
    x'    = h + F(LN(h))             F = ffn: w2·act(w1·x + b1) + b2, or an MoE layer
    logits = LN(x_B)·Wᵀ              W = head/weight, or embed/weight when tie_embeddings
    loss  = mean over the B·T positions of −log softmax(logits)[tokens[:, 1:]]
          + Σ over MoE layers of (aux_loss·aux + z_loss·z) / (number of MoE layers)

MoE layer (top-k router, dropless, as moe-run's MoELayer/MoERouter document): router logits
z = x·Wᵀ, p = softmax(z); each token takes its k most probable experts, gates p renormalised over
the k (normalize_topk); every expert runs densely on every token and the outputs are combined
through the sparse [N, E] gate matrix. aux = E·Σ_i f_i·P_i with f_i the fraction of the N·k
selections choosing i (a count, not differentiated) and P_i = mean_t p_ti; z = mean_t lse_t².

Dropout is 0 (the reference is deterministic). Autograd computes every parameter's gradient of
the loss. OUT gets `loss` (the cross-entropy mean, float64), `aux` (the weighted auxiliary sum)
and `grad/<checkpoint name>` for every parameter (float32); the Swift test compares.
"""

import json
import math
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float32)
ACTIVATIONS = {"gelu": lambda x: F.gelu(x), "relu": F.relu, "silu": F.silu}


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h = cfg["hidden"]
        self.heads = cfg["heads"]
        self.norm = nn.LayerNorm(h, eps=cfg["norm_eps"])
        self.qkv = nn.Linear(h, 3 * h)
        self.out = nn.Linear(h, h)

    def forward(self, x):  # x is the residual stream; returns out(Attn(LN(x)))
        B, T, C = x.size()
        q, k, v = self.qkv(self.norm(x)).split(C, dim=2)
        d = C // self.heads
        q = q.view(B, T, self.heads, d).transpose(1, 2)
        k = k.view(B, T, self.heads, d).transpose(1, 2)
        v = v.view(B, T, self.heads, d).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = att.masked_fill(~mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.out(y)


class FFN(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, f = cfg["hidden"], cfg["ffn"]
        self.w1 = nn.Parameter(torch.empty(f, h))
        self.b1 = nn.Parameter(torch.empty(f))
        self.w2 = nn.Parameter(torch.empty(h, f))
        self.b2 = nn.Parameter(torch.empty(h))
        self.act = ACTIVATIONS[cfg["activation"]]

    def forward(self, x):
        return F.linear(self.act(F.linear(x, self.w1, self.b1)), self.w2, self.b2)


class Experts(nn.Module):
    def __init__(self, e, h, f):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(e, f, h))
        self.b1 = nn.Parameter(torch.empty(e, f))
        self.w2 = nn.Parameter(torch.empty(e, h, f))
        self.b2 = nn.Parameter(torch.empty(e, h))


class MoE(nn.Module):
    def __init__(self, cfg, moe_layers):
        super().__init__()
        m = cfg["moe"]
        assert m["router"] == "topk" and m["capacity_factor"] is None and m["jitter"] == 0, \
            "this reference implements the dropless top-k router without jitter"
        h = cfg["hidden"]
        self.e, self.k, self.normalize = m["experts"], m["k"], m["normalize_topk"]
        self.aux_scale, self.z_scale = m["aux_loss"] / moe_layers, m["z_loss"] / moe_layers
        self.router = nn.Linear(h, self.e, bias=False)
        self.experts = Experts(self.e, h, m.get("expert_ffn") or cfg["ffn"])
        self.act = ACTIVATIONS[cfg["activation"]]

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        n = x.shape[0]
        z = self.router(x)
        p = F.softmax(z, dim=-1)
        top_p, top_i = torch.topk(p, self.k, dim=-1)
        gates = top_p / top_p.sum(-1, keepdim=True) if self.normalize and self.k > 1 else top_p
        G = torch.zeros(n, self.e).scatter(1, top_i, gates)
        w = self.experts
        pre = torch.einsum("nh,efh->enf", x, w.w1) + w.b1[:, None, :]
        y_e = torch.einsum("enf,ehf->enh", self.act(pre), w.w2) + w.b2[:, None, :]
        y = torch.einsum("ne,enh->nh", G, y_e)
        f = torch.bincount(top_i.reshape(-1), minlength=self.e).float() / (n * self.k)
        aux = self.e * (f * p.mean(0)).sum()
        zl = (torch.logsumexp(z, dim=-1) ** 2).mean()
        self.aux_total = self.aux_scale * aux + self.z_scale * zl
        return y.reshape(shape)


class Block(nn.Module):
    def __init__(self, cfg, i, moe_layers):
        super().__init__()
        self.attn = CausalSelfAttention(cfg)
        self.norm = nn.LayerNorm(cfg["hidden"], eps=cfg["norm_eps"])
        is_moe = cfg["moe"] is not None and i in cfg["moe"]["blocks"]
        if is_moe:
            self.moe = MoE(cfg, moe_layers)
        else:
            self.ffn = FFN(cfg)

    def forward(self, x):
        x = x + self.attn(x)
        f = self.moe if hasattr(self, "moe") else self.ffn
        return x + f(self.norm(x))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        moe_layers = len(cfg["moe"]["blocks"]) if cfg["moe"] else 0
        self.embed = nn.Embedding(cfg["vocab"], cfg["hidden"])
        self.pos = nn.Embedding(cfg["context"], cfg["hidden"])
        self.blocks = nn.ModuleList([Block(cfg, i, moe_layers) for i in range(cfg["blocks"])])
        self.norm = nn.LayerNorm(cfg["hidden"], eps=cfg["norm_eps"])
        if not cfg["tie_embeddings"]:
            self.head = nn.Linear(cfg["hidden"], cfg["vocab"], bias=False)

    def forward(self, idx, targets):
        B, T = idx.size()
        x = self.embed(idx) + self.pos(torch.arange(T))
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        logits = x @ (self.embed.weight if self.cfg["tie_embeddings"] else self.head.weight).T
        ce = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        aux = sum((b.moe.aux_total for b in self.blocks if hasattr(b, "moe")), torch.zeros(()))
        return ce, aux


def check(path_in, path_out):
    with h5py.File(path_in, "r") as f:
        group = f["model"]
        assert group.attrs["format"] == "moe-run/1" and group.attrs["kind"] == "model"
        cfg = json.loads(group.attrs["config"])
        assert cfg["kind"] == "transformer", cfg["kind"]
        assert cfg["dropout"] == 0, "the reference has no dropout"
        names = []
        group.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        state = {n.replace("/", "."): torch.from_numpy(np.asarray(group[n][()], dtype=np.float32)) for n in names}
        tokens = torch.from_numpy(np.asarray(f["tokens"][()], dtype=np.int64))
    model = GPT(cfg)
    model.load_state_dict(state, strict=True)
    ce, aux = model(tokens[:, :-1], tokens[:, 1:])
    (ce + aux).backward()
    with h5py.File(path_out, "w") as out:
        out["loss"] = float(ce.item())
        out["aux"] = float(aux.item())
        for name, p in model.named_parameters():
            out["grad/" + name.replace(".", "/")] = p.grad.numpy().astype(np.float32)
    print(f"{path_in}: loss {ce.item():.6f} aux {aux.item():.6f}, {len(state)} tensors")


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit("usage: torch_transformer_reference.py IN.h5 OUT.h5 [IN.h5 OUT.h5 ...]")
    for i in range(0, len(args), 2):
        check(args[i], args[i + 1])
