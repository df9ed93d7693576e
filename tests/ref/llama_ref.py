#!/usr/bin/env python3
"""llama_ref.py — an independent PyTorch (float64) re-implementation of the
Llama forward pass, used as the oracle for molt's C engine.

It reads a llama2.c checkpoint *directly* and applies RoPE the llama2.c way
(rotating interleaved pairs (2i, 2i+1)), so it shares nothing with molt's
conversion to the HF layout (pairs (i, i+hd/2)). Greedy decoding re-runs the
whole sequence every step (no KV cache), another independent path.

usage: llama_ref.py greedy MODEL.bin IDS_IN IDS_OUT N
   IDS_IN: one line per prompt, space-separated token ids (BOS first).
   IDS_OUT: per prompt, the N greedily generated ids (stops at BOS=1 like run.c).
"""
import struct
import sys

import torch

torch.set_grad_enabled(False)


def load_llama2c(path):
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq = struct.unpack("7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    w = torch.frombuffer(bytearray(data[28:]), dtype=torch.float32).double()
    hs = dim // n_heads
    off = 0

    def take(*shape):
        nonlocal off
        n = 1
        for s in shape:
            n *= s
        t = w[off:off + n].reshape(*shape)
        off += n
        return t

    p = {}
    p["tok"] = take(vocab, dim)
    p["rms_att"] = take(n_layers, dim)
    p["wq"] = take(n_layers, dim, dim)
    p["wk"] = take(n_layers, n_kv * hs, dim)
    p["wv"] = take(n_layers, n_kv * hs, dim)
    p["wo"] = take(n_layers, dim, dim)
    p["rms_ffn"] = take(n_layers, dim)
    p["w1"] = take(n_layers, hidden, dim)
    p["w2"] = take(n_layers, dim, hidden)
    p["w3"] = take(n_layers, hidden, dim)
    p["rms_final"] = take(dim)
    take(seq, hs // 2)
    take(seq, hs // 2)
    p["wcls"] = p["tok"] if shared else take(vocab, dim)
    assert off == w.numel(), "size mismatch"
    cfg = dict(dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab, seq=seq, hs=hs)
    return cfg, p


def rmsnorm(x, w, eps=1e-5):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope_interleaved(x, pos, hs):
    # x: [T, nh, hs]; llama2.c: pairs (2i, 2i+1) rotate by pos * 10000^(-2i/hs)
    T = x.shape[0]
    i = torch.arange(0, hs, 2, dtype=torch.float64)
    freq = 1.0 / (10000.0 ** (i / hs))
    ang = torch.arange(pos, pos + T, dtype=torch.float64)[:, None] * freq[None, :]
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def forward(cfg, p, ids):
    T = len(ids)
    hs, H, KV = cfg["hs"], cfg["n_heads"], cfg["n_kv"]
    x = p["tok"][torch.tensor(ids)]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(cfg["n_layers"]):
        u = rmsnorm(x, p["rms_att"][l])
        q = (u @ p["wq"][l].T).reshape(T, H, hs)
        k = (u @ p["wk"][l].T).reshape(T, KV, hs)
        v = (u @ p["wv"][l].T).reshape(T, KV, hs)
        q, k = rope_interleaved(q, 0, hs), rope_interleaved(k, 0, hs)
        rep = H // KV
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = torch.einsum("thd,shd->hts", q, k) / (hs ** 0.5) + mask
        att = torch.softmax(att, dim=-1)
        o = torch.einsum("hts,shd->thd", att, v).reshape(T, H * hs)
        x = x + o @ p["wo"][l].T
        u = rmsnorm(x, p["rms_ffn"][l])
        g = u @ p["w1"][l].T
        x = x + (torch.nn.functional.silu(g) * (u @ p["w3"][l].T)) @ p["w2"][l].T
    x = rmsnorm(x, p["rms_final"])
    return x @ p["wcls"].T


def main():
    if len(sys.argv) != 6 or sys.argv[1] != "greedy":
        print(__doc__)
        sys.exit(2)
    cfg, p = load_llama2c(sys.argv[2])
    n = int(sys.argv[5])
    outs = []
    for line in open(sys.argv[3]):
        ids = [int(t) for t in line.split()]
        gen = []
        for _ in range(n):
            logits = forward(cfg, p, ids + gen)[-1]
            nxt = int(torch.argmax(logits))
            if nxt == 1:
                break
            gen.append(nxt)
        outs.append(" ".join(map(str, gen)))
    with open(sys.argv[4], "w") as f:
        f.write("\n".join(outs) + "\n")


if __name__ == "__main__":
    main()
