#!/usr/bin/env python3
"""mamba3_native_ref.py — float64 PyTorch reference of a state-spaces/mamba
MambaLMHeadModel whose layers are Mamba3 (ssm_cfg "layer": "Mamba3"), read from its
native layout: config.json = MambaConfig (d_model, d_intermediate, n_layer, vocab_size,
ssm_cfg, rms_norm, tie_embeddings, pad_vocab_size_multiple, ...), tensors
backbone.embedding.weight, backbone.layers.i.{norm.weight, mixer.{in_proj.weight,
dt_bias, B_bias, C_bias, B_norm.weight, C_norm.weight, (mimo_x, mimo_z, mimo_o), D,
(norm.weight), out_proj.weight}, (norm2.weight, mlp.fc1.weight, mlp.fc2.weight)},
backbone.norm_f.weight, lm_head.weight. The mixer is tests/ref/mamba3_ref.py's
(ALGORITHMS.md §8, token by token); the block is mamba_ssm's Block with RMSNorm at eps
1e-5 (create_block's norm_epsilon) and GatedMLP (hidden = d_intermediate rounded up to a
multiple of 128; y, gate = fc1(x).chunk(2); fc2(y · silu(gate))). Loading is strict:
the file must hold exactly the tensors (names, shapes) the config implies.

  make OUT      writes OUT/{s, sm, m, mm}: small random checkpoints (config.json + fp32
                model.safetensors) and ref.safetensors (ids_0 I32 [T], logits_0 F64 [T, V]):
                s  SISO, no MLP, tied, vocab 97 padded to 104;
                sm SISO, d_intermediate 100 (GatedMLP width 128), is_outproj_norm, untied;
                m  MIMO rank 2, ngroups 2, rope_fraction 1.0, is_outproj_norm, no MLP, tied;
                mm MIMO rank 2, d_intermediate 128, untied.
  check DIR REF loads DIR strictly and prints the largest |logit - REF's logit|
                (exit 1 above 1e-9: the same fp32 weights give the same float64 logits)
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from molt_torch import read_safetensors, write_safetensors  # noqa: E402  (file I/O only)
import mamba3_ref  # noqa: E402  (the Mamba-3 mixer)

DT = torch.float64
EPS = 1e-5


def parse(cfg):
    s = dict(cfg.get("ssm_cfg", {}))
    assert s.get("layer") == "Mamba3", s
    d = cfg["d_model"]
    mult = cfg.get("pad_vocab_size_multiple", 8)
    V = (cfg["vocab_size"] + mult - 1) // mult * mult
    mimo = s.get("is_mimo", False)
    R = s.get("mimo_rank", 4) if mimo else 1
    Di = s.get("expand", 2) * d
    P = s.get("headdim", 64)
    c = mamba3_ref.Cfg(d, Di // P, P, s.get("d_state", 128), s.get("ngroups", 1), R, mimo,
                       s.get("is_outproj_norm", False), s.get("rope_fraction", 0.5),
                       s.get("A_floor", 1e-4), EPS)
    di = cfg.get("d_intermediate", 0)
    Fh = (di + 127) // 128 * 128 if di > 0 else 0
    return c, V, Fh


def shapes(cfg):
    """the tensors (name -> shape) the config implies, as MambaLMHeadModel.state_dict()"""
    c, V, Fh = parse(cfg)
    d, H, P, N, R = c.d, c.H, c.P, c.N, c.R
    out = {"backbone.embedding.weight": (V, d), "backbone.norm_f.weight": (d,),
           "lm_head.weight": (V, d)}
    for i in range(cfg["n_layer"]):
        b = "backbone.layers.%d." % i
        out[b + "norm.weight"] = (d,)
        mx = b + "mixer."
        out[mx + "in_proj.weight"] = (c.Rin, d)
        out[mx + "dt_bias"] = (H,)
        out[mx + "B_bias"] = (H, R, N)
        out[mx + "C_bias"] = (H, R, N)
        out[mx + "B_norm.weight"] = (N,)
        out[mx + "C_norm.weight"] = (N,)
        if c.mimo:
            for k in ("mimo_x", "mimo_z", "mimo_o"):
                out[mx + k] = (H, R, P)
        out[mx + "D"] = (H,)
        if c.norm:
            out[mx + "norm.weight"] = (H * P,)
        out[mx + "out_proj.weight"] = (d, H * P)
        if Fh:
            out[b + "norm2.weight"] = (d,)
            out[b + "mlp.fc1.weight"] = (2 * Fh, d)
            out[b + "mlp.fc2.weight"] = (d, Fh)
    return out


def rms(x, w):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + EPS) * w


def forward(cfg, sd, ids):
    c, V, Fh = parse(cfg)
    h = sd["backbone.embedding.weight"][ids]
    for i in range(cfg["n_layer"]):
        b = "backbone.layers.%d." % i
        mx = b + "mixer."
        p = {k: sd.get(mx + k) for k in ("dt_bias", "B_bias", "C_bias", "mimo_x", "mimo_z",
                                          "mimo_o", "D")}
        p.update(in_proj=sd[mx + "in_proj.weight"], B_norm=sd[mx + "B_norm.weight"],
                 C_norm=sd[mx + "C_norm.weight"], out_proj=sd[mx + "out_proj.weight"],
                 norm=sd.get(mx + "norm.weight"))
        y, _ = mamba3_ref.mixer(rms(h, sd[b + "norm.weight"]), p, c)
        h = h + y
        if Fh:
            a, gate = (rms(h, sd[b + "norm2.weight"]) @ sd[b + "mlp.fc1.weight"].T).chunk(2, -1)
            h = h + (a * F.silu(gate)) @ sd[b + "mlp.fc2.weight"].T
    head = sd["backbone.embedding.weight"] if cfg.get("tie_embeddings", True) \
        else sd["lm_head.weight"]
    return rms(h, sd["backbone.norm_f.weight"]) @ head.T


def load(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    sd = read_safetensors(os.path.join(d, "model.safetensors"))
    want = shapes(cfg)
    got = {k: tuple(v.shape) for k, v in sd.items()}
    if got != want:
        extra = sorted(set(got) - set(want))
        missing = sorted(set(want) - set(got))
        bad = sorted(k for k in set(got) & set(want) if got[k] != want[k])
        raise SystemExit("strict load: missing %s, unexpected %s, wrong shape %s"
                         % (missing, extra, bad))
    return cfg, {k: v.to(DT) for k, v in sd.items()}


def randomize(cfg, g):
    c, V, Fh = parse(cfg)
    sd = {}
    for k, shp in shapes(cfg).items():
        if k.endswith("norm.weight") or k.endswith("norm2.weight") or k.endswith("norm_f.weight"):
            v = 1 + 0.2 * torch.randn(shp, generator=g, dtype=DT)
        elif k.endswith(".D") or k.endswith("_bias") and not k.endswith("dt_bias"):
            v = 1 + 0.3 * torch.randn(shp, generator=g, dtype=DT)
        elif k.endswith("dt_bias"):  # softplus⁻¹ of dt log-uniform in [1e-3, 1e-1]
            dt = torch.exp(torch.rand(shp, generator=g, dtype=DT) * math.log(100) + math.log(1e-3))
            v = dt + torch.log(-torch.expm1(-dt))
        elif "mimo_" in k:
            v = 1 / c.R + 0.3 * torch.randn(shp, generator=g, dtype=DT)
        elif k.endswith("embedding.weight"):
            v = torch.randn(shp, generator=g, dtype=DT)
        else:  # Linear weights: U(±1/√fan_in) scaled up a little
            v = (2 * torch.rand(shp, generator=g, dtype=DT) - 1) * 1.5 / shp[-1] ** 0.5
        sd[k] = v.float().double()  # the fp32 values the file will hold
    if cfg.get("tie_embeddings", True):
        sd["lm_head.weight"] = sd["backbone.embedding.weight"]
    return sd


def make(out):
    base = {"n_layer": 2, "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True,
            "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8}
    siso = {"layer": "Mamba3", "d_state": 16, "expand": 2, "headdim": 16, "ngroups": 1,
            "chunk_size": 16}
    mimo = {"layer": "Mamba3", "d_state": 8, "expand": 1, "headdim": 8, "ngroups": 2,
            "rope_fraction": 1.0, "is_mimo": True, "mimo_rank": 2, "chunk_size": 8}
    variants = {
        "s": dict(base, d_model=32, d_intermediate=0, vocab_size=97, tie_embeddings=True,
                  ssm_cfg=siso),
        "sm": dict(base, d_model=32, d_intermediate=100, vocab_size=96, tie_embeddings=False,
                   ssm_cfg=dict(siso, is_outproj_norm=True, A_floor=0.01)),
        "m": dict(base, d_model=32, d_intermediate=0, vocab_size=96, tie_embeddings=True,
                  ssm_cfg=dict(mimo, is_outproj_norm=True)),
        "mm": dict(base, d_model=32, d_intermediate=128, vocab_size=96, tie_embeddings=False,
                   ssm_cfg=mimo),
    }
    g = torch.Generator().manual_seed(4321)
    for name, cfg in variants.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        sd = randomize(cfg, g)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        write_safetensors(os.path.join(d, "model.safetensors"), sd, dtype="F32")
        V = sd["backbone.embedding.weight"].shape[0]
        ids = torch.randint(0, V, (37,), generator=g)
        logits = forward(cfg, sd, ids)
        write_safetensors(os.path.join(d, "ref.safetensors"),
                          {"ids_0": ids.to(torch.int32), "logits_0": logits}, dtype="F64")


def check(d, ref):
    r = read_safetensors(ref)
    cfg, sd = load(d)
    logits = forward(cfg, sd, r["ids_0"].long())
    err = (logits - r["logits_0"]).abs().max().item()
    print("max |logit - ref| = %.3g" % err)
    return 0 if err <= 1e-9 else 1


if __name__ == "__main__":
    torch.set_num_threads(1)
    with torch.no_grad():
        if len(sys.argv) == 3 and sys.argv[1] == "make":
            make(sys.argv[2])
        elif len(sys.argv) == 4 and sys.argv[1] == "check":
            sys.exit(check(sys.argv[2], sys.argv[3]))
        else:
            sys.exit(__doc__)
