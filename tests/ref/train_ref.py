#!/usr/bin/env python3
"""train_ref.py — float64 PyTorch oracle for molt's training parity tests
(model math in tests/ref/molt_torch.py, written from ALGORITHMS.md).

usage:
  train_ref.py grads MODEL_DIR BATCH.bin OUT.safetensors
      Mean next-token cross-entropy over the batch (targets < 0 not counted),
      one backward pass; writes the gradient of every parameter under its
      checkpoint name (float32; with tied embeddings the embedding gradient
      includes the lm_head contribution and there is no lm_head.weight entry)
      plus "loss": [1].
  train_ref.py steps MODEL_DIR BATCH.bin N LR WD CLIP OUT.json
      N AdamW steps (betas 0.9/0.95, eps 1e-8, weight decay WD on every
      parameter, constant LR) on the same batch; before each step the
      gradients are clipped to global L2 norm CLIP as clip_grad_norm_ does
      (CLIP ≤ 0: no clipping). Writes the N losses measured before each step
      as a JSON list of numbers.

BATCH.bin (little-endian): int32 B, int32 T, then B·T int32 input ids, then
B·T int32 target ids (both row-major [B, T]).
Runs with 1 torch thread unless MOLT_TORCH_THREADS says otherwise.
"""
import json
import os
import sys

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import molt_torch as mt  # noqa: E402


def loss_and_grads(model, ids, targets):
    """CE loss (a Python float) and dict name -> gradient (float64)."""
    model.zero_grad()
    loss = mt.ce(mt.forward(model, ids), targets)
    loss.backward()
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p))
             for n, p in model.params.items()}
    return loss.item(), grads


def cmd_grads(model_dir, batch, out):
    model = mt.load_model(model_dir)
    ids, targets = mt.read_batch(batch)
    loss, grads = loss_and_grads(model, ids, targets)
    grads["loss"] = torch.tensor([loss], dtype=torch.float64)
    mt.save_grads(out, grads)
    print("loss %.9f, %d gradients -> %s" % (loss, len(grads) - 1, out))


def cmd_steps(model_dir, batch, n, lr, wd, clip, out):
    model = mt.load_model(model_dir)
    ids, targets = mt.read_batch(batch)
    state, losses = {}, []
    for _ in range(n):
        loss, grads = loss_and_grads(model, ids, targets)
        losses.append(loss)
        if clip > 0:
            mt.clip_grad_norm(grads, clip)
        mt.adamw_step(model.params, grads, state, lr, beta1=0.9, beta2=0.95, eps=1e-8, wd=wd)
    with open(out, "w") as f:
        json.dump(losses, f)
        f.write("\n")
    print("losses %s -> %s" % (" ".join("%.6f" % v for v in losses), out))


def main():
    # test models are tiny: extra intra-op threads only spin-wait (and slow
    # everything down badly when the test runner is busy)
    torch.set_num_threads(int(os.environ.get("MOLT_TORCH_THREADS", "1")))
    a = sys.argv[1:]
    if len(a) == 4 and a[0] == "grads":
        cmd_grads(a[1], a[2], a[3])
    elif len(a) == 8 and a[0] == "steps":
        cmd_steps(a[1], a[2], int(a[3]), float(a[4]), float(a[5]), float(a[6]), a[7])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
