#!/usr/bin/env python3
"""mamba3_ref.py — float64 PyTorch reference of molt's Mamba-3 mixer, written
from the equations of shared/docs/ALGORITHMS.md §8 (8.1 parameterization,
8.2 the exponential-trapezoidal step, 8.3 MIMO), independently of the C code:
the mixer is the token-by-token recurrence, its mixing matrix the response of
that recurrence to unit inputs, its gradients autograd. Used by
tests/test_mamba3.c:

    /usr/bin/python3 tests/ref/mamba3_ref.py IN OUT

IN (written by the C test, little-endian):
    b"MOLTM3IN"  int32 version=1  int32 n_cases
    per case:
      int32[12]  d H P N G R mimo norm B T 0 0
      float32[4] rope_fraction A_floor eps 0
      float32 arrays: u[B,T,d], the parameters that exist, in this order:
        in_proj[Rin,d] dt_bias[H] B_bias[H,R,N] C_bias[H,R,N] B_norm[N] C_norm[N]
        (mimo_x, mimo_z, mimo_o [H,R,P] with mimo) D[H] (norm[H*P] with norm)
        out_proj[d,H*P]
      then state0 (molt's state block: ssm[H,P,N] k_prev[R,H,N] v_prev[H,P] angle[H,S]),
      dy[B,T,d], dM[B,H,T,T]
OUT:
    b"MOLTM3OU"  int32 version=1  int32 n_cases
    per case, float32: y[T,d] and the final state block of sequence 0 run from state0;
    M[B,H,T,T] from zero states (the ranks averaged: (1/R²) Σ_{r,r'} of the
    rank-to-rank matrices, D included); the gradients of Σ dy·y over all B
    sequences from zero states w.r.t. u and every parameter (the order above);
    the gradients of Σ dM·M w.r.t. u and in_proj dt_bias B_bias C_bias B_norm C_norm D.
"""
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
DT = torch.float64


class Reader:
    def __init__(self, data):
        self.b, self.o = data, 0

    def raw(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.o)
        self.o += struct.calcsize(fmt)
        return v

    def arr(self, *shape):
        n = int(np.prod(shape))
        a = np.frombuffer(self.b, dtype="<f4", count=n, offset=self.o)
        self.o += 4 * n
        return torch.from_numpy(a.astype(np.float64)).reshape(shape)


class Cfg:
    def __init__(self, d, H, P, N, G, R, mimo, norm, rope, A_floor, eps):
        self.d, self.H, self.P, self.N, self.G, self.R = d, H, P, N, G, R
        self.mimo, self.norm, self.A_floor, self.eps = bool(mimo), bool(norm), A_floor, eps
        split = int(N * rope)  # num_rope_angles: the first even number of dims ≤ N·rope, halved
        if split % 2:
            split -= 1
        self.S = split // 2
        self.Di = H * P
        self.Rin = 2 * self.Di + 2 * N * G * R + 3 * H + self.S


def rotate(v, phi, c):
    """v[..., N] turned pairwise by phi[..., S]: SISO pairs (2i, 2i+1), MIMO (i, N/2 + i)."""
    S, N = c.S, c.N
    if c.mimo:
        ia, ib = torch.arange(S), N // 2 + torch.arange(S)
    else:
        ia, ib = 2 * torch.arange(S), 2 * torch.arange(S) + 1
    a, b = v[..., ia], v[..., ib]
    cs, sn = torch.cos(phi), torch.sin(phi)
    out = v.clone()
    out[..., ia] = a * cs - b * sn
    out[..., ib] = a * sn + b * cs
    return out


def split_proj(zx, c):
    Di, RGN, H = c.Di, c.R * c.G * c.N, c.H
    z, x, Bm, Cm, ddt, ddA, trap, ang = torch.split(zx, [Di, Di, RGN, RGN, H, H, H, c.S], dim=-1)
    return z, x, Bm, Cm, ddt, ddA, trap, ang


def prep(zx, p, c, phi0):
    """zx[T,Rin] -> per-token q, k [T,R,H,N] (normed, biased, rotated), dA, Δ, λ [T,H], final φ."""
    T = zx.shape[0]
    H, N, G, R = c.H, c.N, c.G, c.R
    z, x, Bm, Cm, ddt, ddA, trap, ang = split_proj(zx, c)
    delta = F.softplus(ddt + p["dt_bias"])
    ht = torch.where(ddA >= 0, 1 + ddA, 1 / (1 - ddA))
    A = -torch.clamp(ht, min=c.A_floor)  # A ≤ −A_floor
    dA = delta * A
    lam = torch.sigmoid(trap)
    theta = torch.tanh(ang) * math.pi  # [T,S], shared by the heads
    phi = phi0[None] + torch.cumsum(theta[:, None, :] * delta[:, :, None], dim=0)  # [T,H,S]

    def normed(raw, w, bias):
        raw = raw.reshape(T, R, G, N)
        nb = raw / torch.sqrt((raw * raw).mean(-1, keepdim=True) + c.eps) * w
        nb = nb.repeat_interleave(H // G, dim=2)  # head h reads group h // (H/G)
        return nb + bias.permute(1, 0, 2)[None]  # bias [H,R,N] -> [1,R,H,N]

    k = rotate(normed(Bm, p["B_norm"], p["B_bias"]), phi[:, None], c)
    q = rotate(normed(Cm, p["C_norm"], p["C_bias"]), phi[:, None], c)
    return z, x, q, k, dA, delta, lam, phi


def gate(yr, z, p, c):
    """yr[R,H,P] pre-gate of one token, z[H,P] -> g[H*P]."""
    zr = z[None] * (p["mimo_z"].permute(1, 0, 2) if c.mimo else 1.0)
    if c.norm:
        yr = yr / torch.sqrt((yr * yr).mean(-1, keepdim=True) + c.eps) * p["norm"].reshape(c.H, c.P)
    g = yr * F.silu(zr)
    if c.mimo:
        g = (g * p["mimo_o"].permute(1, 0, 2)).sum(0)
    else:
        g = g[0]
    return g.reshape(-1)


def mixer(u, p, c, state=None):
    """u[T,d] from state (dict: ssm[H,P,N], kprev[R,H,N], vprev[H,P], angle[H,S]; None =
    zeros) -> y[T,d], final state. The recurrence of §8.2 / §8.3."""
    T = u.shape[0]
    H, P, N, R = c.H, c.P, c.N, c.R
    if state is None:
        state = dict(ssm=torch.zeros(H, P, N, dtype=DT), kprev=torch.zeros(R, H, N, dtype=DT),
                     vprev=torch.zeros(H, P, dtype=DT), angle=torch.zeros(H, c.S, dtype=DT))
    zx = u @ p["in_proj"].T
    z, x, q, k, dA, delta, lam, phi = prep(zx, p, c, state["angle"])
    mx = p["mimo_x"].permute(1, 0, 2) if c.mimo else torch.ones(1, H, P, dtype=DT)  # [R,H,P]
    h, kp, vp = state["ssm"], state["kprev"], state["vprev"]
    ys = []
    for t in range(T):
        xt = x[t].reshape(H, P)
        v, vprev = xt[None] * mx, vp[None] * mx  # [R,H,P]
        alpha = torch.exp(dA[t])[:, None, None]
        beta = ((1 - lam[t]) * delta[t])[:, None, None] * alpha
        gamma = (lam[t] * delta[t])[:, None, None]
        h = alpha * h + beta * torch.einsum("rhp,rhn->hpn", vprev, kp) + \
            gamma * torch.einsum("rhp,rhn->hpn", v, k[t])
        yr = torch.einsum("hpn,rhn->rhp", h, q[t]) + p["D"][None, :, None] * v
        ys.append(gate(yr, z[t].reshape(H, P), p, c))
        kp, vp = k[t], xt
    g = torch.stack(ys)
    y = g @ p["out_proj"].T
    wrap = phi[-1] - 2 * math.pi * torch.floor(phi[-1] / (2 * math.pi))
    return y, dict(ssm=h, kprev=kp, vprev=vp, angle=wrap)


def matrix(u, p, c):
    """M[H,T,T] from a zero state: the pre-gate response of the recurrence at (t, r) to a
    unit input v at (s, r'), averaged over r and r' (D included)."""
    T = u.shape[0]
    H, N, R = c.H, c.N, c.R
    zx = u @ p["in_proj"].T
    _, _, q, k, dA, delta, lam, _ = prep(zx, p, c, torch.zeros(H, c.S, dtype=DT))
    TR = T * R
    V = torch.eye(TR, dtype=DT).reshape(TR, T, R)  # batch e = (s, r'): v[t, r] = δ
    Ms = []
    for hh in range(H):
        st = torch.zeros(TR, N, dtype=DT)
        kp = torch.zeros(R, N, dtype=DT)
        vp = torch.zeros(TR, R, dtype=DT)
        out = []
        for t in range(T):
            v = V[:, t]  # [TR, R]
            al = torch.exp(dA[t, hh])
            st = al * st + (1 - lam[t, hh]) * delta[t, hh] * al * (vp @ kp) + \
                lam[t, hh] * delta[t, hh] * (v @ k[t, :, hh])
            out.append(st @ q[t, :, hh].T + p["D"][hh] * v)  # [TR, R]
            kp, vp = k[t, :, hh], v
        Y = torch.stack(out, 1).reshape(T, R, T, R)  # [s, r', t, r]
        Ms.append(Y.sum(dim=(1, 3)).T / (R * R))  # [t, s]
    return torch.stack(Ms)


PARAMS = ["in_proj", "dt_bias", "B_bias", "C_bias", "B_norm", "C_norm", "mimo_x", "mimo_z",
          "mimo_o", "D", "norm", "out_proj"]
MAT_PARAMS = ["in_proj", "dt_bias", "B_bias", "C_bias", "B_norm", "C_norm", "D"]


def run_case(r, out):
    d, H, P, N, G, R, mimo, norm, B, T, _, _ = r.raw("<12i")
    rope, A_floor, eps, _ = r.raw("<4f")
    c = Cfg(d, H, P, N, G, R, mimo, norm, rope, A_floor, eps)
    u = r.arr(B, T, d)
    shapes = {"in_proj": (c.Rin, d), "dt_bias": (H,), "B_bias": (H, R, N), "C_bias": (H, R, N),
              "B_norm": (N,), "C_norm": (N,), "mimo_x": (H, R, P), "mimo_z": (H, R, P),
              "mimo_o": (H, R, P), "D": (H,), "norm": (H * P,), "out_proj": (d, H * P)}
    names = [n for n in PARAMS if (mimo or not n.startswith("mimo")) and (norm or n != "norm")]
    p = {n: r.arr(*shapes[n]) for n in names}
    st0 = dict(ssm=r.arr(H, P, N), kprev=r.arr(R, H, N), vprev=r.arr(H, P), angle=r.arr(H, c.S))
    dy, dM = r.arr(B, T, d), r.arr(B, H, T, T)
    with torch.no_grad():
        y, st = mixer(u[0], p, c, st0)
        M = torch.stack([matrix(u[b], p, c) for b in range(B)])
    put = lambda t: out.append(t.detach().reshape(-1).numpy().astype("<f4").tobytes())
    put(y)
    for key in ("ssm", "kprev", "vprev", "angle"):
        put(st[key])
    put(M)
    # gradients from zero states
    for mat in (0, 1):
        uu = u.clone().requires_grad_(True)
        pp = {n: t.clone().requires_grad_(True) for n, t in p.items()}
        if mat:
            L = sum((dM[b] * matrix(uu[b], pp, c)).sum() for b in range(B))
        else:
            L = sum((dy[b] * mixer(uu[b], pp, c)[0]).sum() for b in range(B))
        L.backward()
        put(uu.grad)
        for n in names:
            if not mat or n in MAT_PARAMS:
                put(pp[n].grad if pp[n].grad is not None else torch.zeros_like(pp[n]))


def main():
    data = open(sys.argv[1], "rb").read()
    r = Reader(data)
    magic = r.b[:8]
    r.o = 8
    if magic != b"MOLTM3IN":
        sys.exit("bad input magic")
    ver, n = r.raw("<2i")
    out = [b"MOLTM3OU", struct.pack("<2i", 1, n)]
    for _ in range(n):
        run_case(r, out)
    open(sys.argv[2], "wb").write(b"".join(out))


if __name__ == "__main__":
    main()
