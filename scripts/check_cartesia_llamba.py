#!/usr/bin/env python3
"""check_cartesia_llamba.py DIR REF — loads a Llamba checkpoint directory (e.g. one molt
wrote with `molt convert ... --format llamba`) in cartesia-pytorch's own LlambaLMHeadModel
(strict state_dict: every tensor present, none extra, shapes equal) and compares its logits
for REF's ids_0 with REF's logits_0 (tests/ref/llamba_ref.py writes such a REF beside its
checkpoints; molt matches them, tests/test_llamba_layout.c).

Needs a CUDA GPU with cartesia_pytorch (github.com/cartesia-ai/edge, cartesia-pytorch),
mamba_ssm and causal_conv1d installed: its DiscreteMamba2 calls mamba_ssm's Triton scan.
Exit 0: loaded and max |logit - ref| <= 1e-3 (fp32 on the GPU, TF32 off); 1: a mismatch or a
load error; 77: cartesia_pytorch / CUDA not available. Not run in `make test`.

  /usr/bin/python3 tests/ref/llamba_ref.py make /tmp/lr
  ./molt convert /tmp/lr/a -o /tmp/lr/a-molt --format molt       # molt's own layout
  ./molt convert /tmp/lr/a-molt -o /tmp/lr/a-llamba --format llamba
  python3 scripts/check_cartesia_llamba.py /tmp/lr/a-llamba /tmp/lr/a/ref.safetensors
"""
import json
import os
import sys

try:
    import torch
    from cartesia_pytorch.Llamba.llamba import LlambaLMHeadModel
except Exception as e:  # noqa: BLE001 — any import failure means "cannot run here"
    print("skip: cartesia_pytorch not importable: %s" % e)
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
from molt_torch import read_safetensors  # noqa: E402


def main(d, ref):
    if not torch.cuda.is_available():
        print("skip: no CUDA device")
        return 77
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cfg = json.load(open(os.path.join(d, "config.json")))
    model = LlambaLMHeadModel(cfg, device="cuda", dtype=torch.float32)
    sd = {k: v.float() for k, v in read_safetensors(os.path.join(d, "model.safetensors")).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        print("FAIL: missing %s, unexpected %s" % (missing, unexpected))
        return 1
    r = read_safetensors(ref)
    ids = r["ids_0"].long().cuda()[None]
    with torch.no_grad():
        logits = model(ids).logits[0].double().cpu()
    err = (logits - r["logits_0"]).abs().max().item()
    print("cartesia LlambaLMHeadModel: max |logit - ref| = %.3g" % err)
    return 0 if err <= 1e-3 else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
