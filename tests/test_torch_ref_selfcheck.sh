#!/usr/bin/env bash
# test_torch_ref_selfcheck.sh — self-test of the PyTorch training oracle
# (tests/ref/molt_torch.py, train_ref.py, make_tiny_models.py) before molt's
# training parity tests trust it:
#   1. tiny llama / llamba / mamba2 / hybrid models from make_tiny_models.py load;
#   2. autograd gradients = central finite differences (float64, directional
#      derivatives along random directions and the largest single entry,
#      relative error < 1e-6) for CE, and for the three MOHAWK losses
#      (stage 1 frob, stage 2 l2_rows, stage 3 soft_ce) with a llama teacher;
#   3. each SSM mixer's materialized matrix reproduces its sequential
#      recurrence (y = M·x before gating) and the scan/parallel modes give the
#      same loss and gradients;
#   4. hybrid layers reduce correctly: kept-head attention transferred from a
#      GQA teacher layer = the teacher's attention with the other heads'
#      o_proj columns zeroed (all heads kept: the teacher's attention exactly),
#      and the combiner with s = a and an identity adapter returns a;
#   5. adamw_step / clip_grad_norm = torch.optim.AdamW / clip_grad_norm_;
#   6. safetensors round trip; train_ref.py grads / steps CLI;
#   7. when shared/models is present: logits = the HF reference logits.
# Exit 0 when all pass, 1 on any failure, 77 (skip) without python3+torch.
set -u
PY=${MOLT_PYTHON:-/usr/bin/python3}
SHARED=${MOLT_SHARED:-$(cd .. && pwd)/shared}
REF=$(cd "$(dirname "$0")" && pwd)/ref
"$PY" -c 'import torch, numpy' 2>/dev/null || { echo "skip: $PY lacks torch/numpy"; exit 77; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PYTHONDONTWRITEBYTECODE=1 "$PY" "$REF/make_tiny_models.py" "$TMP/models" >/dev/null || { echo "FAIL: make_tiny_models.py"; exit 1; }
PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS=1 exec "$PY" - "$REF" "$TMP" "$SHARED" <<'EOF'
import copy, json, math, os, subprocess, sys, time
import torch
ref, tmp, shared = sys.argv[1:4]
torch.set_num_threads(1)  # tiny tensors: threads only add spin-waiting
sys.path.insert(0, ref)
import molt_torch as mt

t_start = time.time()
torch.manual_seed(0)
fails, passes = [], 0


def check(name, ok, detail=""):
    global passes
    if ok:
        passes += 1
    else:
        fails.append(name)
    print("%-4s %-58s %s [%.1fs]" % ("ok" if ok else "FAIL", name, detail, time.time() - t_start))


models = {a: mt.load_model(os.path.join(tmp, "models", a)) for a in
          ("llama", "llamba", "mamba2", "hybrid")}
B, T, V = 2, 7, 64
ids = torch.randint(0, V, (B, T))
targets = torch.randint(0, V, (B, T))
targets[0, 2] = -1  # not counted


def fd_check(label, model, loss_fn, names, tol=1e-6, h=1e-5):
    """Autograd vs central differences along a random unit direction of each
    named parameter, and at its largest-gradient entry."""
    model.zero_grad()
    loss_fn().backward()
    worst = 0.0
    with torch.no_grad():
        for n in names:
            p = model.params[n]
            g = p.grad.clone()
            v = torch.randn_like(p)
            v /= v.norm()
            j = int(g.abs().argmax())
            e = torch.zeros_like(p).view(-1)
            e[j] = 1.0
            for d in (v, e.view_as(p)):
                p += h * d
                lp = float(loss_fn())
                p -= 2 * h * d
                lm = float(loss_fn())
                p += h * d
                fd, ad = (lp - lm) / (2 * h), float((g * d).sum())
                rel = abs(fd - ad) / max(abs(ad), 1e-12)
                worst = max(worst, rel)
                if rel >= tol:
                    print("     %s: fd %.12e ad %.12e rel %.2e" % (n, fd, ad, rel))
    check("grad = finite differences: " + label, worst < tol,
          "(%d tensors, max rel err %.1e)" % (len(names), worst))


# ---- 2. gradients of the CE loss, every architecture
pick = {
    "llama": ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
              "model.layers.0.self_attn.k_proj.weight", "model.layers.1.self_attn.v_proj.weight",
              "model.layers.0.input_layernorm.weight", "model.layers.1.mlp.down_proj.weight",
              "model.norm.weight", "lm_head.weight"],
    "llamba": ["backbone.embedding.weight", "backbone.layers.0.mixer.in_proj.weight",
               "backbone.layers.0.mixer.conv1d.weight", "backbone.layers.0.mixer.conv1d.bias",
               "backbone.layers.1.mixer.z_bias", "backbone.layers.1.mixer.D",
               "backbone.layers.0.mixer.out_proj.weight", "backbone.layers.0.mlp.gate_proj.weight",
               "backbone.final_layernorm.weight"],
    "mamba2": ["backbone.embeddings.weight", "backbone.layers.0.mixer.in_proj.weight",
               "backbone.layers.0.mixer.conv1d.weight", "backbone.layers.0.mixer.dt_bias",
               "backbone.layers.1.mixer.A_log", "backbone.layers.0.mixer.D",
               "backbone.layers.1.mixer.norm.weight", "backbone.layers.0.norm.weight",
               "lm_head.weight"],
    "hybrid": ["backbone.embedding.weight", "backbone.layers.0.self_attn.k_proj.weight",
               "backbone.layers.1.attn.q_proj.weight", "backbone.layers.1.attn.v_proj.weight",
               "backbone.layers.1.attn.o_proj.weight", "backbone.layers.1.adapter.weight",
               "backbone.layers.1.adapter.bias", "backbone.layers.1.mixer.in_proj.weight",
               "backbone.layers.1.mixer.in_proj.bias", "backbone.layers.2.mixer.out_proj.bias",
               "backbone.layers.2.mixer.D"],
}
for a, m in models.items():
    fd_check("ce, " + a, m, lambda m=m: mt.ce(mt.forward(m, ids), targets), pick[a])

# ---- MOHAWK losses, llama teacher -> llamba student (4 heads each)
teacher, student = models["llama"], models["llamba"]
with torch.no_grad():
    th = mt.Hooks()
    t_logits = mt.forward(teacher, ids, th)


def stage1():
    S = {l: None for l in range(student.cfg.n_layer)}
    for l in S:
        h = mt.Hooks(hidden=False, attn=False, mixer=True)
        mt.mixer_forward(student, l, th.hidden[l], h)
        S[l] = h.mixer[l]
    return mt.frob(S, {l: th.attn[l] for l in S})


def stage2():
    return sum(mt.l2_rows(mt.block_forward(student, l, th.hidden[l]), th.hidden[l + 1])
               for l in range(student.cfg.n_layer))


def stage3():
    return mt.soft_ce(mt.forward(student, ids), t_logits, tau=2.0)


fd_check("stage 1 frob (mixer matrix vs attention)", student, stage1,
         ["backbone.layers.0.mixer.in_proj.weight", "backbone.layers.1.mixer.conv1d.weight",
          "backbone.layers.1.mixer.D", "backbone.layers.0.input_layernorm.weight"])
fd_check("stage 2 l2_rows (block outputs)", student, stage2,
         ["backbone.layers.0.mixer.in_proj.weight", "backbone.layers.1.mlp.up_proj.weight",
          "backbone.layers.1.post_attention_layernorm.weight"])
fd_check("stage 3 soft_ce (tau 2)", student, stage3,
         ["backbone.embedding.weight", "backbone.layers.1.mixer.in_proj.weight"])

# loss definitions on hand-made values
x = torch.randn(3, 5, 11, dtype=torch.float64)
y = torch.randn(3, 5, 11, dtype=torch.float64)
tg = torch.randint(0, 11, (3, 5))
ok = abs(float(mt.ce(x, tg)) - float(torch.nn.functional.cross_entropy(x.view(-1, 11), tg.view(-1)))) < 1e-12
tg2 = tg.clone(); tg2[1, 1] = -1
keep = tg2.view(-1) >= 0
ok &= abs(float(mt.ce(x, tg2)) - float(torch.nn.functional.cross_entropy(x.view(-1, 11)[keep], tg.view(-1)[keep]))) < 1e-12
sc = sum(float(torch.nn.functional.cross_entropy(x.view(-1, 11)[i:i + 1] / 1.5,
         torch.softmax(y.view(-1, 11)[i:i + 1] / 1.5, -1))) for i in range(15)) / 15
ok &= abs(float(mt.soft_ce(x, y, 1.5)) - sc) < 1e-12
A, S = torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.randn(2, 3, 6, 6, dtype=torch.float64)
ok &= abs(float(mt.frob([S, S], [A, A])) - 2 * float(torch.linalg.matrix_norm(S - A, ord="fro").mean())) < 1e-12
ok &= abs(float(mt.l2_rows(x, y)) - float(torch.norm(x - y, p=2, dim=-1).mean())) < 1e-12
check("ce / soft_ce / frob / l2_rows match torch definitions", ok)

# ---- 3. parallel (materialized) form = sequential recurrence
for a in ("llamba", "mamba2", "hybrid"):
    m = models[a]
    worst, scale = 0.0, 0.0
    with torch.no_grad():
        hs = mt.Hooks(attn=False, mixer=False)
        mt.forward(m, ids, hs)
        for l in range(m.cfg.n_layer):
            if m.cfg.kinds[l] == "attention":
                continue
            L = m.layer_prefix(l)
            nrm = L + (".norm.weight" if m.cfg.arch == "mamba2" else ".input_layernorm.weight")
            u = mt.rmsnorm(hs.hidden[l], m.p(nrm), m.cfg.eps)
            _, aux = mt.ssm_mixer(m, L + ".mixer", u, want_matrix=True, mode="scan")
            y_par = torch.einsum("bhts,bshp->bthp", aux["M"], aux["x"])
            worst = max(worst, float((y_par - aux["y_pre"]).abs().max()))
            scale = max(scale, float(aux["y_pre"].abs().max()))
    check("M·x = sequential recurrence: " + a, worst < 1e-10 * max(scale, 1.0),
          "(max |diff| %.1e, |y| %.1f)" % (worst, scale))
    res = {}
    for mode in ("scan", "parallel"):
        m.ssm_mode = mode
        m.zero_grad()
        loss = mt.ce(mt.forward(m, ids), targets)
        loss.backward()
        res[mode] = (loss.item(), {n: p.grad.clone() for n, p in m.params.items()})
    m.ssm_mode = "scan"
    gd = max(float((res["scan"][1][n] - res["parallel"][1][n]).abs().max()) for n in m.params)
    check("scan and parallel modes: same loss and gradients: " + a,
          abs(res["scan"][0] - res["parallel"][0]) < 1e-12 and gd < 1e-11, "(grad diff %.1e)" % gd)

# ---- 4. hybrid layers reduce correctly
hy = models["hybrid"]
u = torch.randn(B, T, hy.cfg.d, dtype=torch.float64)
with torch.no_grad():
    rep = hy.cfg.H // hy.cfg.KV
    hd = hy.cfg.hd
    for keep in ([1, 3], [0, 1, 2, 3]):
        m2 = mt.Model(hy.cfg, dict(hy.params))
        src, dst = "backbone.layers.0.self_attn", "backbone.layers.9.attn"
        Wq, Wk, Wv, Wo = (hy.p(src + ".%s_proj.weight" % n) for n in "qkvo")
        rows = lambda W, hs: torch.cat([W[h * hd:(h + 1) * hd] for h in hs])
        m2.params[dst + ".q_proj.weight"] = rows(Wq, keep)
        m2.params[dst + ".k_proj.weight"] = rows(Wk, [h // rep for h in keep])
        m2.params[dst + ".v_proj.weight"] = rows(Wv, [h // rep for h in keep])
        m2.params[dst + ".o_proj.weight"] = torch.cat([Wo[:, h * hd:(h + 1) * hd] for h in keep], 1)
        a_kept, p_kept = mt.attention(m2, dst, u, len(keep), len(keep))
        Wo_abl = Wo.clone()
        for h in range(hy.cfg.H):
            if h not in keep:
                Wo_abl[:, h * hd:(h + 1) * hd] = 0.0  # G&A head ablation
        m2.params[src + ".o_proj.weight"] = Wo_abl
        a_full, p_full = mt.attention(m2, src, u, hy.cfg.H, hy.cfg.KV)
        d1 = float((a_kept - a_full).abs().max())
        d2 = float((p_kept - p_full[:, keep]).abs().max())
        check("hybrid kept heads %s = teacher attention, other heads ablated" % keep,
              d1 < 1e-12 and d2 < 1e-14, "(out %.1e, probs %.1e)" % (d1, d2))
        if len(keep) == hy.cfg.H:
            m2.params[src + ".o_proj.weight"] = Wo
            a_t, _ = mt.attention(m2, src, u, hy.cfg.H, hy.cfg.KV)
            d3 = float((a_kept - a_t).abs().max())
            check("hybrid with all heads kept = the teacher's attention layer", d3 < 1e-12,
                  "(%.1e)" % d3)
    a = torch.randn(B, T, hy.cfg.d, dtype=torch.float64) * 3 + 1
    eye, zero = torch.eye(hy.cfg.d, dtype=torch.float64), torch.zeros(hy.cfg.d, dtype=torch.float64)
    d4 = float((mt.hybrid_combine(a, a, eye, zero) - a).abs().max())
    s = torch.randn(B, T, hy.cfg.d, dtype=torch.float64)
    c = mt.hybrid_combine(s, a, eye, zero) * 2 - s  # = a'
    d5 = float((c.mean(-1) - s.mean(-1)).abs().max() + (c.std(-1) - s.std(-1)).abs().max())
    check("combiner: s = a, identity adapter -> a; a' has s's mean/std", d4 < 1e-12 and d5 < 1e-4,
          "(%.1e, %.1e)" % (d4, d5))
    # the whole hybrid mixer = 0.5·(s + adapter(a')) from its parts
    L = "backbone.layers.1"
    uu = mt.rmsnorm(u, hy.p(L + ".input_layernorm.weight"), hy.cfg.eps)
    s1, _ = mt.ssm_mixer(hy, L + ".mixer", uu)
    a1, _ = mt.attention(hy, L + ".attn", uu, 2, 2)
    a1 = (a1 - a1.mean(-1, keepdim=True)) / (a1.std(-1, keepdim=True) + 1e-5) * \
         (s1.std(-1, keepdim=True) + 1e-5) + s1.mean(-1, keepdim=True)
    want = 0.5 * (s1 + a1 @ hy.p(L + ".adapter.weight").T + hy.p(L + ".adapter.bias"))
    d6 = float((mt.mixer_forward(hy, 1, u) - want).abs().max())
    check("hybrid mixer_forward = 0.5·(s + adapter(a'))", d6 < 1e-12, "(%.1e)" % d6)

# ---- 5. optimizer = torch.optim.AdamW + clip_grad_norm_
ps = [torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64)),
      torch.nn.Parameter(torch.randn(7, dtype=torch.float64))]
mine = {"a": ps[0].detach().clone(), "b": ps[1].detach().clone()}
opt = torch.optim.AdamW(ps, lr=3e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
state, worst = {}, 0.0
for it in range(4):
    gs = [torch.randn_like(p) * (10 if it == 1 else 0.1) for p in ps]
    for p, g in zip(ps, gs):
        p.grad = g.clone()
    n_t = float(torch.nn.utils.clip_grad_norm_(ps, 1.0))
    opt.step()
    gm = {"a": gs[0].clone(), "b": gs[1].clone()}
    n_m = mt.clip_grad_norm(gm, 1.0)
    mt.adamw_step(mine, gm, state, 3e-2, 0.9, 0.95, 1e-8, 0.1)
    worst = max(worst, abs(n_t - n_m), float((ps[0] - mine["a"]).abs().max()),
                float((ps[1] - mine["b"]).abs().max()))
check("adamw_step + clip_grad_norm = torch.optim.AdamW + clip_grad_norm_", worst < 1e-12,
      "(4 steps, max diff %.1e)" % worst)

# ---- 6. safetensors round trip and the train_ref.py CLI
t = {"f": torch.randn(3, 4, dtype=torch.float64), "i": torch.arange(6, dtype=torch.int32).view(2, 3)}
p = os.path.join(tmp, "rt.safetensors")
mt.write_safetensors(p, t, dtype="F64")
r = mt.read_safetensors(p)
check("safetensors round trip", torch.equal(r["f"], t["f"]) and torch.equal(r["i"], t["i"]))

bpath = os.path.join(tmp, "batch.bin")
mt.write_batch(bpath, ids.numpy(), targets.numpy())
i2, t2 = mt.read_batch(bpath)
gpath = os.path.join(tmp, "grads.safetensors")
for a in ("llama", "hybrid"):
    mdir = os.path.join(tmp, "models", a)
    subprocess.run([sys.executable, os.path.join(ref, "train_ref.py"), "grads", mdir, bpath, gpath],
                   check=True, stdout=subprocess.DEVNULL)
    g = mt.read_safetensors(gpath)
    m = models[a]
    m.zero_grad()
    loss = mt.ce(mt.forward(m, i2), t2)
    loss.backward()
    ok = set(g) == set(m.params) | {"loss"} and abs(float(g["loss"][0]) - loss.item()) < 1e-6
    ok &= all(torch.allclose(g[n], m.params[n].grad, rtol=1e-6, atol=1e-9) for n in m.params)
    check("train_ref.py grads: %s (%d tensors + loss)" % (a, len(m.params)), ok)
jpath = os.path.join(tmp, "steps.json")
subprocess.run([sys.executable, os.path.join(ref, "train_ref.py"), "steps",
                os.path.join(tmp, "models", "llamba"), bpath, "5", "1e-2", "0.1", "1.0", jpath],
               check=True, stdout=subprocess.DEVNULL)
losses = json.load(open(jpath))
check("train_ref.py steps: 5 AdamW steps lower the loss", len(losses) == 5 and
      all(b < a for a, b in zip(losses, losses[1:])), "(%s)" % " ".join("%.4f" % v for v in losses))

# ---- 7. real checkpoints against the HF reference logits (optional)
for name in ("kv-llama-2m", "mamba2-random"):
    d = os.path.join(shared, "models", name)
    if not os.path.exists(os.path.join(d, "reference_logits.safetensors")):
        print("SKIP part: %s logits vs the HF reference (needs %s)" % (name, d))
        continue
    m = mt.load_model(d)
    refl = mt.read_safetensors(os.path.join(d, "reference_logits.safetensors"))
    worst, i = 0.0, 0
    with torch.no_grad():
        while "ids_%d" % i in refl:
            lg = mt.forward(m, refl["ids_%d" % i].long()[None])[0]
            worst = max(worst, float((lg - refl["logits_%d" % i]).abs().max()))
            i += 1
    check("%s logits = HF reference (%d prompts)" % (name, i), i > 0 and worst < 1e-4,
          "(max |diff| %.1e)" % worst)

print("%d passed, %d failed (%.1f s)" % (passes, len(fails), time.time() - t_start))
sys.exit(1 if fails else 0)
EOF
