#!/usr/bin/env python3
"""peer_torch.py — the PyTorch peer of bench/bench_gpu.c (issue 12): the same
workloads at the same shapes, measured by idiomatic PyTorch in the same run on
the same GPU, one JSON line per measurement with bench_gpu's keys where they
mean the same thing, plus "engine": "pytorch".

Shapes (as bench_gpu.c): teacher = Llama-3.2-1B shape (hidden 2048, 16 layers,
32 heads / 8 KV heads × 64, MLP 8192, vocab 128256, tied, rope_theta 500000);
student = Llamba-1B shape (DiscreteMamba2 mixer, ALGORITHMS.md §2.2: in_proj
rows [x, B, C, z, A_log], 32 heads × 64, n_qk_heads 32, d_state 64, causal
conv1d width 4 over xBC (identity-initialised), decay exp(-softplus(A_log_t)),
D skip, gate silu(z + z_bias), out_proj; Llama MLP and RMSNorms), random
weights, batch × seq = 4 × 2048 by default.

  gemm     torch.matmul 8192×2048×8192 (y = x·wᵀ as molt's k_matmul): bf16 on
           random data (the "measured bf16 GEMM rate", the denominator of every
           mfu_vs_measured_gemm), bf16 on zeros (bench_gpu's own data), fp32, tf32
  ssd      the SSD chunked scan alone, forward + backward, student shape,
           bf16 and fp32 inputs
  decode   Llamba-1B greedy decode, a plain per-token step function (conv
           state + SSM state per layer, argmax on the device, no CUDA graphs),
           fp32 and bf16 weights, batch 1 and 64
  teacher  HF LlamaForCausalLM (attn_implementation="sdpa") training step:
           forward + cross-entropy + backward + clip_grad_norm_(1.0) + fused AdamW
  stage3   MOHAWK stage 3: teacher forward under no_grad (bf16 weights) +
           student forward, soft cross-entropy at τ = 1 against the teacher's
           logits, backward + clip + fused AdamW

Precision (--precision): "autocast" (default) = fp32 master weights, fp32
AdamW moments, bf16 autocast for the forward/backward (molt's scheme);
"bf16" = bf16 weights, gradients and AdamW state (no master copy). On CPU
everything is fp32. Every timed region ends with a device sync; the figure is
the median of --steps timed steps after --warmup untimed ones (2, as bench_gpu).
peak_gb = torch.cuda.max_memory_allocated over the workload; device_gb_used =
the device's used bytes after it (cudaMemGetInfo, bench_gpu's key).

The SSD scan: with --mamba-ssm DIR, state-spaces/mamba's Triton
mamba_chunk_scan_combined from DIR/mamba_ssm/ops/triton/ssd_combined.py (the
package's __init__ bypassed: `mamba_ssm` is stubbed in sys.modules with
__path__ = [DIR/mamba_ssm]; plain mamba_chunk_scan_combined, i.e. the
use_mem_eff_path=False route, called as cartesia's Llamba does: x/Δ, dt =
A_log, dt_softplus, A = -1, D·x added outside); else a pure-PyTorch chunked
SSD (the ssd_minimal form: segsum + einsums, chunk 128). "scan" in the JSON
says which ran. The teacher is HF's LlamaForCausalLM; where transformers is
not importable (CPU test machines) a minimal torch Llama with the same
parameter names runs instead, and "teacher_impl" says so (on CUDA, HF is
required unless --teacher-impl minimal is given).

On the GPU machine, from the repo root (snapshot at .gpu/mamba_ssm_snapshot):

  python3 bench/peer_torch.py --check --mamba-ssm .gpu/mamba_ssm_snapshot
  python3 bench/peer_torch.py --mamba-ssm .gpu/mamba_ssm_snapshot
  python3 bench/peer_torch.py --mamba-ssm .gpu/mamba_ssm_snapshot --precision bf16 --only stage3
  python3 bench/peer_torch.py --small --mamba-ssm .gpu/mamba_ssm_snapshot     # bench_gpu --small (d 512, 4 layers)

The snapshot: state-spaces/mamba at e9594ce1c732d97440f0332fdc43170a2294dbfa, only
mamba_ssm/ops/triton/*.py, mamba_ssm/{ops,ops/triton,utils}/__init__.py,
mamba_ssm/utils/{torch,determinism}.py and LICENSE (no mamba_ssm/__init__.py);
it needs triton, einops and packaging, which the GPU image has.
(The whole default run: a few minutes; a workload that runs out of memory prints
{"bench": ..., "error": "OOM: ..."} and the next one goes on.)

On a CPU machine (no transformers, no triton; a 2-layer d 256 vocab 1000
model, batch 2 × 128 tokens, fp32):

  python3 bench/peer_torch.py --small --device cpu
  python3 bench/peer_torch.py --check          # exits 1 when a check fails

--check: (1) the torch chunked SSD against the sequential recurrence in
float64 (outputs and gradients, several shapes, ≤ 1e-10); (2) the student's
chunked forward against its sequential-scan forward, (3) its decode step loop
against its forward, all float64 on the CPU, ≤ 1e-10; (4) the minimal Llama
against HF's (when transformers is importable; fp32, ≤ 1e-5 of max|logits|, as
HF computes norms and RoPE angles in fp32 whatever the dtype); (5) with CUDA and --mamba-ssm,
Triton against the torch chunked form in fp32 (loose: Triton's dots are tf32).

usage: peer_torch.py [--batch B] [--seq T] [--steps S] [--warmup W] [--only NAME]
                     [--small] [--tf32] [--device cuda|cpu] [--precision autocast|bf16]
                     [--mamba-ssm DIR] [--teacher-impl auto|hf|minimal] [--threads N] [--check]
"""
import argparse
import gc
import json
import math
import os
import sys
import time
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

ENGINE = {"engine": "pytorch", "torch": torch.__version__}
CHUNK = 128
D_CONV = 4


def emit(rec):
    out = dict(rec)
    out.update(ENGINE)
    print(json.dumps(out), flush=True)


# =============================================================================
# the SSD scan: sequential reference, pure-torch chunked form, Triton kernel

def ssd_sequential(x, log_a, B, C):
    """h_t = exp(log_a_t)·h_{t−1} + x_t⊗B_t, y_t = h_t·C_t (zero initial state).
    x[b,T,h,p], log_a[b,T,h], B/C[b,T,h,n] → y[b,T,h,p]."""
    b, T, h, p = x.shape
    s = x.new_zeros(b, h, p, B.shape[-1])
    ys = []
    for t in range(T):
        s = torch.exp(log_a[:, t])[:, :, None, None] * s + x[:, t, :, :, None] * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", s, C[:, t]))
    return torch.stack(ys, dim=1)


def segsum(a):
    """a[..., l] → S[..., l, l], S[i, j] = Σ_{k=j+1..i} a_k for j ≤ i, −inf above
    (masked cumulative sum: no differences of large prefix sums)."""
    l = a.shape[-1]
    x = a[..., :, None].expand(*a.shape, l)  # x[..., k, j] = a_k
    keep = torch.ones(l, l, dtype=torch.bool, device=a.device)
    x = x.masked_fill(~keep.tril(-1), 0.0)
    s = torch.cumsum(x, dim=-2)
    return s.masked_fill(~keep.tril(), -math.inf)


def ssd_chunked(x, log_a, B, C, chunk=CHUNK):
    """The same map as ssd_sequential in chunks of `chunk` tokens (the
    ssd_minimal form): intra-chunk (C·B ⊙ exp segsum) x, chunk-final states,
    the inter-chunk recurrence over those states, and their contribution.
    Decays in fp32 (fp64 for fp64 inputs); the products in x's dtype."""
    b, T, h, p = x.shape
    n = B.shape[-1]
    pad = (-T) % chunk
    if pad:
        x, B, C = (F.pad(v, (0, 0, 0, 0, 0, pad)) for v in (x, B, C))
        log_a = F.pad(log_a, (0, 0, 0, pad))
    c, l = (T + pad) // chunk, chunk
    adt = torch.float64 if x.dtype == torch.float64 else torch.float32
    X, Bc, Cc = x.reshape(b, c, l, h, p), B.reshape(b, c, l, h, n), C.reshape(b, c, l, h, n)
    A = log_a.to(adt).reshape(b, c, l, h).permute(0, 3, 1, 2)  # [b,h,c,l]
    Acs = torch.cumsum(A, dim=-1)
    # 1. within a chunk
    Lw = torch.exp(segsum(A)).to(x.dtype)  # [b,h,c,l,l]
    CB = torch.einsum("bclhn,bcshn->bhcls", Cc, Bc)
    y = torch.einsum("bhcls,bcshp->bclhp", CB * Lw, X)
    # 2. each chunk's final state from its own inputs
    to_end = torch.exp(Acs[..., -1:] - Acs).to(x.dtype)  # [b,h,c,l]
    st = torch.einsum("bclhn,bclhp->bchpn", Bc * to_end.permute(0, 2, 3, 1)[..., None], X)
    # 3. states entering each chunk: recurrence over chunks
    st = torch.cat([torch.zeros_like(st[:, :1]), st], dim=1)  # [b,c+1,h,p,n]
    dchunk = torch.exp(segsum(F.pad(Acs[..., -1], (1, 0)))).to(x.dtype)  # [b,h,c+1,c+1]
    st = torch.einsum("bhzc,bchpn->bzhpn", dchunk, st)[:, :-1]
    # 4. their contribution inside the chunk
    from_start = torch.exp(Acs).to(x.dtype).permute(0, 2, 3, 1)[..., None]  # [b,c,l,h,1]
    y = y + torch.einsum("bclhn,bchpn->bclhp", Cc, st) * from_start
    return y.reshape(b, c * l, h, p)[:, :T]


class Scan:
    """The SSD scan that runs: Triton's mamba_chunk_scan_combined (--mamba-ssm)
    or the torch chunked form; `name` goes into the JSON. Both forms give
    y_t = Σ_{s≤t} C_t·B_s exp(Σ_{k=s+1..t} log_a_k) x_s (no D term)."""

    def __init__(self, mamba_dir=None):
        self.name, self.kernel, self.chunk = "torch-chunked-ssd-minimal", None, CHUNK
        if mamba_dir:
            self.kernel = load_mamba_triton(mamba_dir)
            self.name = "triton-mamba_chunk_scan_combined"

    def discrete(self, x, a_raw, B, C):
        """DiscreteMamba2: decay exp(−softplus(a_raw)), input x⊗B."""
        if self.kernel is None:
            return ssd_chunked(x, -F.softplus(a_raw.to(torch.promote_types(a_raw.dtype, torch.float32))),
                               B, C, self.chunk)
        delta = F.softplus(a_raw.float()).to(x.dtype)
        A = -torch.ones(x.shape[2], device=x.device, dtype=torch.float32)
        return self.kernel(x / delta[..., None], a_raw, A, B, C, self.chunk, dt_softplus=True)

    def raw(self, x, dt, B, C):
        """The scan alone (the ssd bench): h = exp(−dt)·h + dt·x⊗B, y = h·C."""
        if self.kernel is None:
            return ssd_chunked(x * dt[..., None].to(x.dtype), -dt, B, C, self.chunk)
        A = -torch.ones(x.shape[2], device=x.device, dtype=torch.float32)
        return self.kernel(x, dt, A, B, C, self.chunk)


def load_mamba_triton(path):
    """mamba_chunk_scan_combined from a state-spaces/mamba checkout or snapshot
    at `path`, without running mamba_ssm/__init__.py (which imports the CUDA
    extensions selective_scan_cuda / causal_conv1d and the modules)."""
    root = os.path.abspath(path)
    pkg_dir = os.path.join(root, "mamba_ssm")
    if not os.path.isfile(os.path.join(pkg_dir, "ops", "triton", "ssd_combined.py")):
        sys.exit("peer_torch: %s has no mamba_ssm/ops/triton/ssd_combined.py" % path)
    stub = types.ModuleType("mamba_ssm")
    stub.__path__ = [pkg_dir]  # a package whose __init__ never runs
    sys.modules["mamba_ssm"] = stub
    if root not in sys.path:
        sys.path.insert(0, root)
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined  # noqa: E402
    return mamba_chunk_scan_combined


# =============================================================================
# models

class RMSNorm(nn.Module):
    """HF LlamaRMSNorm: fp32 statistics, back to the input dtype, × weight."""

    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(d))

    def forward(self, x):
        dt = x.dtype
        x = x.to(torch.promote_types(dt, torch.float32))  # fp64 stays fp64 (the checks)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


class MLP(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class MiniAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.H, self.KV, self.hd = c["H"], c["KV"], c["hd"]
        self.q_proj = nn.Linear(c["D"], self.H * self.hd, bias=False)
        self.k_proj = nn.Linear(c["D"], self.KV * self.hd, bias=False)
        self.v_proj = nn.Linear(c["D"], self.KV * self.hd, bias=False)
        self.o_proj = nn.Linear(self.H * self.hd, c["D"], bias=False)

    def forward(self, x, cos, sin):
        b, T, _ = x.shape
        q = self.q_proj(x).view(b, T, self.H, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, T, self.KV, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, T, self.KV, self.hd).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(self.H // self.KV, dim=1)
        v = v.repeat_interleave(self.H // self.KV, dim=1)
        if hasattr(F, "scaled_dot_product_attention"):
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch < 2.0
            s = q @ k.transpose(-1, -2) / math.sqrt(self.hd)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            o = torch.softmax(s.masked_fill(mask, -math.inf), dim=-1) @ v
        return self.o_proj(o.transpose(1, 2).reshape(b, T, -1))


class MiniLlamaBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["D"], c["eps"])
        self.self_attn = MiniAttention(c)
        self.post_attention_layernorm = RMSNorm(c["D"], c["eps"])
        self.mlp = MLP(c["D"], c["F"])

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class MiniLlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["V"], c["D"])
        self.layers = nn.ModuleList(MiniLlamaBlock(c) for _ in range(c["L"]))
        self.norm = RMSNorm(c["D"], c["eps"])


class MiniLlama(nn.Module):
    """The fallback teacher: HF LlamaForCausalLM's forward (default RoPE,
    GQA, SwiGLU, tied head) with HF's parameter names, for machines without
    transformers."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = MiniLlamaModel(c)
        self.lm_head = nn.Linear(c["D"], c["V"], bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight
        hd = c["hd"]  # default RoPE, angles in fp32 as HF computes them
        self.register_buffer("inv_freq", 1.0 / (c["theta"] ** (torch.arange(0, hd, 2).float() / hd)),
                             persistent=False)

    def forward(self, input_ids, use_cache=False):
        T = input_ids.shape[1]
        pos = torch.arange(T, device=input_ids.device, dtype=torch.float32)
        ang = pos[:, None] * self.inv_freq.to(input_ids.device, torch.float32)[None, :]
        ang = torch.cat([ang, ang], dim=-1)
        x = self.model.embed_tokens(input_ids)
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return types.SimpleNamespace(logits=self.lm_head(self.model.norm(x)))


class DiscreteMamba2(nn.Module):
    """Llamba's mixer (ALGORITHMS.md §2.2), n_qk_heads = n_v_heads = H."""

    def __init__(self, c):
        super().__init__()
        self.H, self.P, self.N = c["H"], c["D"] // c["H"], c["NS"]
        self.Di = self.H * self.P
        self.Cc = self.Di + 2 * self.H * self.N
        self.in_proj = nn.Linear(c["D"], self.Cc + self.Di + self.H, bias=False)
        w = torch.zeros(self.Cc, 1, D_CONV)
        w[:, 0, -1] = 1.0  # identity conv (MOHAWK's init)
        self.conv_weight = nn.Parameter(w)
        self.conv_bias = nn.Parameter(torch.zeros(self.Cc))
        self.z_bias = nn.Parameter(torch.zeros(self.Di))
        self.D = nn.Parameter(torch.ones(self.H))
        self.out_proj = nn.Linear(self.Di, c["D"], bias=False)

    def split(self, xbc):
        Di, HN = self.Di, self.H * self.N
        sh = xbc.shape[:-1]
        return (xbc[..., :Di].reshape(*sh, self.H, self.P),
                xbc[..., Di:Di + HN].reshape(*sh, self.H, self.N),
                xbc[..., Di + HN:].reshape(*sh, self.H, self.N))

    def forward(self, u, scan):
        b, T, _ = u.shape
        xbc, z, a_raw = torch.split(self.in_proj(u), [self.Cc, self.Di, self.H], dim=-1)
        xbc = F.conv1d(xbc.transpose(1, 2), self.conv_weight, self.conv_bias,
                       padding=D_CONV - 1, groups=self.Cc)[..., :T].transpose(1, 2)
        x, Bm, Cm = self.split(xbc)
        if scan == "sequential":
            y = ssd_sequential(x, -F.softplus(a_raw), Bm, Cm)
        else:
            y = scan.discrete(x, a_raw, Bm, Cm)
        y = y + self.D.to(x.dtype)[:, None] * x
        return self.out_proj(y.reshape(b, T, self.Di) * F.silu(z + self.z_bias.to(z.dtype)))

    def step(self, u, st):
        """One token: u[b, d]; st = (conv[b, Cc, K−1], ssm[b, H, P, N] fp32), updated in place."""
        conv, ssm = st
        xbc, z, a_raw = torch.split(self.in_proj(u), [self.Cc, self.Di, self.H], dim=-1)
        win = torch.cat([conv, xbc[:, :, None]], dim=-1)  # [b, Cc, K]
        conv.copy_(win[:, :, 1:])
        xbc = (win * self.conv_weight[:, 0, :]).sum(-1) + self.conv_bias
        x, Bm, Cm = self.split(xbc)
        decay = torch.exp(-F.softplus(a_raw.to(ssm.dtype)))
        ssm.mul_(decay[:, :, None, None]).add_(x.to(ssm.dtype)[..., None] * Bm.to(ssm.dtype)[:, :, None, :])
        y = torch.einsum("bhpn,bhn->bhp", ssm, Cm.to(ssm.dtype)).to(x.dtype) + self.D.to(x.dtype)[:, None] * x
        return self.out_proj(y.reshape(u.shape[0], self.Di) * F.silu(z + self.z_bias))


class LlambaBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["D"], c["eps"])
        self.mixer = DiscreteMamba2(c)
        self.post_attention_layernorm = RMSNorm(c["D"], c["eps"])
        self.mlp = MLP(c["D"], c["F"])


class Llamba(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["V"], c["D"])
        self.layers = nn.ModuleList(LlambaBlock(c) for _ in range(c["L"]))
        self.norm = RMSNorm(c["D"], c["eps"])

    def forward(self, ids, scan):
        x = self.embed_tokens(ids)
        for blk in self.layers:
            x = x + blk.mixer(blk.input_layernorm(x), scan)
            x = x + blk.mlp(blk.post_attention_layernorm(x))
        return F.linear(self.norm(x), self.embed_tokens.weight)

    def new_state(self, batch, device):
        dt = self.embed_tokens.weight.dtype
        m = self.layers[0].mixer
        return [(torch.zeros(batch, m.Cc, D_CONV - 1, device=device, dtype=dt),
                 torch.zeros(batch, m.H, m.P, m.N, device=device,
                             dtype=torch.float64 if dt == torch.float64 else torch.float32))
                for _ in self.layers]

    def step(self, tok, state):
        """tok[b] → logits[b, V]; advances `state` by one token."""
        x = self.embed_tokens(tok)
        for blk, st in zip(self.layers, state):
            x = x + blk.mixer.step(blk.input_layernorm(x), st)
            x = x + blk.mlp(blk.post_attention_layernorm(x))
        return F.linear(self.norm(x), self.embed_tokens.weight)


def init_random(model, seed):
    """N(0, 0.02) for every Linear and Embedding weight, drawn on the model's
    device; conv (identity), norms, D and z_bias keep their init."""
    with torch.no_grad():
        for i, (name, p) in enumerate(model.named_parameters()):
            if p.dim() == 2:
                g = torch.Generator(device=p.device).manual_seed(seed * 1000 + i)
                p.normal_(0.0, 0.02, generator=g)


def n_params(model):
    return sum(p.numel() for p in model.parameters())  # tied weights once


def param_bytes(model):
    return sum(p.numel() * p.element_size() for p in model.parameters())


def have_transformers():
    try:
        import transformers  # noqa: F401
        return True
    except Exception:
        return False


def build_teacher(c, impl, device, dtype):
    """(model, impl description). HF LlamaForCausalLM with sdpa, or MiniLlama."""
    if impl == "hf":
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM
        cfg = LlamaConfig(vocab_size=c["V"], hidden_size=c["D"], intermediate_size=c["F"],
                          num_hidden_layers=c["L"], num_attention_heads=c["H"],
                          num_key_value_heads=c["KV"], head_dim=c["hd"],
                          max_position_embeddings=8192, rms_norm_eps=c["eps"],
                          tie_word_embeddings=True, rope_theta=c["theta"],
                          attn_implementation="sdpa", use_cache=False)
        theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta",
                                                                  getattr(cfg, "rope_theta", None))
        if theta is None or float(theta) != float(c["theta"]):
            sys.exit("peer_torch: LlamaConfig did not take rope_theta %s (got %s)" % (c["theta"], theta))
        m = on_device(lambda: LlamaForCausalLM(cfg), device)
        attn = getattr(m.config, "_attn_implementation", None)
        if device.type == "cuda" and attn != "sdpa":
            sys.exit("peer_torch: HF chose attention %r, not sdpa" % attn)
        desc = "hf-transformers %s LlamaForCausalLM attn=%s" % (transformers.__version__, attn)
    else:
        m = on_device(lambda: MiniLlama(c), device)
        desc = "minimal-torch-llama (transformers not used)"
    init_random(m, 1)
    return m.to(device=device, dtype=dtype), desc


def on_device(fn, device):
    """Build a module directly on `device` where torch allows (torch ≥ 2.0)."""
    if hasattr(torch.device(device), "__enter__"):
        with torch.device(device):
            return fn()
    return fn().to(device)


def build_student(c, device, dtype):
    m = on_device(lambda: Llamba(c), device)
    init_random(m, 2)
    return m.to(device=device, dtype=dtype)


# =============================================================================
# measurement helpers

class Dev:
    def __init__(self, device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset(self):
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def mem(self):
        if not self.cuda:
            return {}
        free, total = torch.cuda.mem_get_info(self.device)
        return {"peak_gb": round(torch.cuda.max_memory_allocated(self.device) * 1e-9, 2),
                "peak_reserved_gb": round(torch.cuda.max_memory_reserved(self.device) * 1e-9, 2),
                "device_gb_used": round((total - free) * 1e-9, 1)}

    def autocast(self, on):
        if on and self.cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return _Null()


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def set_tf32(on):
    """tf32 for fp32 matmuls on or off (torch ≥ 2.9's fp32_precision where it exists)."""
    mm = torch.backends.cuda.matmul
    try:
        mm.fp32_precision  # torch < 2.9 raises here (AssertionError in its __getattr__)
        mm.fp32_precision = "tf32" if on else "ieee"
    except (AttributeError, AssertionError):
        mm.allow_tf32 = on


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def timed(dev, fn, steps, warmup):
    """Median seconds of `steps` calls after `warmup`, each ending with a sync."""
    tt, out = [], None
    for i in range(warmup + steps):
        dev.sync()
        t0 = time.perf_counter()
        out = fn()
        dev.sync()
        if i >= warmup:
            tt.append(time.perf_counter() - t0)
    return median(tt), out


def make_opt(params, dev):
    kw = dict(lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    if dev.cuda:
        return torch.optim.AdamW(params, fused=True, **kw), "fused"
    return torch.optim.AdamW(params, **kw), "default"


def ids_of(B, T, V, device):
    i = torch.arange(B * T, dtype=torch.int64)
    return (((i * 131 + 7) % V).view(B, T).to(device), ((i * 17 + 3) % V).view(B, T).to(device))


def train_flops(params, B, T, c, attn):
    """6·params·tokens + causal attention products (fwd + bwd = 3× fwd), as bench_gpu."""
    f = 6.0 * params * B * T
    if attn:
        f += 3.0 * 2.0 * 2.0 * c["L"] * c["H"] * c["hd"] * (T * (T + 1) / 2) * B
    return f


# =============================================================================
# workloads

def bench_gemm(a, dev):
    M, K, N = (8192, 2048, 8192) if dev.cuda else (1024, 256, 1024)
    rows, rate = [], None
    cases = [("bf16", "randn", torch.bfloat16, False), ("bf16", "zeros", torch.bfloat16, False),
             ("fp32", "randn", torch.float32, False), ("tf32", "randn", torch.float32, True)]
    den = ("bf16", "randn") if dev.cuda else ("fp32", "randn")  # CPU runs are fp32
    if not dev.cuda:
        cases = [cases[0], cases[2]]
    for prec, data, dt, tf32 in cases:
        set_tf32(tf32)
        g = torch.Generator(device="cpu").manual_seed(0)
        mk = (lambda *s: torch.randn(*s, generator=g).to(dev.device, dt)) if data == "randn" else \
            (lambda *s: torch.zeros(*s, device=dev.device, dtype=dt))
        x, w = mk(M, K), mk(N, K)
        reps = 10 if dev.cuda else 1
        best = math.inf
        for r in range(6):
            dev.sync()
            t0 = time.perf_counter()
            for _ in range(reps):
                y = torch.matmul(x, w.t())
            dev.sync()
            dt_ = (time.perf_counter() - t0) / reps
            if r:
                best = min(best, dt_)  # the first round warms cuBLAS up
        tf = 2.0 * M * K * N / best * 1e-12
        if (prec, data) == den:
            rate = tf
        rows.append({"bench": "gemm", "shape": "%dx%dx%d" % (M, K, N), "precision": prec,
                     "data": data, "tflops": round(tf, 1 if dev.cuda else 3),
                     "op": "torch.matmul(x, w.t())"})
        del x, w, y
    set_tf32(a.tf32)
    for r in rows:
        r["mfu_denominator"] = (r["precision"], r["data"]) == den
        emit(r)
    return rate


def bench_ssd(a, c, dev, scan):
    B, T, H, P, N = a.batch, a.seq, c["H"], c["D"] // c["H"], c["NS"]

    def one(dt):
        g = torch.Generator(device="cpu").manual_seed(3)
        mk = lambda *s: (torch.rand(*s, generator=g) - 0.5).to(dev.device, dt).requires_grad_()
        x, Bm, Cm = mk(B, T, H, P), mk(B, T, H, N), mk(B, T, H, N)
        # decay rates as bench_gpu: dA = −(0.02 + 0.01·(i mod 7))
        delta = (0.02 + 0.01 * (torch.arange(B * T * H) % 7).float()).view(B, T, H)
        delta = delta.to(dev.device, torch.float32).requires_grad_()
        dy = (torch.rand(B, T, H, P, generator=g) - 0.5).to(dev.device, dt)

        def step():
            for v in (x, Bm, Cm, delta):
                v.grad = None
            scan.raw(x, delta, Bm, Cm).backward(dy)

        per, _ = timed(dev, step, a.steps, a.warmup)
        rec = {"bench": "ssd_scan_fwd_bwd",
               "shape": "H %d P %d N %d G %d chunk %d" % (H, P, N, H, CHUNK),
               "batch": B, "seq": T, "tokens_per_s": round(B * T / per), "ms": round(per * 1e3, 2),
               "dtype": {torch.bfloat16: "bf16", torch.float32: "fp32"}[dt], "scan": scan.name,
               "sequences": "batched", "dt": "fp32"}
        rec.update(dev.mem())
        emit(rec)

    for dt in ([torch.bfloat16, torch.float32] if dev.cuda else [torch.float32]):
        dev.reset()
        one(dt)


def bench_attn(a, c, dev):
    """Causal GQA attention alone, bf16, as bench_gpu --only attn: PyTorch's
    scaled_dot_product_attention (flash backend on the GPU), forward and
    forward + backward timed apart."""
    import torch.nn.functional as Fn
    B, T, H, KV, hd = a.batch, a.seq, c["H"], c["KV"], c["hd"]
    g = torch.Generator(device="cpu").manual_seed(5)
    mk = lambda h: (torch.rand(B, h, T, hd, generator=g) * 2 - 1).to(dev.device, torch.bfloat16)
    q, k, v = mk(H).requires_grad_(), mk(KV).requires_grad_(), mk(KV).requires_grad_()
    dO = mk(H)

    def fwd():
        with torch.no_grad():
            return Fn.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    def fwd_bwd():
        for t in (q, k, v):
            t.grad = None
        Fn.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).backward(dO)

    tf, _ = timed(dev, fwd, a.steps, a.warmup)
    tfb, _ = timed(dev, fwd_bwd, a.steps, a.warmup)
    tb = max(tfb - tf, 1e-9)
    fl = 2.0 * 2.0 * B * H * hd * (T * (T + 1) / 2)
    rec = {"bench": "attn_flash", "shape": "H %d KV %d hd %d" % (H, KV, hd), "batch": B, "seq": T,
           "precision": "bf16", "impl": "F.scaled_dot_product_attention(is_causal, enable_gqa)",
           "fwd_ms": round(tf * 1e3, 3), "bwd_ms": round(tb * 1e3, 3),
           "fwd_tflops": round(fl / tf * 1e-12, 1), "bwd_tflops": round(2.5 * fl / tb * 1e-12, 1),
           "layers16_fwd_bwd_ms": round(16 * tfb * 1e3, 1)}
    rec.update(dev.mem())
    emit(rec)


def bench_decode(a, c, dev, steps=20):
    def one(wname, wdt):
        m = build_student(c, dev.device, wdt)
        m.eval()
        wbytes = param_bytes(m)  # every weight read once a step (the tied embedding as lm_head)
        for n in (1, 64):
            state = m.new_state(n, dev.device)
            box = [(1 + torch.arange(n)).to(dev.device) % c["V"]]

            @torch.no_grad()
            def step():
                box[0] = m.step(box[0], state).argmax(-1)

            per, _ = timed(dev, step, steps, 3)
            rec = {"bench": "decode", "model": "llamba-1b shape" if not a.small else "llamba small",
                   "weights": wname, "batch": n, "tokens_per_s": round(n / per),
                   "ms_per_step": round(per * 1e3, 3), "weight_gb_per_step": round(wbytes * 1e-9, 2),
                   "gb_per_s": round(wbytes / per * 1e-9), "step": "python step loop, no CUDA graphs",
                   "sampling": "greedy argmax on device", "ssm_state": "fp32"}
            rec.update(dev.mem())
            emit(rec)

    for wname, wdt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        dev.reset()
        one(wname, wdt)


def precision_desc(a, dev):
    if not dev.cuda:
        return "fp32", torch.float32, False
    if a.precision == "bf16":
        return "bf16 weights+grads+AdamW state (no master copy)", torch.bfloat16, False
    return "bf16 autocast, fp32 master weights + AdamW moments", torch.float32, True


def bench_teacher(a, c, dev, gemm_rate, impl):
    dev.reset()
    B, T = a.batch, a.seq
    prec, wdt, ac = precision_desc(a, dev)
    m, desc = build_teacher(c, impl, dev.device, wdt)
    m.train()
    opt, optk = make_opt(m.parameters(), dev)
    ids, tg = ids_of(B, T, c["V"], dev.device)
    V = c["V"]

    def step():
        opt.zero_grad(set_to_none=True)
        with dev.autocast(ac):
            logits = m(input_ids=ids, use_cache=False).logits
        loss = F.cross_entropy(logits.float().view(-1, V), tg.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        return loss.item()

    per, loss = timed(dev, step, a.steps, a.warmup)
    P = n_params(m)
    fl = train_flops(P, B, T, c, True)
    rec = {"bench": "teacher_train_step",
           "model": "llama-3.2-1b shape" if not a.small else "llama small", "batch": B, "seq": T,
           "tokens_per_s": round(B * T / per), "ms_per_step": round(per * 1e3, 1),
           "tflops": round(fl / per * 1e-12, 1),
           "mfu_vs_measured_gemm": round(fl / per * 1e-12 / gemm_rate, 3) if gemm_rate else None,
           "loss": round(loss, 4), "params": P, "teacher_impl": desc, "precision": prec,
           "adamw": optk, "clip_grad_norm": 1.0}
    rec.update(dev.mem())
    emit(rec)


def bench_stage3(a, ct, cs, dev, gemm_rate, impl, scan):
    dev.reset()
    B, T = a.batch, a.seq
    prec, wdt, ac = precision_desc(a, dev)
    tdt = torch.bfloat16 if dev.cuda else torch.float32  # the frozen teacher's weights
    t, desc = build_teacher(ct, impl, dev.device, tdt)
    t.eval()
    for p in t.parameters():
        p.requires_grad_(False)
    s = build_student(cs, dev.device, wdt)
    s.train()
    opt, optk = make_opt(s.parameters(), dev)
    ids, _ = ids_of(B, T, cs["V"], dev.device)
    V = cs["V"]

    def step():
        with torch.no_grad():
            tl = t(input_ids=ids, use_cache=False).logits
        opt.zero_grad(set_to_none=True)
        with dev.autocast(ac):
            sl = s(ids, scan)
        # soft cross-entropy at τ = 1: −Σ softmax(teacher)·log_softmax(student), mean over tokens
        p = torch.softmax(tl.float().view(-1, V), dim=-1)
        del tl
        loss = F.cross_entropy(sl.float().view(-1, V), p)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(s.parameters(), 1.0)
        opt.step()
        return loss.item()

    per, loss = timed(dev, step, a.steps, a.warmup)
    Pt, Ps = n_params(t), n_params(s)
    N = B * T
    fl = 2.0 * Pt * N + 2.0 * 2.0 * ct["L"] * ct["H"] * ct["hd"] * (T * (T + 1) / 2) * B + \
        train_flops(Ps, B, T, cs, False)
    rec = {"bench": "mohawk_stage3_step",
           "teacher": "llama-3.2-1b shape" if not a.small else "llama small",
           "student": "llamba-1b shape" if not a.small else "llamba small", "batch": B, "seq": T,
           "tokens_per_s": round(N / per), "ms_per_step": round(per * 1e3, 1),
           "tflops": round(fl / per * 1e-12, 1),
           "mfu_vs_measured_gemm": round(fl / per * 1e-12 / gemm_rate, 3) if gemm_rate else None,
           "loss": round(loss, 4), "teacher_params": Pt, "student_params": Ps,
           "teacher_impl": desc, "teacher_weights": {torch.bfloat16: "bf16"}.get(tdt, "fp32"),
           "scan": scan.name, "precision": prec, "adamw": optk, "clip_grad_norm": 1.0,
           "loss_fn": "soft CE tau=1 (F.cross_entropy with softmax(teacher) targets, fp32)"}
    rec.update(dev.mem())
    emit(rec)


# =============================================================================
# --check

def run_checks(a):
    torch.manual_seed(0)
    fails, dd = [], torch.float64

    def report(name, err, tol):
        ok = err <= tol
        print("%-58s max|diff| %.3e  (tol %.0e)  %s" % (name, err, tol, "ok" if ok else "FAIL"), flush=True)
        if not ok:
            fails.append(name)

    # (1) chunked SSD vs the sequential recurrence, float64, outputs and gradients
    for (b, T, h, p, n, ch) in [(2, 100, 3, 4, 5, 16), (1, 128, 2, 8, 4, 32), (2, 77, 2, 3, 6, 128),
                                (1, 256, 4, 16, 8, 64)]:
        x = torch.randn(b, T, h, p, dtype=dd, requires_grad=True)
        la = (-F.softplus(torch.randn(b, T, h, dtype=dd))).requires_grad_()
        Bm = torch.randn(b, T, h, n, dtype=dd, requires_grad=True)
        Cm = torch.randn(b, T, h, n, dtype=dd, requires_grad=True)
        dy = torch.randn(b, T, h, p, dtype=dd)
        ys = ssd_sequential(x, la, Bm, Cm)
        gs = torch.autograd.grad(ys, (x, la, Bm, Cm), dy)
        yc = ssd_chunked(x, la, Bm, Cm, ch)
        gc_ = torch.autograd.grad(yc, (x, la, Bm, Cm), dy)
        tag = "b%d T%d h%d p%d n%d chunk%d" % (b, T, h, p, n, ch)
        report("ssd chunked vs sequential, y      " + tag, (yc - ys).abs().max().item(), 1e-10)
        report("ssd chunked vs sequential, grads  " + tag,
               max((u - v).abs().max().item() for u, v in zip(gc_, gs)), 1e-10)

    # (2)(3) a tiny Llamba: chunked forward vs sequential forward; decode loop vs forward
    cs = {"D": 64, "L": 2, "H": 4, "KV": 2, "hd": 16, "F": 96, "V": 50, "NS": 8, "eps": 1e-5,
          "theta": 500000.0}
    s = build_student(cs, "cpu", dd)
    with torch.no_grad():  # non-trivial conv, D, z_bias
        for blk in s.layers:
            mx = blk.mixer
            mx.conv_weight.normal_(0, 0.5), mx.conv_bias.normal_(0, 0.1)
            mx.z_bias.normal_(0, 0.5), mx.D.normal_(1, 0.2)
            mx.in_proj.weight.normal_(0, 0.2)
    ids = torch.randint(0, cs["V"], (2, 45))
    scan = Scan(None)
    scan.chunk = 16
    with torch.no_grad():
        lc, lsq = s(ids, scan), s(ids, "sequential")
        report("student forward, chunked vs sequential scan", (lc - lsq).abs().max().item(), 1e-10)
        st = s.new_state(2, "cpu")
        steps = torch.stack([s.step(ids[:, i], st) for i in range(ids.shape[1])], dim=1)
        report("student decode step loop vs forward", (steps - lsq).abs().max().item(), 1e-10)

    # (4) the minimal Llama vs HF's LlamaForCausalLM (when transformers is importable):
    # in fp32, relative to max|logits| (HF computes RMSNorm and RoPE angles in fp32 even
    # for fp64 weights, so fp64 could not reach 1e-10 against it)
    ct = {"D": 64, "L": 2, "H": 4, "KV": 2, "hd": 16, "F": 96, "V": 50, "eps": 1e-5, "theta": 500000.0}
    if have_transformers():
        hf, desc = build_teacher(ct, "hf", torch.device("cpu"), torch.float32)
        mini, _ = build_teacher(ct, "minimal", torch.device("cpu"), torch.float32)
        res = mini.load_state_dict(hf.state_dict(), strict=False)
        if res.missing_keys or res.unexpected_keys:
            fails.append("minimal llama: state_dict mismatch %s" % (res,))
            print("minimal llama vs HF: state_dict mismatch %s" % (res,), flush=True)
        with torch.no_grad():
            ids = torch.randint(0, ct["V"], (2, 33))
            lh = hf(input_ids=ids, use_cache=False).logits
            err = ((lh - mini(input_ids=ids).logits).abs().max() / lh.abs().max()).item()
        report("minimal llama vs %s (fp32, rel.)" % desc, err, 1e-5)
    else:
        print("minimal llama vs HF: skipped (transformers not importable)", flush=True)

    # (5) Triton vs the torch chunked form on the GPU
    if a.mamba_ssm and torch.cuda.is_available():
        tri = Scan(a.mamba_ssm)
        ref = Scan(None)
        dev = torch.device("cuda")
        b, T, h, p, n = 2, 1000, 8, 64, 64
        g = torch.Generator(device="cpu").manual_seed(5)
        mk = lambda *s_: (torch.rand(*s_, generator=g) - 0.5).to(dev).requires_grad_()
        x, Bm, Cm = mk(b, T, h, p), mk(b, T, h, n), mk(b, T, h, n)
        araw = (torch.randn(b, T, h, generator=g)).to(dev).requires_grad_()
        dy = (torch.rand(b, T, h, p, generator=g) - 0.5).to(dev)
        outs = []
        for sc in (tri, ref):
            y = sc.discrete(x, araw, Bm, Cm)
            gr = torch.autograd.grad(y, (x, araw, Bm, Cm), dy)
            outs.append((y, gr))
        (yt, gt), (yr, gr_) = outs
        rel = lambda u, v: ((u - v).abs().max() / v.abs().max().clamp_min(1e-30)).item()
        report("triton vs torch chunked (fp32), y, rel. to max|y|", rel(yt, yr), 2e-2)
        report("triton vs torch chunked (fp32), grads, rel.", max(rel(u, v) for u, v in zip(gt, gr_)), 2e-2)
    elif a.mamba_ssm:
        print("triton vs torch chunked: skipped (no CUDA)", flush=True)

    print("check: %d failed" % len(fails), flush=True)
    return 1 if fails else 0


# =============================================================================

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--only", choices=["gemm", "attn", "ssd", "decode", "teacher", "stage3"])
    ap.add_argument("--small", action="store_true",
                    help="CUDA: bench_gpu's --small (d 512, 4 layers, 8 heads / 4 KV, MLP 1024, "
                         "vocab 32000); CPU: d 256, 2 layers, vocab 1000, batch 2 × 128")
    ap.add_argument("--tf32", action="store_true", help="allow tf32 in fp32 matmuls (as bench_gpu --tf32)")
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    ap.add_argument("--precision", choices=["autocast", "bf16"], default="autocast")
    ap.add_argument("--mamba-ssm", default=None, metavar="DIR",
                    help="state-spaces/mamba checkout/snapshot: use its Triton SSD kernels")
    ap.add_argument("--teacher-impl", choices=["auto", "hf", "minimal"], default="auto")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (CPU runs only)")
    ap.add_argument("--check", action="store_true", help="run the correctness checks and exit")
    a = ap.parse_args()

    if a.device is None:
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = Dev(a.device)
    if not dev.cuda:
        torch.set_num_threads(a.threads)
    if a.check:
        sys.exit(run_checks(a))
    if not dev.cuda and not a.small:
        sys.exit("peer_torch: the 1B shapes need a GPU; on the CPU use --small")
    if a.mamba_ssm and not dev.cuda:
        sys.exit("peer_torch: --mamba-ssm (Triton) needs --device cuda")

    D, L, H, KV, Fm, V, NS = 2048, 16, 32, 8, 8192, 128256, 64
    B, T, steps = 4, 2048, 5
    if a.small and dev.cuda:
        D, L, H, KV, Fm, V = 512, 4, 8, 4, 1024, 32000
    elif a.small:
        D, L, H, KV, Fm, V, NS = 256, 2, 4, 2, 512, 1000, 64
        B, T, steps = 2, 128, 2
    a.batch = a.batch or B
    a.seq = a.seq or T
    a.steps = a.steps or steps
    ct = {"D": D, "L": L, "H": H, "KV": KV, "hd": D // H, "F": Fm, "V": V, "eps": 1e-5,
          "theta": 500000.0}
    cs = dict(ct, NS=NS)

    impl = a.teacher_impl
    if impl == "auto":
        if have_transformers():
            impl = "hf"
        elif dev.cuda:
            sys.exit("peer_torch: transformers is not importable; the GPU peer must use HF's "
                     "LlamaForCausalLM (--teacher-impl minimal to override)")
        else:
            impl = "minimal"
    set_tf32(a.tf32)
    scan = Scan(a.mamba_ssm)
    if dev.cuda:
        ENGINE["device"] = torch.cuda.get_device_name(dev.device)
    else:
        ENGINE["device"] = "cpu (%d threads)" % torch.get_num_threads()

    def guard(name, fn, *args):
        err = None
        try:
            fn(*args)
        except torch.cuda.OutOfMemoryError as e:  # report it and go on with the next workload
            err = str(e)[:200]
        if err is not None:  # (the traceback, which holds the tensors, is gone here)
            emit({"bench": name, "batch": a.batch, "seq": a.seq, "error": "OOM: " + err})
            dev.reset()

    rate = bench_gemm(a, dev)
    if a.only in (None, "attn") and dev.cuda:
        guard("attn_flash", bench_attn, a, ct, dev)
    if a.only in (None, "ssd"):
        guard("ssd_scan_fwd_bwd", bench_ssd, a, cs, dev, scan)
    if a.only in (None, "decode"):
        guard("decode", bench_decode, a, cs, dev)
    if a.only in (None, "teacher"):
        guard("teacher_train_step", bench_teacher, a, ct, dev, rate, impl)
    if a.only in (None, "stage3"):
        guard("mohawk_stage3_step", bench_stage3, a, ct, cs, dev, rate, impl, scan)


if __name__ == "__main__":
    main()
