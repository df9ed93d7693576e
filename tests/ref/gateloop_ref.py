#!/usr/bin/env python3
"""gateloop_ref.py — float64 PyTorch reference of the GateLoop mixer
(src/mixers/gl_mixer.h), written independently from shared/docs/ALGORITHMS.md
§9 with complex tensors: the state is torch.complex128 and the recurrence is
the literal one,

    a_t = sigmoid(m_t + b_m) · exp(i·(φ_t + b_φ))          per head, per complex pair
    S_t = a_t ⊙ S_{t−1} + k̃_t ⊗ v_t                        S: [H, J, P] complex
    y_t = Re(q̃_t · S_t)                                    q̃_j = q[2j] + i·q[2j+1]
    out = (y ⊙ silu(g + g_bias)) · out_projᵀ

with [q | k | v | g | m | φ] = u · in_projᵀ (q, k, v, g: H·P each; m, φ: H·P/2
each) — so molt's realisation with real 2×2 rotation-scaling blocks is checked
against the complex definition. The mixing matrix is the literal product
M[h,t,s] = Σ_j Re(q̃_t[j]·k̃_s[j]·Π_{r=s+1..t} a_r[j]). Gradients by autograd of
    L_y = Σ dy ∘ out      (B sequences, each from a zero state)
    L_M = Σ dM ∘ M
Used by tests/test_gateloop.c:

    /usr/bin/python3 tests/ref/gateloop_ref.py IN OUT

IN (little-endian): b"MOLTGLRI", int32[6] d H P B T 0, then float32 arrays
    u[B*T,d] in_proj[5*H*P,d] a_bias[H*P] g_bias[H*P] out_proj[d,H*P] dy[B*T,d] dM[B,H,T,T]
OUT: b"MOLTGLRO", then float32 arrays
    out[B*T,d] du d_in_proj d_a_bias d_g_bias d_out_proj       (L_y)
    M[B,H,T,T] du d_in_proj d_a_bias                            (L_M)
"""
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(1)
DT = torch.float64


def read(buf, off, n, shape):
    a = np.frombuffer(buf, dtype="<f4", count=n, offset=off).astype(np.float64)
    return torch.tensor(a.reshape(shape), dtype=DT), off + 4 * n


def project(u, p, H, P):
    Di, J = H * P, P // 2
    zx = u @ p["in_proj"].T
    q, k, v, g, m, ph = torch.split(zx, [Di, Di, Di, Di, H * J, H * J], dim=-1)
    T = u.shape[0]
    qc = torch.complex(q[:, 0::2], q[:, 1::2]).reshape(T, H, J)
    kc = torch.complex(k[:, 0::2], k[:, 1::2]).reshape(T, H, J)
    mag = torch.sigmoid(m + p["a_bias"][: H * J])
    ang = ph + p["a_bias"][H * J:]
    a = (mag * torch.exp(1j * ang)).reshape(T, H, J)
    return qc, kc, v.reshape(T, H, P), g, a


def mixer(u, p, H, P):
    """u [T,d] one sequence from a zero state -> out [T,d]"""
    qc, kc, v, g, a = project(u, p, H, P)
    T, J = u.shape[0], P // 2
    S = torch.zeros(H, J, P, dtype=torch.complex128)
    ys = []
    for t in range(T):
        S = a[t][:, :, None] * S + kc[t][:, :, None] * v[t][:, None, :]
        ys.append((qc[t][:, :, None] * S).sum(dim=1).real)  # [H, P]
    y = torch.stack(ys).reshape(T, H * P)
    gate = torch.nn.functional.silu(g + p["g_bias"])
    return (y * gate) @ p["out_proj"].T


def matrix(u, p, H, P):
    """u [T,d] -> M [H,T,T], the product of the transitions taken literally"""
    qc, kc, _, _, a = project(u, p, H, P)
    T = u.shape[0]
    rows = []
    for t in range(T):
        prod = torch.ones(H, P // 2, dtype=torch.complex128)
        row = [None] * T
        for s in range(t, -1, -1):
            row[s] = (qc[t] * kc[s] * prod).sum(dim=1).real  # [H]
            prod = prod * a[s]
        for s in range(t + 1, T):
            row[s] = torch.zeros(H, dtype=DT)
        rows.append(torch.stack(row, dim=1))  # [H, T]
    return torch.stack(rows, dim=1)  # [H, T, T]


def main():
    buf = open(sys.argv[1], "rb").read()
    assert buf[:8] == b"MOLTGLRI", "bad input magic"
    d, H, P, B, T, _ = struct.unpack_from("<6i", buf, 8)
    off = 32
    Di = H * P
    u, off = read(buf, off, B * T * d, (B * T, d))
    p = {}
    for name, shape in (("in_proj", (5 * Di, d)), ("a_bias", (Di,)), ("g_bias", (Di,)),
                        ("out_proj", (d, Di))):
        p[name], off = read(buf, off, int(np.prod(shape)), shape)
    dy, off = read(buf, off, B * T * d, (B * T, d))
    dM, off = read(buf, off, B * H * T * T, (B, H, T, T))
    assert off == len(buf), "input size"
    out = [b"MOLTGLRO"]

    def f32(x):
        out.append(x.detach().numpy().astype("<f4").tobytes())

    names = ("in_proj", "a_bias", "g_bias", "out_proj")
    # training forward and its gradients
    u1 = u.clone().requires_grad_(True)
    q = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    y = torch.cat([mixer(u1[b * T:(b + 1) * T], q, H, P) for b in range(B)])
    (y * dy).sum().backward()
    f32(y)
    f32(u1.grad)
    for n in names:
        f32(q[n].grad)
    # the matrix and its gradients (it reads in_proj and a_bias only)
    u1 = u.clone().requires_grad_(True)
    q = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    M = torch.stack([matrix(u1[b * T:(b + 1) * T], q, H, P) for b in range(B)])
    (M * dM).sum().backward()
    f32(M)
    f32(u1.grad)
    f32(q["in_proj"].grad)
    f32(q["a_bias"].grad)
    open(sys.argv[2], "wb").write(b"".join(out))


if __name__ == "__main__":
    main()
