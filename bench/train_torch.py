#!/usr/bin/env python3
"""train_torch.py — the PyTorch baseline for `make bench`: training throughput
of a Llama (HF LlamaForCausalLM semantics) written the idiomatic way with
torch.nn modules, fp32 on CPU: forward, cross-entropy, backward, global-norm
gradient clipping and a torch.optim.AdamW step on random token batches.

usage: train_torch.py [--threads N] [--config CONFIG.json] [--batch B] [--seq T]
                      [--warmup W] [--steps S] [--seed S]
  defaults: 2 threads, shared/models/kv-llama-2m/config.json (d_model 192,
  6 layers, 6 heads / 2 kv heads × 32, MLP 512, vocab 1024), batch 8 × 256,
  3 warm-up steps, 10 timed steps.
prints one JSON line (ms_per_step = median timed step, tokens_per_s = B·T over it):
  {"bench": "train_torch", "tokens_per_s": ..., "threads": N, "ms_per_step": ...,
   "ms_per_step_mean": ..., "batch": B, "seq": T, "steps": S, "params": P,
   "omp_wait_policy": ..., "blas_threads": ..., "torch": "<version>"}
Note: this Debian torch does its GEMMs in OpenBLAS, whose thread pool follows
OPENBLAS_NUM_THREADS (default: all cores), not torch.set_num_threads; the
script sets OMP_WAIT_POLICY=PASSIVE unless the environment already sets it.
"""
import argparse
import json
import math
import os
import time

# libgomp (torch's OpenMP) spin-waits between parallel regions by default; on a
# small machine its threads then fight OpenBLAS's own pthread pool (this Debian
# torch does its GEMMs in OpenBLAS) and 2 threads can run 3x slower than 1.
# Passive waiting is the fair setting for the baseline; must precede `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def default_config():
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.environ.get("MOLT_SHARED") or os.path.join(here, "..", "..", "shared")
    return os.path.join(shared, "models", "kv-llama-2m", "config.json")


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class Attention(nn.Module):
    def __init__(self, d, H, KV, hd):
        super().__init__()
        self.H, self.KV, self.hd = H, KV, hd
        self.q_proj = nn.Linear(d, H * hd, bias=False)
        self.k_proj = nn.Linear(d, KV * hd, bias=False)
        self.v_proj = nn.Linear(d, KV * hd, bias=False)
        self.o_proj = nn.Linear(H * hd, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.KV, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.KV, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(self.H // self.KV, dim=1)
        v = v.repeat_interleave(self.H // self.KV, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.hd) + mask, dim=-1)
        return self.o_proj((att @ v).transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["d"], c["eps"])
        self.self_attn = Attention(c["d"], c["H"], c["KV"], c["hd"])
        self.post_attention_layernorm = RMSNorm(c["d"], c["eps"])
        self.mlp = MLP(c["d"], c["ff"])

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["V"], c["d"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["L"]))
        self.norm = RMSNorm(c["d"], c["eps"])
        self.lm_head = nn.Linear(c["d"], c["V"], bias=False)
        if c["tie"]:
            self.lm_head.weight = self.embed_tokens.weight
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
        inv = 1.0 / (c["theta"] ** (torch.arange(0, c["hd"], 2).float() / c["hd"]))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, ids):
        T = ids.shape[1]
        ang = torch.arange(T, dtype=torch.float32)[:, None] * self.inv_freq[None, :]
        ang = torch.cat([ang, ang], dim=-1)
        cos, sin = ang.cos(), ang.sin()
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x))


def read_config(path):
    o = json.load(open(path))
    rp = o.get("rope_parameters") or {}
    H = o["num_attention_heads"]
    return {"d": o["hidden_size"], "L": o["num_hidden_layers"], "H": H,
            "KV": o.get("num_key_value_heads") or H,
            "hd": o.get("head_dim") or o["hidden_size"] // H, "ff": o["intermediate_size"],
            "V": o["vocab_size"], "eps": o.get("rms_norm_eps", 1e-6),
            "tie": o.get("tie_word_embeddings", False),
            "theta": rp.get("rope_theta", o.get("rope_theta", 10000.0))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default=default_config())
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    c = read_config(a.config)
    model = Llama(c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1)
    g = torch.Generator().manual_seed(a.seed)

    def step():
        tok = torch.randint(0, c["V"], (a.batch, a.seq + 1), generator=g)
        logits = model(tok[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, c["V"]), tok[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    # the median step: robust to other processes stealing the CPU for a while
    med = sorted(times)[len(times) // 2] if len(times) % 2 else \
        0.5 * sum(sorted(times)[len(times) // 2 - 1:len(times) // 2 + 1])
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"bench": "train_torch",
                      "tokens_per_s": round(a.batch * a.seq / med, 1),
                      "threads": a.threads, "ms_per_step": round(1000 * med, 2),
                      "ms_per_step_mean": round(1000 * sum(times) / len(times), 2),
                      "batch": a.batch, "seq": a.seq, "steps": a.steps, "params": n_params,
                      "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
                      "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
