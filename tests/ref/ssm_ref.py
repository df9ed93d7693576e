#!/usr/bin/env python3
"""ssm_ref.py — float64 PyTorch reference of molt's two SSM mixers, written
from the equations of shared/docs/ALGORITHMS.md (§1.2 Mamba-2 with the
per-group gated RMSNorm of mamba_ssm, §2.2 DiscreteMamba2 / Llamba, §1.4 the
materialized mixing matrix), independently of the C code. Used by
tests/test_ssm_mixer.c:

    /usr/bin/python3 tests/ref/ssm_ref.py IN OUT

IN (written by the C test, little-endian):
    b"MOLTSSMI"  int32 version=1  int32 n_cases
    per case:
      int32[12]  kind(0 Mamba-2, 1 Discrete) d_model d_inner H P N G K d_mlp T flags 0
                 flags: 1 in_proj_b, 2 conv_b, 4 z_bias, 8 out_proj_b
      float32[4] norm_eps dt_limit_lo dt_limit_hi 0
      float32 arrays, in order (R in_proj rows, Cc = d_inner + 2 G N, Di = d_inner):
        u[T,d] in_proj[R,d] (in_proj_b[R]) conv_w[Cc,K] (conv_b[Cc])
        dt_bias[H] A_log[H] (Mamba-2 only) D[H] norm_w[Di] (Mamba-2 only)
        (z_bias[Di]) out_proj[d,Di] (out_proj_b[d]) conv_state0[Cc,K-1] ssm_state0[H,P,N]
OUT:
    b"MOLTSSMO"  int32 version=1  int32 n_cases
    per case, float32: y[T,d] conv_state[Cc,K-1] ssm_state[H,P,N] (continuing from
    the given states) and M[H,T,T] (from zero state, D on the diagonal, such that
    y_pre[:,h,p] = M[h] @ x[:,h,p] with x the post-conv x).
"""
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)  # tiny problems: extra threads only spin (OpenMP) on small machines

DT = torch.float64


class Reader:
    def __init__(self, data):
        self.b, self.o = data, 0

    def raw(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.o)
        self.o += struct.calcsize(fmt)
        return v

    def arr(self, *shape):
        n = int(np.prod(shape)) if shape else 1
        a = np.frombuffer(self.b, dtype="<f4", count=n, offset=self.o)
        self.o += 4 * n
        return torch.from_numpy(a.astype(np.float64)).reshape(shape)


def segsum(a):
    """a[..., T] -> S[..., T, T], S[i, j] = sum_{k=j+1..i} a_k (i >= j), -inf above.
    Stable form (masked cumsum), as ssd_minimal_discrete."""
    T = a.shape[-1]
    x = a[..., None].expand(*a.shape, T)  # x[..., k, j] = a_k
    x = x.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool), -1), 0.0)
    s = torch.cumsum(x, dim=-2)
    return s.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool), 0), -float("inf"))


def conv_zero_state(xbc, w, b, K):
    # xbc [T, Cc]; depthwise causal conv: pad K-1 both sides, keep the first T outputs
    T, Cc = xbc.shape
    y = F.conv1d(xbc.T[None], w[:, None, :], b, padding=K - 1, groups=Cc)[0, :, :T]
    return y.T


def run_case(r):
    kind, d, Di, H, P, N, G, K, d_mlp, T, flags, _ = r.raw("<12i")
    eps, dt_lo, dt_hi, _ = r.raw("<4f")
    Cc = Di + 2 * G * N
    R = 2 * d_mlp + Di + Cc + H if kind == 0 else Cc + Di + H
    u = r.arr(T, d)
    W_in = r.arr(R, d)
    b_in = r.arr(R) if flags & 1 else torch.zeros(R, dtype=DT)
    conv_w = r.arr(Cc, K)
    conv_b = r.arr(Cc) if flags & 2 else torch.zeros(Cc, dtype=DT)
    if kind == 0:
        dt_bias, A_log = r.arr(H), r.arr(H)
    D = r.arr(H)
    if kind == 0:
        norm_w = r.arr(Di)
    z_bias = r.arr(Di) if flags & 4 else torch.zeros(Di, dtype=DT)
    W_out = r.arr(d, Di)
    b_out = r.arr(d) if flags & 8 else torch.zeros(d, dtype=DT)
    conv0 = r.arr(Cc, K - 1)
    ssm0 = r.arr(H, P, N)

    zx = u @ W_in.T + b_in
    if kind == 0:
        _, _, z, xbc, dt = torch.split(zx, [d_mlp, d_mlp, Di, Cc, H], dim=-1)
    else:
        xbc, z, a_log_t = torch.split(zx, [Cc, Di, H], dim=-1)

    # conv continuing from conv0: prepend the history, valid convolution
    full = torch.cat([conv0.T, xbc], dim=0)  # [K-1+T, Cc]
    xc = F.conv1d(full.T[None], conv_w[:, None, :], conv_b, groups=Cc)[0].T  # [T, Cc]
    conv_out = full[full.shape[0] - (K - 1):].T.contiguous()  # [Cc, K-1]
    xc0 = conv_zero_state(xbc, conv_w, conv_b, K)  # for M (zero state)
    if kind == 0:
        xc, xc0 = F.silu(xc), F.silu(xc0)

    if kind == 0:
        delta = F.softplus(dt + dt_bias)
        delta = torch.clamp(delta, min=dt_lo, max=dt_hi)
        dA = delta * (-torch.exp(A_log))  # [T, H]
        colscale = delta
    else:
        dA = -F.softplus(a_log_t)
        colscale = torch.ones(T, H, dtype=DT)

    rep = H // G

    def split_xbc(v):
        x = v[:, :Di].reshape(T, H, P)
        B = v[:, Di:Di + G * N].reshape(T, G, N).repeat_interleave(rep, dim=1)  # [T,H,N]
        C = v[:, Di + G * N:].reshape(T, G, N).repeat_interleave(rep, dim=1)
        return x, B, C

    # sequential recurrence from ssm0
    x, B, C = split_xbc(xc)
    s = ssm0.clone()
    ys = torch.zeros(T, H, P, dtype=DT)
    for t in range(T):
        a = torch.exp(dA[t])  # [H]
        X = x[t] * colscale[t][:, None]  # Mamba-2: x·Δ ; Discrete: x
        s = a[:, None, None] * s + X[:, :, None] * B[t][:, None, :]
        ys[t] = torch.einsum("hpn,hn->hp", s, C[t])
    y = ys + D[None, :, None] * x
    y = y.reshape(T, Di)
    if kind == 0:
        g = y * F.silu(z)
        g = g.reshape(T, G, Di // G)
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + eps)
        g = g.reshape(T, Di) * norm_w
    else:
        g = y * F.silu(z + z_bias)
    out = g @ W_out.T + b_out

    # materialized matrix from zero state: M[h,t,s] = C_t.B_s exp(segsum) colscale_s (+D diag)
    _, B0, C0 = split_xbc(xc0)
    L = torch.exp(segsum(dA.T))  # [H,T,T]
    CB = torch.einsum("thn,shn->hts", C0, B0)
    M = CB * L * colscale.T[:, None, :]
    M = M + torch.diag_embed(D[:, None].expand(H, T))
    return [out, conv_out, s, M]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: ssm_ref.py IN OUT")
    data = open(sys.argv[1], "rb").read()
    r = Reader(data)
    (magic,) = r.raw("<8s")
    version, n = r.raw("<2i")
    if magic != b"MOLTSSMI" or version != 1:
        sys.exit("ssm_ref.py: bad input file (magic/version)")
    chunks = [struct.pack("<8s2i", b"MOLTSSMO", 1, n)]
    for _ in range(n):
        for a in run_case(r):
            chunks.append(a.to(torch.float32).numpy().astype("<f4").tobytes())
    if r.o != len(data):
        sys.exit("ssm_ref.py: %d trailing bytes in input" % (len(data) - r.o))
    with open(sys.argv[2], "wb") as f:
        f.write(b"".join(chunks))


if __name__ == "__main__":
    main()
