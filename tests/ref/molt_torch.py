#!/usr/bin/env python3
"""molt_torch.py — an independent float64 PyTorch reference of every model molt
trains, for the training parity tests (tests/ref/train_ref.py) and self-test
(tests/test_torch_ref_selfcheck.sh). Written from the equations of
shared/docs/ALGORITHMS.md, not from molt's C code; only the file layouts
(config.json keys, tensor names) follow molt's loaders.

Architectures (config.json "model_type"):
  llama        HF LlamaForCausalLM (§5.1): RMSNorm, RoPE rotate_half with optional
               llama3 / linear frequency scaling, GQA attention, SwiGLU MLP.
  llamba       cartesia Llamba (§2.2, §2.4, §5.2): DiscreteMamba2 mixer + MLP.
  mamba2       HF Mamba2ForCausalLM (§1.2, §5.4): Mamba-2 mixer, no MLP.
  molt_hybrid  llamba keys + attn_cfg + per-layer plan (§7): "attention" layers
               (teacher-shaped GQA attention), "ssm" layers (DiscreteMamba2) and
               "hybrid" layers (SSM ‖ kept attention heads, mean/std-matched,
               adapter, averaged).

Public API
  load_model(dir)                       -> Model (float64 nn.Parameters, requires_grad)
  forward(model, ids[B,T], hooks=None)  -> logits[B,T,V]; hooks (a Hooks) collects
                                           hidden states, attention probabilities and
                                           SSM mixing matrices
  block_forward(model, l, x)            one residual block (MOHAWK stage 2)
  mixer_forward(model, l, x, hooks)     input_layernorm + mixer only (MOHAWK stage 1)
  ce, soft_ce, frob, l2_rows            losses (§3)
  clip_grad_norm(grads, max_norm)       = torch.nn.utils.clip_grad_norm_
  adamw_step(params, grads, state, lr, ...)  = torch.optim.AdamW (one step)
  read_safetensors / write_safetensors / save_grads

Everything runs in float64 on CPU; the SSM recurrences are run token by token
(mode "scan", the default) or through the materialized matrix (mode "parallel");
both are exact and tests/test_torch_ref_selfcheck.sh checks they agree.
"""
import json
import math
import os
import struct
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

DT = torch.float64

# =============================================================================
# safetensors (no package: 8-byte LE header length, JSON header, raw LE data)

_NP_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "BOOL": "?",
}


def read_safetensors(path):
    """Returns OrderedDict name -> torch tensor (float types as float64, BF16
    widened exactly, integer types kept). Raises ValueError on a malformed file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (n,) = struct.unpack_from("<Q", data, 0)
    if 8 + n > len(data):
        raise ValueError("%s: header length %d past end of file" % (path, n))
    hdr = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = OrderedDict()
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        dt, shape, (a, b) = info["dtype"], info["shape"], info["data_offsets"]
        if base + b > len(data) or a > b:
            raise ValueError("%s: tensor %s data out of range" % (path, name))
        raw = data[base + a:base + b]
        if dt == "BF16":  # the top 16 bits of an fp32
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32).astype(np.float64)
        elif dt in _NP_DTYPES:
            arr = np.frombuffer(raw, dtype=_NP_DTYPES[dt])
            if arr.dtype.kind == "f":
                arr = arr.astype(np.float64)
            else:
                arr = arr.copy()
        else:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, dt))
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError("%s: tensor %s size does not match shape %s" % (path, name, shape))
        out[name] = torch.from_numpy(np.ascontiguousarray(arr)).reshape(shape)
    return out


def write_safetensors(path, tensors, dtype="F32"):
    """Writes dict name -> tensor. Float tensors are stored as `dtype` (F32 or
    F64), integer tensors as I32/I64. Header padded with spaces to 8 bytes."""
    hdr, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = torch.as_tensor(t).detach().cpu().contiguous()
        if t.is_floating_point():
            st, np_dt = dtype, _NP_DTYPES[dtype]
        elif t.dtype == torch.int64:
            st, np_dt = "I64", "<i8"
        else:
            st, np_dt = "I32", "<i4"
        b = t.numpy().astype(np_dt).tobytes()
        hdr[name] = {"dtype": st, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def save_grads(path, grads):
    """Writes dict name -> gradient tensor as a float32 safetensors file."""
    write_safetensors(path, OrderedDict((k, v) for k, v in grads.items()), dtype="F32")


def read_model_tensors(model_dir):
    """model.safetensors, or the shards named by model.safetensors.index.json."""
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single)
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if not os.path.exists(idx):
        raise FileNotFoundError("%s: no model.safetensors or model.safetensors.index.json"
                                % model_dir)
    with open(idx) as f:
        wm = json.load(f)["weight_map"]
    out = OrderedDict()
    for shard in sorted(set(wm.values())):
        for k, v in read_safetensors(os.path.join(model_dir, shard)).items():
            out[k] = v
    return out


# =============================================================================
# config.json -> a flat namespace

def _float(v):
    """JSON number, or transformers-5's {"__float__": "Infinity"} spelling."""
    if isinstance(v, dict) and "__float__" in v:
        return float(v["__float__"])
    return float(v)


def _parse_rope(o):
    """RoPE settings from transformers-4 rope_theta + rope_scaling or
    transformers-5 rope_parameters. Returns a namespace(kind, theta, ...)."""
    theta = float(o.get("rope_theta", 10000.0))
    sc = o.get("rope_scaling")
    if o.get("rope_parameters") is not None:
        sc = o["rope_parameters"]
        theta = float(sc.get("rope_theta", theta))
    r = SimpleNamespace(kind="default", theta=theta, factor=1.0, low=None, high=None, orig=None)
    if not sc:
        return r
    kind = sc.get("rope_type", sc.get("type", "default"))
    if kind == "default":
        return r
    if kind == "linear":
        r.kind, r.factor = "linear", float(sc["factor"])
    elif kind == "llama3":
        r.kind, r.factor = "llama3", float(sc["factor"])
        r.low, r.high = float(sc["low_freq_factor"]), float(sc["high_freq_factor"])
        r.orig = int(sc["original_max_position_embeddings"])
    else:
        raise ValueError("rope type %r not supported" % kind)
    return r


def parse_config(o):
    """config.json dict -> namespace with: arch, d, n_layer, V, eps, tie, d_ff,
    kinds[l] ("attention"|"ssm"|"hybrid"), keep[l] (kept heads or None),
    attention geometry (H, KV, hd, rope, attn_bias) and ssm (namespace)."""
    mt = o.get("model_type")
    c = SimpleNamespace(arch=mt, attn_bias=False, ssm=None, rope=None, H=0, KV=0, hd=0, d_ff=0)
    if mt == "llama":
        c.d, c.n_layer = int(o["hidden_size"]), int(o["num_hidden_layers"])
        c.H = int(o["num_attention_heads"])
        c.KV = int(o.get("num_key_value_heads") or c.H)
        c.hd = int(o.get("head_dim") or c.d // c.H)
        c.d_ff, c.V = int(o["intermediate_size"]), int(o["vocab_size"])
        c.eps = float(o.get("rms_norm_eps", 1e-6))
        c.tie = bool(o.get("tie_word_embeddings", False))
        c.attn_bias = bool(o.get("attention_bias", False))
        c.rope = _parse_rope(o)
        c.kinds = ["attention"] * c.n_layer
        c.keep = [None] * c.n_layer
    elif mt in ("llamba", "molt_hybrid"):
        c.d, c.n_layer = int(o["d_model"]), int(o["n_layer"])
        mult = int(o.get("pad_vocab_size_multiple", 1))
        c.V = (int(o["vocab_size"]) + mult - 1) // mult * mult
        c.tie = bool(o.get("tie_embeddings", True))
        c.eps = float(o.get("norm_epsilon", 1e-5))
        c.d_ff = int(o["mlp_cfg"]["intermediate_size"])
        s = o["ssm_cfg"]
        H = int(s["n_v_heads"])
        Di = int(s.get("expand", 1)) * c.d
        c.ssm = SimpleNamespace(kind="discrete", Di=Di, H=H, P=Di // H, N=int(s["d_state"]),
                                G=int(s.get("n_qk_heads", H)), K=int(s.get("d_conv", 4)),
                                bias=bool(s.get("bias", False)),
                                conv_bias=bool(s.get("conv_bias", True)), eps=c.eps,
                                dt_lo=0.0, dt_hi=math.inf)
        c.kinds = ["ssm"] * c.n_layer
        c.keep = [None] * c.n_layer
        if mt == "molt_hybrid":
            a = o["attn_cfg"]
            c.H = int(a["num_attention_heads"])
            c.KV = int(a.get("num_key_value_heads", c.H))
            c.hd = int(a["head_dim"])
            c.attn_bias = bool(a.get("attention_bias", False))
            c.rope = _parse_rope(a)
            if len(o["layers"]) != c.n_layer:
                raise ValueError("layers lists %d entries, n_layer is %d"
                                 % (len(o["layers"]), c.n_layer))
            for l, L in enumerate(o["layers"]):
                c.kinds[l] = L["mixer"]
                if L["mixer"] == "hybrid":
                    c.keep[l] = [int(h) for h in L["attention_heads"]]
                elif L["mixer"] not in ("attention", "ssm"):
                    raise ValueError("layer %d: mixer %r" % (l, L["mixer"]))
    elif mt == "mamba2":
        c.d, c.n_layer = int(o["hidden_size"]), int(o["num_hidden_layers"])
        c.V = int(o["vocab_size"])
        c.eps = float(o.get("layer_norm_epsilon", 1e-5))
        c.tie = bool(o.get("tie_word_embeddings", False))
        lim = o.get("time_step_limit") or [0.0, math.inf]
        H, P = int(o["num_heads"]), int(o["head_dim"])
        c.ssm = SimpleNamespace(kind="mamba2", Di=int(o.get("expand", 2)) * c.d, H=H, P=P,
                                N=int(o["state_size"]), G=int(o.get("n_groups", 1)),
                                K=int(o.get("conv_kernel", 4)), bias=bool(o.get("use_bias", False)),
                                conv_bias=bool(o.get("use_conv_bias", True)), eps=c.eps,
                                dt_lo=_float(lim[0]), dt_hi=_float(lim[1]))
        if H * P != c.ssm.Di:
            raise ValueError("num_heads*head_dim != expand*hidden_size")
        c.kinds = ["ssm"] * c.n_layer
        c.keep = [None] * c.n_layer
    else:
        raise ValueError("model_type %r not supported" % mt)
    if c.ssm is not None:
        s = c.ssm
        s.Cc = s.Di + 2 * s.G * s.N  # conv channels: x, B, C
        if s.Di % s.H or s.H % s.G:
            raise ValueError("ssm: d_inner %% heads or heads %% groups nonzero")
    return c


# =============================================================================
# the model: a table of named float64 parameters

class Model:
    """cfg (parse_config namespace) + params: OrderedDict checkpoint name ->
    nn.Parameter(float64). With tied embeddings there is no lm_head entry: the
    output projection is the embedding parameter itself (one gradient)."""

    def __init__(self, cfg, params, ssm_mode="scan"):
        self.cfg, self.params, self.ssm_mode = cfg, params, ssm_mode
        a = cfg.arch
        self.root = "model" if a == "llama" else "backbone"
        self.embed_name = {"llama": "model.embed_tokens.weight",
                           "mamba2": "backbone.embeddings.weight"}.get(a, "backbone.embedding.weight")
        self.final_name = {"llama": "model.norm.weight",
                           "mamba2": "backbone.norm_f.weight"}.get(a, "backbone.final_layernorm.weight")

    def p(self, name):
        return self.params[name]

    def opt(self, name):
        return self.params.get(name)

    @property
    def lm_head(self):
        return self.params[self.embed_name if self.cfg.tie else "lm_head.weight"]

    def layer_prefix(self, l):
        return "%s.layers.%d" % (self.root, l)

    def named_parameters(self):
        return list(self.params.items())

    def zero_grad(self):
        for p in self.params.values():
            p.grad = None


def expected_shapes(c):
    """OrderedDict checkpoint name -> shape for config c (the §5 layouts)."""
    E = OrderedDict()
    d, V = c.d, c.V

    def attn(pre, H, KV):
        E[pre + ".q_proj.weight"] = [H * c.hd, d]
        E[pre + ".k_proj.weight"] = [KV * c.hd, d]
        E[pre + ".v_proj.weight"] = [KV * c.hd, d]
        E[pre + ".o_proj.weight"] = [d, H * c.hd]
        if c.attn_bias:
            for n, m in (("q", H), ("k", KV), ("v", KV)):
                E[pre + ".%s_proj.bias" % n] = [m * c.hd]
            E[pre + ".o_proj.bias"] = [d]

    def ssm(pre):
        s = c.ssm
        R = (s.Cc + s.Di + s.H) if s.kind == "discrete" else (s.Di + s.Cc + s.H)
        E[pre + ".in_proj.weight"] = [R, d]
        if s.bias:
            E[pre + ".in_proj.bias"] = [R]
        E[pre + ".conv1d.weight"] = [s.Cc, 1, s.K]
        if s.conv_bias:
            E[pre + ".conv1d.bias"] = [s.Cc]
        if s.kind == "mamba2":
            E[pre + ".dt_bias"] = [s.H]
            E[pre + ".A_log"] = [s.H]
            E[pre + ".D"] = [s.H]
            E[pre + ".norm.weight"] = [s.Di]
        else:
            E[pre + ".z_bias"] = [s.Di]
            E[pre + ".D"] = [s.H]
        E[pre + ".out_proj.weight"] = [d, s.Di]
        if s.bias:
            E[pre + ".out_proj.bias"] = [d]

    root = "model" if c.arch == "llama" else "backbone"
    emb = {"llama": "model.embed_tokens.weight",
           "mamba2": "backbone.embeddings.weight"}.get(c.arch, "backbone.embedding.weight")
    E[emb] = [V, d]
    for l in range(c.n_layer):
        L = "%s.layers.%d" % (root, l)
        if c.arch == "mamba2":
            E[L + ".norm.weight"] = [d]
            ssm(L + ".mixer")
            continue
        E[L + ".input_layernorm.weight"] = [d]
        if c.kinds[l] == "attention":
            attn(L + ".self_attn", c.H, c.KV)
        else:
            ssm(L + ".mixer")
        if c.kinds[l] == "hybrid":
            k = len(c.keep[l])
            attn(L + ".attn", k, k)
            E[L + ".adapter.weight"] = [d, d]
            E[L + ".adapter.bias"] = [d]
        E[L + ".post_attention_layernorm.weight"] = [d]
        E[L + ".mlp.gate_proj.weight"] = [c.d_ff, d]
        E[L + ".mlp.up_proj.weight"] = [c.d_ff, d]
        E[L + ".mlp.down_proj.weight"] = [d, c.d_ff]
    E[{"llama": "model.norm.weight", "mamba2": "backbone.norm_f.weight"}.get(
        c.arch, "backbone.final_layernorm.weight")] = [d]
    if not c.tie:
        E["lm_head.weight"] = [V, d]
    return E


def load_model(model_dir, ssm_mode="scan"):
    """Reads config.json + model.safetensors (or shards) into a Model whose
    parameters are float64 nn.Parameters with requires_grad. Every expected
    tensor must be present with its expected shape; lm_head.weight is ignored
    when the embeddings are tied; any other extra tensor is an error."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = parse_config(json.load(f))
    tensors = read_model_tensors(model_dir)
    exp = expected_shapes(cfg)
    params = OrderedDict()
    for name, shape in exp.items():
        if name not in tensors:
            raise ValueError("%s: missing tensor %s" % (model_dir, name))
        t = tensors[name]
        if list(t.shape) != shape:
            raise ValueError("%s: tensor %s has shape %s, expected %s"
                             % (model_dir, name, list(t.shape), shape))
        params[name] = torch.nn.Parameter(t.to(DT).clone(), requires_grad=True)
    extra = [n for n in tensors if n not in exp and not (cfg.tie and n == "lm_head.weight")]
    if extra:
        raise ValueError("%s: unexpected tensors %s" % (model_dir, extra[:5]))
    return Model(cfg, params, ssm_mode)


# =============================================================================
# building blocks

def rmsnorm(x, w, eps):
    """Llama RMSNorm: x · rsqrt(mean(x², last dim) + eps) · w."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def linear(x, w, b=None):
    """x · Wᵀ (+ b), W in PyTorch [out, in] layout."""
    y = x @ w.t()
    return y if b is None else y + b


def mlp(model, pre, u):
    """SwiGLU MLP: down( silu(gate u) ⊙ up u )."""
    g = linear(u, model.p(pre + ".gate_proj.weight"))
    up = linear(u, model.p(pre + ".up_proj.weight"))
    return linear(F.silu(g) * up, model.p(pre + ".down_proj.weight"))


def rope_inv_freq(c):
    """inv_freq[i] = 1/θ^(2i/hd), i < hd/2, with the HF frequency rules (§5.1):
    linear: /factor; llama3 (_compute_llama3_parameters): wavelen = 2π/f;
    wavelen > orig/low → f/factor; orig/high ≤ wavelen ≤ orig/low → smooth mix
    s = (orig/wavelen − low)/(high − low), (1−s)·f/factor + s·f; else f."""
    r, hd = c.rope, c.hd
    f = 1.0 / (r.theta ** (torch.arange(0, hd, 2, dtype=DT) / hd))
    if r.kind == "linear":
        f = f / r.factor
    elif r.kind == "llama3":
        low_wl, high_wl = r.orig / r.low, r.orig / r.high
        wl = 2 * math.pi / f
        s = (r.orig / wl - r.low) / (r.high - r.low)
        smooth = (1 - s) * f / r.factor + s * f
        f = torch.where(wl > low_wl, f / r.factor, torch.where(wl < high_wl, f, smooth))
    return f


def apply_rope(x, c):
    """HF rotate_half RoPE on x[B,H,T,hd] at positions 0..T-1:
    x·cos + rotate_half(x)·sin, rotate_half(a‖b) = (−b‖a), cos/sin repeated
    over both halves."""
    T, hd = x.shape[2], x.shape[3]
    ang = torch.arange(T, dtype=DT)[:, None] * rope_inv_freq(c)[None, :]  # [T, hd/2]
    ang = torch.cat([ang, ang], dim=-1)
    x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
    return x * torch.cos(ang) + torch.cat([-x2, x1], dim=-1) * torch.sin(ang)


def attention(model, pre, u, H, KV):
    """Causal GQA self-attention (HF eager): q,k,v projections, RoPE on q,k,
    kv head of query head h = h // (H/KV) (repeat_interleave),
    P = softmax(q kᵀ · hd^-½ + causal mask), o_proj(P v).
    Returns (out[B,T,d], probs[B,H,T,T])."""
    c = model.cfg
    B, T, _ = u.shape
    hd = c.hd
    q = linear(u, model.p(pre + ".q_proj.weight"), model.opt(pre + ".q_proj.bias"))
    k = linear(u, model.p(pre + ".k_proj.weight"), model.opt(pre + ".k_proj.bias"))
    v = linear(u, model.p(pre + ".v_proj.weight"), model.opt(pre + ".v_proj.bias"))
    q = q.view(B, T, H, hd).transpose(1, 2)
    k = k.view(B, T, KV, hd).transpose(1, 2)
    v = v.view(B, T, KV, hd).transpose(1, 2)
    q, k = apply_rope(q, c), apply_rope(k, c)
    k = k.repeat_interleave(H // KV, dim=1)
    v = v.repeat_interleave(H // KV, dim=1)
    scores = (q @ k.transpose(-1, -2)) * hd ** -0.5
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, -math.inf)
    probs = torch.softmax(scores, dim=-1)
    o = (probs @ v).transpose(1, 2).reshape(B, T, H * hd)
    return linear(o, model.p(pre + ".o_proj.weight"), model.opt(pre + ".o_proj.bias")), probs


# ---- SSM mixers --------------------------------------------------------------

def causal_conv(x, w, b):
    """Depthwise causal conv over time: x[B,T,C], w[C,1,K] →
    y_t = b + Σ_{k=0..K-1} w_k · x_{t−(K−1)+k} (zero history)."""
    T, C, K = x.shape[1], x.shape[2], w.shape[2]
    y = F.conv1d(x.transpose(1, 2), w, b, padding=K - 1, groups=C)[..., :T]
    return y.transpose(1, 2)


def segsum(a):
    """a[..., T] → S[..., T, T], S[t, s] = Σ_{k=s+1..t} a_k for s ≤ t, −inf for
    s > t (masked cumulative sum, stable: no differences of large prefixes)."""
    T = a.shape[-1]
    x = a[..., :, None].expand(*a.shape, T)  # x[..., k, s] = a_k
    x = x.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(-1), 0.0)  # keep k > s
    s = torch.cumsum(x, dim=-2)  # s[..., t, s] = Σ_{s<k≤t} a_k
    return s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), -math.inf)


def ssm_scan(x, Bm, Cm, log_a, scale):
    """Sequential recurrence per head: h_t = exp(log_a_t)·h_{t−1} + scale_t·x_t⊗B_t,
    y_t = h_t·C_t (no D). x[B,T,H,P], Bm/Cm[B,T,H,N], log_a/scale[B,T,H] →
    y[B,T,H,P]."""
    Bsz, T, H, P = x.shape
    N = Bm.shape[-1]
    h = x.new_zeros(Bsz, H, P, N)
    ys = []
    for t in range(T):
        a = torch.exp(log_a[:, t])[:, :, None, None]
        h = a * h + (scale[:, t, :, None] * x[:, t])[..., None] * Bm[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", h, Cm[:, t]))
    return torch.stack(ys, dim=1)


def ssm_matrix(Bm, Cm, log_a, scale):
    """Materialized mixing matrix without D (§1.4):
    M[b,h,t,s] = (C_t·B_s) · exp(Σ_{k=s+1..t} log_a_k) · scale_s for s ≤ t, 0 above."""
    L = torch.exp(segsum(log_a.transpose(1, 2)))  # [B,H,T,T]
    CB = torch.einsum("bthn,bshn->bhts", Cm, Bm)
    return CB * L * scale.transpose(1, 2)[:, :, None, :]


def ssm_mixer(model, pre, u, want_matrix=False, mode=None):
    """One SSM mixer on the normalized input u[B,T,d].

    DiscreteMamba2 (§2.2): in_proj rows [x, B, C, z, A_log]; xBC = conv(xBC)
    (identity activation); log a_t = −softplus(A_log_t); h_t = a_t h + x_t⊗B_t;
    y = h·C + D·x; out = out_proj(y ⊙ silu(z + z_bias)). B/C head g serves value
    heads g·H/G .. (g+1)·H/G − 1.
    Mamba-2 (§1.2): in_proj rows [(z0, x0), z, xBC, dt]; xBC = silu(conv(xBC));
    Δ = clamp(softplus(dt + dt_bias), lo, hi); log a_t = Δ_t·(−exp(A_log));
    h_t = a_t h + Δ_t x_t⊗B_t; y = h·C + D·x; gated RMSNorm per group of Di/G:
    g = y ⊙ silu(z), g·rsqrt(mean_group(g²)+eps)·w; out_proj(g).

    Returns (out[B,T,d], aux) with aux = {x[B,T,H,P] post-conv x, y_pre[B,T,H,P]
    (before gate/norm, incl. D·x), M[B,H,T,T] (with D on the diagonal) when
    want_matrix}."""
    s = model.cfg.ssm
    mode = mode or model.ssm_mode
    Bsz, T, _ = u.shape
    H, P, N, G, Di = s.H, s.P, s.N, s.G, s.Di
    zx = linear(u, model.p(pre + ".in_proj.weight"), model.opt(pre + ".in_proj.bias"))
    if s.kind == "discrete":
        xbc, z, dt_raw = torch.split(zx, [s.Cc, Di, H], dim=-1)
    else:
        d_mlp = (zx.shape[-1] - Di - s.Cc - H) // 2  # unused [z0, x0] rows (0 normally)
        _, _, z, xbc, dt_raw = torch.split(zx, [d_mlp, d_mlp, Di, s.Cc, H], dim=-1)
    xbc = causal_conv(xbc, model.p(pre + ".conv1d.weight"), model.opt(pre + ".conv1d.bias"))
    if s.kind == "mamba2":
        xbc = F.silu(xbc)
    x = xbc[..., :Di].reshape(Bsz, T, H, P)
    Bm = xbc[..., Di:Di + G * N].reshape(Bsz, T, G, N).repeat_interleave(H // G, dim=2)
    Cm = xbc[..., Di + G * N:].reshape(Bsz, T, G, N).repeat_interleave(H // G, dim=2)
    D = model.p(pre + ".D")
    if s.kind == "discrete":
        log_a = -F.softplus(dt_raw)
        scale = torch.ones_like(log_a)
    else:
        delta = F.softplus(dt_raw + model.p(pre + ".dt_bias"))
        if s.dt_lo > 0.0 or s.dt_hi < math.inf:
            delta = torch.clamp(delta, s.dt_lo, s.dt_hi)
        log_a = delta * -torch.exp(model.p(pre + ".A_log"))
        scale = delta
    aux = {"x": x}
    M0 = None
    if want_matrix or mode == "parallel":
        M0 = ssm_matrix(Bm, Cm, log_a, scale)
    if mode == "parallel":
        y = torch.einsum("bhts,bshp->bthp", M0, x)
    else:
        y = ssm_scan(x, Bm, Cm, log_a, scale)
    y = y + D[None, None, :, None] * x
    aux["y_pre"] = y
    if want_matrix:
        aux["M"] = M0 + torch.diag_embed(D[None, :, None].expand(Bsz, H, T))
    y = y.reshape(Bsz, T, Di)
    if s.kind == "discrete":
        g = y * F.silu(z + model.p(pre + ".z_bias"))
    else:
        g = (y * F.silu(z)).reshape(Bsz, T, G, Di // G)
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + s.eps)
        g = g.reshape(Bsz, T, Di) * model.p(pre + ".norm.weight")
    out = linear(g, model.p(pre + ".out_proj.weight"), model.opt(pre + ".out_proj.bias"))
    return out, aux


def hybrid_combine(s, a, adapter_w, adapter_b):
    """§7 DoubleBlockAdapter mixing, per token over the hidden dim (torch.std,
    unbiased): a' = (a − mean a)/(std a + 1e-5)·(std s + 1e-5) + mean s;
    out = 0.5·(s + adapter(a'))."""
    am, asd = a.mean(-1, keepdim=True), a.std(-1, keepdim=True)
    sm, ssd = s.mean(-1, keepdim=True), s.std(-1, keepdim=True)
    a2 = (a - am) / (asd + 1e-5) * (ssd + 1e-5) + sm
    return 0.5 * (s + linear(a2, adapter_w, adapter_b))


# =============================================================================
# layers and the whole model

class Hooks:
    """What forward() collects. After the call:
    hidden[l] = residual stream entering layer l (l < n_layer), hidden[n_layer] =
    after the last layer, before the final norm; attn[l] = [B,H,T,T] attention
    probabilities of layer l's query heads (kept heads only for hybrid layers);
    mixer[l] = [B,H,T,T] SSM mixing matrix (D on the diagonal) of layer l."""

    def __init__(self, hidden=True, attn=True, mixer=True):
        self.want_hidden, self.want_attn, self.want_mixer = hidden, attn, mixer
        self.hidden, self.attn, self.mixer = [], {}, {}


def mixer_forward(model, l, x, hooks=None):
    """Layer l's token mixer on its residual input x: mixer(norm_in(x)) — the
    quantity added to the residual stream (MOHAWK stage 1 runs this)."""
    c = model.cfg
    L = model.layer_prefix(l)
    norm = L + (".norm.weight" if c.arch == "mamba2" else ".input_layernorm.weight")
    u = rmsnorm(x, model.p(norm), c.eps)
    kind = c.kinds[l]
    want_m = hooks is not None and hooks.want_mixer
    if kind == "attention":
        out, probs = attention(model, L + ".self_attn", u, c.H, c.KV)
        if hooks is not None and hooks.want_attn:
            hooks.attn[l] = probs
        return out
    s, aux = ssm_mixer(model, L + ".mixer", u, want_matrix=want_m)
    if want_m:
        hooks.mixer[l] = aux["M"]
    if kind == "ssm":
        return s
    k = len(c.keep[l])
    a, probs = attention(model, L + ".attn", u, k, k)
    if hooks is not None and hooks.want_attn:
        hooks.attn[l] = probs
    return hybrid_combine(s, a, model.p(L + ".adapter.weight"), model.p(L + ".adapter.bias"))


def block_forward(model, l, x, hooks=None):
    """One residual block. Mamba-2: x + mixer(norm(x)). Others (Llama/Llamba
    blocks, §2.4): h = x + mixer(norm_in(x)); h + mlp(norm_post(h))."""
    x = x + mixer_forward(model, l, x, hooks)
    if model.cfg.arch == "mamba2":
        return x
    L = model.layer_prefix(l)
    u = rmsnorm(x, model.p(L + ".post_attention_layernorm.weight"), model.cfg.eps)
    return x + mlp(model, L + ".mlp", u)


def forward(model, ids, hooks=None):
    """ids[B,T] (long) → logits[B,T,V]: embed, blocks, final RMSNorm, lm_head
    (the embedding matrix when tied). Fills `hooks` (a Hooks) when given."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    x = model.p(model.embed_name)[ids]
    for l in range(model.cfg.n_layer):
        if hooks is not None and hooks.want_hidden:
            hooks.hidden.append(x)
        x = block_forward(model, l, x, hooks)
    if hooks is not None and hooks.want_hidden:
        hooks.hidden.append(x)
    x = rmsnorm(x, model.p(model.final_name), model.cfg.eps)
    return x @ model.lm_head.t()


# =============================================================================
# losses (ALGORITHMS.md §3)

def ce(logits, targets):
    """Next-token cross-entropy, mean over counted tokens (targets ≥ 0; a
    negative target is not counted): −mean log_softmax(logits)[target]."""
    V = logits.shape[-1]
    lp = torch.log_softmax(logits.reshape(-1, V), dim=-1)
    t = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
    m = t >= 0
    return -lp[m].gather(1, t[m][:, None]).mean()


def soft_ce(student, teacher, tau=1.0):
    """Stage 3 KD: mean over tokens of cross_entropy(student/τ, softmax(teacher/τ))
    = −Σ_v softmax(teacher/τ)_v · log_softmax(student/τ)_v (no τ² factor)."""
    V = student.shape[-1]
    p = torch.softmax(teacher.reshape(-1, V) / tau, dim=-1)
    return -(p * torch.log_softmax(student.reshape(-1, V) / tau, dim=-1)).sum(-1).mean()


def frob(S, A):
    """Stage 1: Σ over layers of mean over batch×heads of ‖S − A‖_F (over the
    T×T matrix). S, A: lists (or dicts with the same keys) of [B,H,T,T]."""
    if isinstance(S, dict):
        keys = sorted(S)
        S, A = [S[k] for k in keys], [A[k] for k in keys]
    tot = 0.0
    for s, a in zip(S, A):
        tot = tot + (s - a).pow(2).sum((-1, -2)).sqrt().mean()
    return tot


def l2_rows(x, y):
    """Stage 2: mean over tokens of the L2 norm over the last (hidden) dim."""
    return (x - y).pow(2).sum(-1).sqrt().mean()


# =============================================================================
# optimizer (torch.optim.AdamW + torch.nn.utils.clip_grad_norm_)

def clip_grad_norm(grads, max_norm):
    """As torch.nn.utils.clip_grad_norm_ (L2): total = ‖concat grads‖₂,
    coef = min(max_norm/(total + 1e-6), 1); grads *= coef in place. Returns
    total (before clipping). max_norm ≤ 0 only measures."""
    gs = list(grads.values()) if isinstance(grads, dict) else list(grads)
    total = torch.sqrt(sum((g.detach().double() ** 2).sum() for g in gs))
    if max_norm > 0:
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in gs:
            g.mul_(coef.to(g.dtype))
    return float(total)


def adamw_step(params, grads, state, lr, beta1=0.9, beta2=0.95, eps=1e-8, wd=0.1, step=None):
    """One torch.optim.AdamW step (amsgrad off, maximize off), in place:
    p ← p·(1 − lr·wd); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
    p ← p − lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps).
    params/grads: dicts name → tensor; state: dict kept between calls (holds
    m, v per name and the step count t, 1 on the first call unless `step`)."""
    t = state.get("step", 0) + 1 if step is None else step
    state["step"] = t
    bc1, bc2 = 1 - beta1 ** t, 1 - beta2 ** t
    with torch.no_grad():
        for name, p in params.items():
            g = grads.get(name)
            if g is None:
                continue
            m = state.setdefault(("m", name), torch.zeros_like(p))
            v = state.setdefault(("v", name), torch.zeros_like(p))
            p.mul_(1 - lr * wd)
            m.mul_(beta1).add_(g, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v.sqrt() / math.sqrt(bc2)).add_(eps)
            p.addcdiv_(m, denom, value=-lr / bc1)
    return t


# =============================================================================
# training batches (train_ref.py's BATCH.bin)

def read_batch(path):
    """BATCH.bin: int32 LE [B, T], then B·T input ids, then B·T target ids
    (row-major [B,T]). Returns (ids, targets) as long tensors [B,T]."""
    data = open(path, "rb").read()
    B, T = struct.unpack_from("<2i", data, 0)
    n = B * T
    if B <= 0 or T <= 0 or len(data) != 8 + 8 * n:
        raise ValueError("%s: bad batch file (B=%d T=%d, %d bytes)" % (path, B, T, len(data)))
    a = np.frombuffer(data, dtype="<i4", offset=8).astype(np.int64)
    return torch.from_numpy(a[:n].reshape(B, T).copy()), torch.from_numpy(a[n:].reshape(B, T).copy())


def write_batch(path, ids, targets):
    ids, targets = np.asarray(ids, dtype="<i4"), np.asarray(targets, dtype="<i4")
    B, T = ids.shape
    with open(path, "wb") as f:
        f.write(struct.pack("<2i", B, T))
        f.write(ids.tobytes())
        f.write(targets.tobytes())
