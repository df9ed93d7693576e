#!/usr/bin/env python3
"""llamba_ref.py — an independent float64 PyTorch reference of cartesia-pytorch's
LlambaLMHeadModel, written from shared/docs/ALGORITHMS.md §2.2 (DiscreteMamba2),
§2.4 (the block) and §5.2 (config.json schema, tensor names), and the published
class's constructor arguments and defaults (LlambaConfig: tie_embeddings false,
pad_vocab_size_multiple 8, norm_epsilon 1e-5; DiscreteMamba2: d_state 64, d_conv 4,
expand 1, bias false, conv_bias true, chunk_size 128, activation identity). The
modules carry the published attribute names, so state_dict() keys are the
checkpoint's tensor names and loading is strict (as cartesia's from_pretrained):
a missing or an extra tensor, or a wrong shape, is an error.

  make OUT      writes OUT/a and OUT/b, two small random Llamba checkpoints in the
                published layout (config.json + one fp32 model.safetensors), and in
                each ref.safetensors: ids_0 (I32 [T]) and logits_0, the float64
                logits [T, V] of the fp32 weights (tests/testmodel.c's reference form).
                a: tied, 6 value heads over 2 B/C heads, vocab 197 padded to 200,
                   norm_epsilon 0.25 (the final norm's; the blocks keep 1e-5),
                   model_type "llamba".
                b: untied, expand 2, bias true (in_proj / out_proj biases, no z_bias),
                   conv_bias false, d_conv 3, no model_type in config.json.
  check DIR REF loads DIR strictly and prints the largest |logit - REF's logit|
                (exit 1 above 1e-9: the same fp32 weights give the same float64 logits)

Equations (per layer, u the block input, P = d_inner / n_v_heads, N = d_state):
  a = RMSNorm_1e-5(u)·w_in;  [xBC | z | A_log] = in_proj(a)
  xBC = conv1d_causal(xBC) (+ bias);  x: (H, P), B, C: (G, N), head h uses group h // (H/G)
  s_t = exp(-softplus(A_log_t))·s_{t-1} + x_t ⊗ B_t ;  y_t = s_t·C_t + D·x_t
  mixer(u) = out_proj(y · silu(z + z_bias))        (z_bias ≡ 0 when bias)
  h = u + mixer;  out = h + down(silu(gate(n)) · up(n)),  n = RMSNorm_1e-5(h)·w_post
  logits = RMSNorm_{norm_epsilon}(h_L)·w_f · Eᵀ (tied) or lm_head.
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from molt_torch import read_safetensors, write_safetensors  # noqa: E402  (file I/O only)

DT = torch.float64
MLP_KEYS = ("intermediate_size", "bias", "act_fn")


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d, dtype=DT))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Mixer(nn.Module):  # DiscreteMamba2
    def __init__(self, d_model, d_state=64, n_qk_heads=32, n_v_heads=32, d_conv=4, expand=1,
                 activation="identity", bias=False, conv_bias=True, chunk_size=128, **_):
        super().__init__()
        assert activation == "identity"
        self.di, self.N, self.G, self.H, self.K = expand * d_model, d_state, n_qk_heads, \
            n_v_heads, d_conv
        assert self.di % self.H == 0 and self.H % self.G == 0
        self.P = self.di // self.H
        rows = 2 * self.di + 2 * self.G * self.N + self.H
        self.in_proj = nn.Linear(d_model, rows, bias=bias, dtype=DT)
        if not bias:
            self.z_bias = nn.Parameter(torch.zeros(self.di, dtype=DT))
        else:
            self.z_bias = None
        cc = self.di + 2 * self.G * self.N
        self.conv1d = nn.Conv1d(cc, cc, d_conv, groups=cc, padding=d_conv - 1, bias=conv_bias,
                                dtype=DT)
        self.D = nn.Parameter(torch.ones(self.H, dtype=DT))
        self.out_proj = nn.Linear(self.di, d_model, bias=bias, dtype=DT)

    def forward(self, u):  # u: [T, d]
        T = u.shape[0]
        gn = self.G * self.N
        xBC, z, A_log = torch.split(self.in_proj(u), [self.di + 2 * gn, self.di, self.H], -1)
        # causal depthwise conv over time: out_t = b + Σ_k w_k · in_{t-K+1+k}
        xBC = self.conv1d(xBC.t().unsqueeze(0))[0, :, :T].t()
        x, B, C = torch.split(xBC, [self.di, gn, gn], -1)
        x = x.reshape(T, self.H, self.P)
        rep = self.H // self.G
        B = B.reshape(T, self.G, self.N).repeat_interleave(rep, 1)  # [T, H, N]
        C = C.reshape(T, self.G, self.N).repeat_interleave(rep, 1)
        decay = torch.exp(-F.softplus(A_log))  # [T, H]
        s = torch.zeros(self.H, self.P, self.N, dtype=DT)
        ys = []
        for t in range(T):
            s = decay[t][:, None, None] * s + x[t][:, :, None] * B[t][:, None, :]
            ys.append(torch.einsum("hpn,hn->hp", s, C[t]) + self.D[:, None] * x[t])
        y = torch.stack(ys).reshape(T, self.di)
        zb = self.z_bias if self.z_bias is not None else 0.0
        return self.out_proj(y * F.silu(z + zb))


class MLP(nn.Module):
    def __init__(self, d, intermediate_size, bias=False, act_fn="silu"):
        super().__init__()
        assert act_fn == "silu"
        self.gate_proj = nn.Linear(d, intermediate_size, bias=bias, dtype=DT)
        self.up_proj = nn.Linear(d, intermediate_size, bias=bias, dtype=DT)
        self.down_proj = nn.Linear(intermediate_size, d, bias=bias, dtype=DT)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["d_model"]
        self.mixer = Mixer(d, **cfg["ssm_cfg"])
        self.input_layernorm = RMSNorm(d, 1e-5)  # fixed in cartesia's Block
        self.post_attention_layernorm = RMSNorm(d, 1e-5)
        self.mlp = MLP(d, **cfg["mlp_cfg"])

    def forward(self, h):
        h = h + self.mixer(self.input_layernorm(h))
        return h + self.mlp(self.post_attention_layernorm(h))


class Backbone(nn.Module):
    def __init__(self, cfg, V):
        super().__init__()
        self.embedding = nn.Embedding(V, cfg["d_model"], dtype=DT)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg["n_layer"]))
        self.final_layernorm = RMSNorm(cfg["d_model"], cfg.get("norm_epsilon", 1e-5))


class Llamba(nn.Module):
    """LlambaLMHeadModel's layout: backbone.* and lm_head (untied only)."""

    def __init__(self, cfg):
        super().__init__()
        assert set(cfg["mlp_cfg"]) <= set(MLP_KEYS), cfg["mlp_cfg"]  # LlamaMLP(**mlp_cfg)
        V, mult = cfg["vocab_size"], cfg.get("pad_vocab_size_multiple", 8)
        V += (mult - V % mult) % mult
        self.tied = cfg.get("tie_embeddings", False)
        self.backbone = Backbone(cfg, V)
        if not self.tied:
            self.lm_head = nn.Linear(cfg["d_model"], V, bias=cfg.get("lm_head_bias", False),
                                     dtype=DT)

    def forward(self, ids):
        h = self.backbone.embedding(ids)
        for blk in self.backbone.layers:
            h = blk(h)
        h = self.backbone.final_layernorm(h)
        return h @ self.backbone.embedding.weight.t() if self.tied else self.lm_head(h)


def load(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    m = Llamba(cfg)
    sd = read_safetensors(os.path.join(d, "model.safetensors"))
    m.load_state_dict({k: v.to(DT) for k, v in sd.items()}, strict=True)
    return m


def randomize(m, g):
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("layernorm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g, dtype=DT))
            elif name.endswith(".D"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g, dtype=DT))
            elif name.endswith("embedding.weight"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=DT))
            elif name.endswith("conv1d.weight"):
                p.copy_(0.6 * torch.rand(p.shape, generator=g, dtype=DT) - 0.3)
            else:  # Linear weights and every bias: U(±1/√fan_in) scaled up a little
                fan = p.shape[-1] if p.dim() > 1 else 4
                p.copy_((2 * torch.rand(p.shape, generator=g, dtype=DT) - 1) * 1.5 / fan ** 0.5)
            p.copy_(p.float().double())  # the fp32 values the file will hold


def make(out):
    variants = {
        "a": {"model_type": "llamba", "vocab_size": 197, "tie_embeddings": True,
              "pad_vocab_size_multiple": 8, "lm_head_bias": False, "d_model": 24, "n_layer": 2,
              "resid_dropout": 0.0, "norm_epsilon": 0.25,
              "mlp_cfg": {"intermediate_size": 40, "bias": False, "act_fn": "silu"},
              "ssm_cfg": {"d_state": 8, "n_v_heads": 6, "n_qk_heads": 2, "expand": 1,
                          "chunk_size": 8, "activation": "identity", "bias": False}},
        "b": {"vocab_size": 96, "tie_embeddings": False, "pad_vocab_size_multiple": 8,
              "lm_head_bias": False, "d_model": 16, "n_layer": 2, "resid_dropout": 0.0,
              "norm_epsilon": 1e-5,
              "mlp_cfg": {"intermediate_size": 24, "bias": False, "act_fn": "silu"},
              "ssm_cfg": {"d_state": 4, "n_v_heads": 4, "n_qk_heads": 4, "expand": 2,
                          "chunk_size": 8, "activation": "identity", "bias": True,
                          "conv_bias": False, "d_conv": 3}},
    }
    g = torch.Generator().manual_seed(1234)
    for name, cfg in variants.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        m = Llamba(cfg)
        randomize(m, g)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        write_safetensors(os.path.join(d, "model.safetensors"), m.state_dict(), dtype="F32")
        V = m.backbone.embedding.weight.shape[0]
        ids = torch.randint(0, V, (37,), generator=g)
        with torch.no_grad():
            logits = m(ids)
        write_safetensors(os.path.join(d, "ref.safetensors"),
                          {"ids_0": ids.to(torch.int32), "logits_0": logits}, dtype="F64")


def check(d, ref):
    r = read_safetensors(ref)
    with torch.no_grad():
        logits = load(d)(r["ids_0"].long())
    err = (logits - r["logits_0"]).abs().max().item()
    print("max |logit - ref| = %.3g" % err)
    return 0 if err <= 1e-9 else 1


if __name__ == "__main__":
    torch.set_num_threads(1)
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
