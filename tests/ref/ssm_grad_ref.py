#!/usr/bin/env python3
"""ssm_grad_ref.py — float64 PyTorch autograd reference for the SSM mixer
backward passes (src/mixers/ssm_train.c). Builds the Mamba-2 and
DiscreteMamba2 mixers from the equations of shared/docs/ALGORITHMS.md (§1.2,
§1.4, §2.2; helpers reused from tests/ref/ssm_ref.py), runs B sequences from
a zero state and takes gradients by autograd of
    L_y = Σ dy ∘ y           (training forward, sequential recurrence)
    L_M = Σ dM ∘ M           (materialized mixing matrix, MOHAWK stage 1)
Used by tests/test_ssm_grad.c:

    /usr/bin/python3 tests/ref/ssm_grad_ref.py IN OUT

IN (little-endian):
    b"MOLTSGRI"  int32 version=1  int32 n_cases
    per case:
      int32[12]  kind(0 Mamba-2, 1 Discrete) d_model d_inner H P N G K d_mlp B T flags
                 flags: 1 in_proj_b, 2 conv_b, 4 z_bias, 8 out_proj_b
      float32[4] norm_eps dt_limit_lo dt_limit_hi 0
      float32 arrays: u[B*T,d], the weights (order below), dy[B*T,d], dM[B,H,T,T]
      weights: in_proj[R,d] (in_proj_b[R]) conv_w[Cc,K] (conv_b[Cc])
               dt_bias[H] A_log[H] (Mamba-2) D[H] norm_w[Di] (Mamba-2)
               (z_bias[Di]) out_proj[d,Di] (out_proj_b[d])
OUT:
    b"MOLTSGRO"  int32 version=1  int32 n_cases
    per case, float32:
      training:      du[B*T,d], then d(weight) for every weight present, in the order above
      materialized:  du[B*T,d], then d(weight) for in_proj (in_proj_b) conv_w (conv_b)
                     dt_bias A_log (Mamba-2) D
"""
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ssm_ref import DT, Reader, conv_zero_state, segsum  # noqa: E402

# Thousands of tiny ops: more threads only spin (with OMP_NUM_THREADS=2 on a
# busy 2-core machine this took 16 s instead of 1.5 s).
torch.set_num_threads(1)

MAT_NAMES = ("in_proj", "in_proj_b", "conv_w", "conv_b", "dt_bias", "A_log", "D")


def mixer(p, cfg, u, want_y):
    """u [T,d] one sequence from zero state -> y [T,d] (want_y) or M [H,T,T]."""
    kind, d, Di, H, P, N, G, K, d_mlp, eps, dt_lo, dt_hi = cfg
    T = u.shape[0]
    Cc = Di + 2 * G * N
    R = p["in_proj"].shape[0]
    b_in = p.get("in_proj_b", torch.zeros(R, dtype=DT))
    zx = u @ p["in_proj"].T + b_in
    if kind == 0:
        _, _, z, xbc, dt = torch.split(zx, [d_mlp, d_mlp, Di, Cc, H], dim=-1)
    else:
        xbc, z, a_log_t = torch.split(zx, [Cc, Di, H], dim=-1)
    conv_b = p.get("conv_b", torch.zeros(Cc, dtype=DT))
    xc = conv_zero_state(xbc, p["conv_w"], conv_b, K)
    if kind == 0:
        xc = F.silu(xc)
        delta = torch.clamp(F.softplus(dt + p["dt_bias"]), min=dt_lo, max=dt_hi)
        dA = delta * (-torch.exp(p["A_log"]))  # [T,H]
        cs = delta
    else:
        dA = -F.softplus(a_log_t)
        cs = torch.ones(T, H, dtype=DT)
    rep = H // G
    x = xc[:, :Di].reshape(T, H, P)
    B = xc[:, Di:Di + G * N].reshape(T, G, N).repeat_interleave(rep, dim=1)  # [T,H,N]
    C = xc[:, Di + G * N:].reshape(T, G, N).repeat_interleave(rep, dim=1)
    D = p["D"]
    if not want_y:
        L = torch.exp(segsum(dA.T))  # [H,T,T]
        M = torch.einsum("thn,shn->hts", C, B) * L * cs.T[:, None, :]
        return M + torch.diag_embed(D[:, None].expand(H, T))
    # sequential recurrence (independent of the chunked / materialized forms)
    s = torch.zeros(H, P, N, dtype=DT)
    ys = []
    for t in range(T):
        X = x[t] * cs[t][:, None]
        s = torch.exp(dA[t])[:, None, None] * s + X[:, :, None] * B[t][:, None, :]
        ys.append(torch.einsum("hpn,hn->hp", s, C[t]))
    y = (torch.stack(ys) + D[None, :, None] * x).reshape(T, Di)
    if kind == 0:
        g = (y * F.silu(z)).reshape(T, G, Di // G)
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + eps)
        g = g.reshape(T, Di) * p["norm_w"]
    else:
        g = y * F.silu(z + p.get("z_bias", torch.zeros(Di, dtype=DT)))
    return g @ p["out_proj"].T + p.get("out_proj_b", torch.zeros(d, dtype=DT))


def run_case(r):
    kind, d, Di, H, P, N, G, K, d_mlp, Bsz, T, flags = r.raw("<12i")
    eps, dt_lo, dt_hi, _ = r.raw("<4f")
    cfg = (kind, d, Di, H, P, N, G, K, d_mlp, eps, dt_lo, dt_hi)
    Cc = Di + 2 * G * N
    R = 2 * d_mlp + Di + Cc + H if kind == 0 else Cc + Di + H
    u = r.arr(Bsz * T, d)
    p = {}  # name -> tensor, in file order
    p["in_proj"] = r.arr(R, d)
    if flags & 1:
        p["in_proj_b"] = r.arr(R)
    p["conv_w"] = r.arr(Cc, K)
    if flags & 2:
        p["conv_b"] = r.arr(Cc)
    if kind == 0:
        p["dt_bias"], p["A_log"] = r.arr(H), r.arr(H)
    p["D"] = r.arr(H)
    if kind == 0:
        p["norm_w"] = r.arr(Di)
    if flags & 4:
        p["z_bias"] = r.arr(Di)
    p["out_proj"] = r.arr(d, Di)
    if flags & 8:
        p["out_proj_b"] = r.arr(d)
    dy = r.arr(Bsz * T, d)
    dM = r.arr(Bsz, H, T, T)

    out = []
    for want_y in (True, False):
        uu = u.clone().requires_grad_(True)
        names = [k for k in p if want_y or k in MAT_NAMES]
        leaves = {k: p[k].clone().requires_grad_(True) for k in p}
        loss = 0
        for b in range(Bsz):
            res = mixer(leaves, cfg, uu[b * T:(b + 1) * T], want_y)
            loss = loss + (res * (dy[b * T:(b + 1) * T] if want_y else dM[b])).sum()
        grads = torch.autograd.grad(loss, [uu] + [leaves[k] for k in names], allow_unused=True)
        for g, ref in zip(grads, [uu] + [leaves[k] for k in names]):
            out.append(torch.zeros_like(ref) if g is None else g)
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: ssm_grad_ref.py IN OUT")
    data = open(sys.argv[1], "rb").read()
    r = Reader(data)
    (magic,) = r.raw("<8s")
    version, n = r.raw("<2i")
    if magic != b"MOLTSGRI" or version != 1:
        sys.exit("ssm_grad_ref.py: bad input file (magic/version)")
    chunks = [struct.pack("<8s2i", b"MOLTSGRO", 1, n)]
    for _ in range(n):
        for a in run_case(r):
            chunks.append(a.detach().to(torch.float32).numpy().astype("<f4").tobytes())
    if r.o != len(data):
        sys.exit("ssm_grad_ref.py: %d trailing bytes in input" % (len(data) - r.o))
    with open(sys.argv[2], "wb") as f:
        f.write(b"".join(chunks))


if __name__ == "__main__":
    main()
