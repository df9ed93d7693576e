"""check.py — every model directory molt writes loads in HF transformers and
gives molt's logits. For each DIR: AutoConfig / AutoModelForCausalLM load it
(with transformers' own validation of config.json), run the same token ids in
fp32 and compare with molt's logits (DIR.f32 from dump_logits). Prints one line
per directory; exit 1 on any failure.
usage: python3 check.py IDS_CSV DIR...   (DIR.f32 beside each DIR)
"""
import json, sys
import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

ids = [int(x) for x in sys.argv[1].split(",")]
bad = 0
print(f"transformers {transformers.__version__}, torch {torch.__version__}")
for d in sys.argv[2:]:
    try:
        cfg = AutoConfig.from_pretrained(d)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        with torch.no_grad():
            hf = model(torch.tensor([ids])).logits[0].float().numpy()
        mo = np.fromfile(d + ".f32", dtype=np.float32).reshape(len(ids), -1)
        err = float(np.abs(hf - mo).max())
        tol = 1e-4 * max(1.0, float(np.abs(hf).max()))
        dt = json.load(open(d + "/config.json")).get("torch_dtype")
        ok = err <= tol and hf.shape == mo.shape
        print(f"{'ok  ' if ok else 'FAIL'} {d}: {type(model).__name__}, torch_dtype {dt}, "
              f"max |hf - molt| {err:.2e} (tol {tol:.1e})")
        bad += not ok
    except Exception as e:  # a config or weights transformers refuses
        print(f"FAIL {d}: {type(e).__name__}: {str(e)[:300]}")
        bad += 1
sys.exit(1 if bad else 0)
