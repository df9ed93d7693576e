#!/usr/bin/env python3
"""dense_grad_ref.py — float64 PyTorch autograd reference for molt's dense
backward passes (tests/test_grad_dense.c). Written from PyTorch / HF semantics,
independently of the C code:

  * attention: HF LlamaAttention (eager): q/k/v Linear, RoPE in the
    rotate_half convention with cos/sin duplicated over the two halves, GQA
    by repeat_interleave of k/v heads, (q·kᵀ)·hd^-½ + causal mask, softmax,
    ·v, o_proj (ALGORITHMS.md §5.1);
  * RMSNorm (Llama), SwiGLU (silu(g)·u), Linear;
  * losses: F.cross_entropy (sum, negative targets ignored), mohawk stage 3
    F.cross_entropy(student/τ, softmax(teacher)) (sum), stage 1
    torch.linalg.matrix_norm(S − A, 'fro') (sum), stage 2
    torch.norm(x − y, p=2, dim=-1) (sum) — each times `scale`;
  * hybrid combiner (mohawk DoubleBlockAdapter, ALGORITHMS.md §7) with
    torch.std (unbiased).
Gradients come from autograd of sum(out · d_out) (ops) or of scale·loss (losses).

usage: /usr/bin/python3 tests/ref/dense_grad_ref.py IN OUT

IN (little-endian): b"MOLTGRDI" int32 version=1 int32 n_cases, then per case
    int32 op, int32 n_int, int32 ints[n_int], int32 n_arr, n_arr × (int32 len, float32[len])
OUT: b"MOLTGRDO" int32 version=1 int32 n_cases, then per case
    int32 n_arr, n_arr × (int32 len, float32[len])
ops (ints; input arrays → output arrays):
  0 linear    T in out has_b;  x W [b] dy          → y dx dW [db]
  1 rmsnorm   T d;             x w eps dy          → y dx dw
  2 swiglu    n;               g u dh              → h dg du
  3 attention B T d H KV hd has_b;  u wq wk wv wo [bq bk bv bo] cos sin dout
                               → out probs du dwq dwk dwv dwo [dbq dbk dbv dbo]
  4 ce        n V;             logits targets scale     → loss dlogits
  5 soft_ce   n V;             student teacher tau scale → loss dstudent
  6 frobenius m L;             S A scale                → loss dS
  7 l2_rows   n d;             x y scale                → loss dx
  8 hybrid    T d;             s a W b dout             → out ds da dW db
"""
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DT = torch.float64


class Reader:
    def __init__(self, data):
        self.b, self.o = data, 0

    def i32(self, n=1):
        v = struct.unpack_from("<%di" % n, self.b, self.o)
        self.o += 4 * n
        return list(v)

    def arr(self):
        (n,) = self.i32()
        a = np.frombuffer(self.b, dtype="<f4", count=n, offset=self.o)
        self.o += 4 * n
        return torch.from_numpy(a.astype(np.float64))


def leaf(t, *shape):
    return t.reshape(shape).clone().requires_grad_(True)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def attention(B, T, d, H, KV, hd, has_b, arrs):
    it = iter(arrs)
    u = leaf(next(it), B, T, d)
    wq, wk, wv = leaf(next(it), H * hd, d), leaf(next(it), KV * hd, d), leaf(next(it), KV * hd, d)
    wo = leaf(next(it), d, H * hd)
    bq = bk = bv = bo = None
    if has_b:
        bq, bk, bv, bo = leaf(next(it), H * hd), leaf(next(it), KV * hd), leaf(next(it), KV * hd), leaf(next(it), d)
    half_cos, half_sin = next(it).reshape(-1, hd // 2)[:T], next(it).reshape(-1, hd // 2)[:T]
    dout = next(it).reshape(B, T, d)
    cos = torch.cat((half_cos, half_cos), dim=-1)[None, None]  # [1,1,T,hd] (HF emb = cat(freqs, freqs))
    sin = torch.cat((half_sin, half_sin), dim=-1)[None, None]
    q = F.linear(u, wq, bq).view(B, T, H, hd).transpose(1, 2)
    k = F.linear(u, wk, bk).view(B, T, KV, hd).transpose(1, 2)
    v = F.linear(u, wv, bv).view(B, T, KV, hd).transpose(1, 2)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    k = k.repeat_interleave(H // KV, dim=1)
    v = v.repeat_interleave(H // KV, dim=1)
    s = torch.matmul(q, k.transpose(2, 3)) * hd ** -0.5
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    o = torch.matmul(p, v).transpose(1, 2).reshape(B, T, H * hd)
    out = F.linear(o, wo, bo)
    (out * dout).sum().backward()
    res = [out, p, u.grad, wq.grad, wk.grad, wv.grad, wo.grad]
    if has_b:
        res += [bq.grad, bk.grad, bv.grad, bo.grad]
    return res


def run_case(op, ints, a):
    if op == 0:
        T, nin, nout, has_b = ints
        x, W = leaf(a[0], T, nin), leaf(a[1], nout, nin)
        b = leaf(a[2], nout) if has_b else None
        dy = a[3 if has_b else 2].reshape(T, nout)
        y = F.linear(x, W, b)
        (y * dy).sum().backward()
        return [y, x.grad, W.grad] + ([b.grad] if has_b else [])
    if op == 1:
        T, d = ints
        x, w, eps, dy = leaf(a[0], T, d), leaf(a[1], d), float(a[2][0]), a[3].reshape(T, d)
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
        (y * dy).sum().backward()
        return [y, x.grad, w.grad]
    if op == 2:
        g, u, dh = leaf(a[0], -1), leaf(a[1], -1), a[2]
        h = F.silu(g) * u
        (h * dh).sum().backward()
        return [h, g.grad, u.grad]
    if op == 3:
        return attention(*ints, a)
    if op == 4:
        n, V = ints
        x, tgt, scale = leaf(a[0], n, V), a[1].long(), float(a[2][0])
        tgt = torch.where(tgt < 0, torch.full_like(tgt, -100), tgt)
        loss = F.cross_entropy(x, tgt, ignore_index=-100, reduction="sum")
        (loss * scale).backward()
        return [loss.reshape(1), x.grad]
    if op == 5:
        n, V = ints
        s, t, tau, scale = leaf(a[0], n, V), a[1].reshape(n, V), float(a[2][0]), float(a[3][0])
        loss = F.cross_entropy(s / tau, t.softmax(dim=-1), reduction="sum")
        (loss * scale).backward()
        return [loss.reshape(1), s.grad]
    if op == 6:
        m, L = ints
        S, A, scale = leaf(a[0], m, L, L), a[1].reshape(m, L, L), float(a[2][0])
        loss = torch.linalg.matrix_norm(S - A, ord="fro").sum()
        (loss * scale).backward()
        return [loss.reshape(1), S.grad]
    if op == 7:
        n, d = ints
        x, y, scale = leaf(a[0], n, d), a[1].reshape(n, d), float(a[2][0])
        loss = torch.norm(x - y, p=2, dim=-1).sum()
        (loss * scale).backward()
        return [loss.reshape(1), x.grad]
    if op == 8:
        T, d = ints
        s, at = leaf(a[0], T, d), leaf(a[1], T, d)
        W, b, dout = leaf(a[2], d, d), leaf(a[3], d), a[4].reshape(T, d)
        eps = 1e-5
        am, astd = at.mean(-1, keepdim=True), at.std(-1, keepdim=True)
        sm, sstd = s.mean(-1, keepdim=True), s.std(-1, keepdim=True)
        ap = (at - am) / (astd + eps) * (sstd + eps) + sm
        out = 0.5 * (s + F.linear(ap, W, b))
        (out * dout).sum().backward()
        return [out, s.grad, at.grad, W.grad, b.grad]
    raise ValueError("unknown op %d" % op)


def main():
    data = open(sys.argv[1], "rb").read()
    assert data[:8] == b"MOLTGRDI", "bad magic"
    r = Reader(data)
    r.o = 8
    ver, n_cases = r.i32(2)
    assert ver == 1, "version %d" % ver
    out = [b"MOLTGRDO", struct.pack("<2i", 1, n_cases)]
    for _ in range(n_cases):
        (op,) = r.i32()
        (ni,) = r.i32()
        ints = r.i32(ni) if ni else []
        (na,) = r.i32()
        arrs = [r.arr() for _ in range(na)]
        res = run_case(op, ints, arrs)
        out.append(struct.pack("<i", len(res)))
        for t in res:
            f = t.detach().reshape(-1).numpy().astype("<f4")
            out.append(struct.pack("<i", f.size))
            out.append(f.tobytes())
    assert r.o == len(data), "trailing input"
    with open(sys.argv[2], "wb") as f:
        f.write(b"".join(out))


if __name__ == "__main__":
    torch.set_default_dtype(DT)
    main()
