#!/usr/bin/env python3
"""make_tiny_models.py — small random test models for every architecture molt
trains, deterministic from a seed, written as config.json + model.safetensors
(float32) in the layouts of ALGORITHMS.md §5 / molt's loaders:

    make_tiny_models.py OUTDIR [--seed S]
      → OUTDIR/llama/   Llama: d 32, 2 layers, 4 heads / 2 kv heads × 8, MLP 64,
                        vocab 64, untied, llama3 RoPE scaling (all three
                        frequency bands used: θ 10000, factor 8, low 1, high 4,
                        original_max_position_embeddings 64)
        OUTDIR/llamba/  Llamba: d 32, 2 layers, 4 value heads, 2 B/C heads
                        (n_qk_heads < n_v_heads), d_state 8, MLP 64, tied
        OUTDIR/mamba2/  HF Mamba-2: d 32, expand 2, 4 heads × 16, 2 groups,
                        state 8, 2 layers, untied, time_step_limit [0, inf]
        OUTDIR/hybrid/  molt_hybrid: d 32, layers [attention, hybrid heads
                        [1,3], ssm], attention 4 heads / 2 kv × 8, SSM 4 heads
                        (qk = v), d_state 8, ssm bias on, tied

Weights are scaled so activations stay O(1): linear rows ~ N(0, 1/fan_in),
output projections shrunk by 1/sqrt(2·n_layer), convs near identity (last tap
1) plus noise, D ≈ 1, DiscreteMamba2 A_log rows small (decays in ≈ (0.3, 0.99),
spread per head by the in_proj bias where there is one), Mamba-2 dt_bias /
A_log drawn as in §1.1 (Δ ∈ [0.001, 0.1] log-uniform, A ∈ U(1, 16)).
"""
import json
import math
import os
import sys
from collections import OrderedDict

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import molt_torch as mt  # noqa: E402

D_MODEL, VOCAB, MLP, HEADS, KV_HEADS, HEAD_DIM, D_STATE = 32, 64, 64, 4, 2, 8, 8


class Init:
    """Deterministic random tensors (torch.Generator, float64)."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def randn(self, *shape):
        return torch.randn(*shape, generator=self.g, dtype=torch.float64)

    def rand(self, *shape):
        return torch.rand(*shape, generator=self.g, dtype=torch.float64)

    def lin(self, out, inp, gain=1.0):
        return self.randn(out, inp) * (gain / math.sqrt(inp))

    def norm_w(self, n):
        return 1.0 + 0.1 * self.randn(n)

    def conv(self, C, K):
        w = 0.1 * self.randn(C, 1, K)
        w[:, 0, K - 1] += 1.0  # near identity: the current token
        return w


def attn_weights(I, T, pre, d, H, KV, hd, n_layer):
    T[pre + ".q_proj.weight"] = I.lin(H * hd, d)
    T[pre + ".k_proj.weight"] = I.lin(KV * hd, d)
    T[pre + ".v_proj.weight"] = I.lin(KV * hd, d)
    T[pre + ".o_proj.weight"] = I.lin(d, H * hd, 1 / math.sqrt(2 * n_layer))


def mlp_weights(I, T, pre, d, F, n_layer):
    T[pre + ".gate_proj.weight"] = I.lin(F, d)
    T[pre + ".up_proj.weight"] = I.lin(F, d)
    T[pre + ".down_proj.weight"] = I.lin(d, F, 1 / math.sqrt(2 * n_layer))


def discrete_weights(I, T, pre, d, H, G, N, bias, n_layer):
    """DiscreteMamba2 (expand 1): in_proj rows [x, B, C, z, A_log]."""
    Di = d
    Cc = Di + 2 * G * N
    # B, C rows scaled by N^-1/4 each so that C_t·B_s = O(1); A_log rows small
    W = torch.cat([I.lin(Di, d), I.lin(2 * G * N, d, N ** -0.25), I.lin(Di, d),
                   I.lin(H, d, 0.3)])
    T[pre + ".in_proj.weight"] = W
    if bias:
        b = 0.02 * I.randn(W.shape[0])
        # A_log_t ≈ bias ∈ [−4, 0.5] per head → decay exp(−softplus) ∈ (≈0.35, ≈0.98)
        b[-H:] = torch.linspace(-4.0, 0.5, H) + 0.1 * I.randn(H)
        T[pre + ".in_proj.bias"] = b
    T[pre + ".conv1d.weight"] = I.conv(Cc, 4)
    T[pre + ".conv1d.bias"] = 0.05 * I.randn(Cc)
    T[pre + ".z_bias"] = 1.278464542761 + 0.1 * I.randn(Di)
    T[pre + ".D"] = 1.0 + 0.1 * I.randn(H)
    T[pre + ".out_proj.weight"] = I.lin(d, Di, 1 / math.sqrt(2 * n_layer))
    if bias:
        T[pre + ".out_proj.bias"] = 0.02 * I.randn(d)


def mamba2_weights(I, T, pre, d, Di, H, G, N, n_layer):
    """HF Mamba-2: in_proj rows [z, x, B, C, dt]; §1.1 initialisation of
    dt_bias (inverse softplus of Δ ∈ [1e-3, 1e-1] log-uniform) and A_log."""
    Cc = Di + 2 * G * N
    T[pre + ".in_proj.weight"] = torch.cat([I.lin(Di, d), I.lin(Di, d), I.lin(2 * G * N, d),
                                            I.lin(H, d, 0.3)])
    T[pre + ".conv1d.weight"] = I.conv(Cc, 4)
    T[pre + ".conv1d.bias"] = 0.05 * I.randn(Cc)
    dt = torch.exp(I.rand(H) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
    dt = dt.clamp(min=1e-4)
    T[pre + ".dt_bias"] = dt + torch.log(-torch.expm1(-dt))
    T[pre + ".A_log"] = torch.log(1.0 + 15.0 * I.rand(H))
    T[pre + ".D"] = 1.0 + 0.1 * I.randn(H)
    T[pre + ".norm.weight"] = I.norm_w(Di)
    T[pre + ".out_proj.weight"] = I.lin(d, Di, 1 / math.sqrt(2 * n_layer))


def make_llama(I, D_MODEL=D_MODEL, MLP=MLP):
    n_layer = 2
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": D_MODEL,
        "num_hidden_layers": n_layer, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM, "intermediate_size": MLP,
        "vocab_size": VOCAB, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
        "hidden_act": "silu", "rope_theta": 10000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "float32",
    }
    T = OrderedDict()
    T["model.embed_tokens.weight"] = I.randn(VOCAB, D_MODEL)
    for l in range(n_layer):
        L = "model.layers.%d" % l
        T[L + ".input_layernorm.weight"] = I.norm_w(D_MODEL)
        attn_weights(I, T, L + ".self_attn", D_MODEL, HEADS, KV_HEADS, HEAD_DIM, n_layer)
        T[L + ".post_attention_layernorm.weight"] = I.norm_w(D_MODEL)
        mlp_weights(I, T, L + ".mlp", D_MODEL, MLP, n_layer)
    T["model.norm.weight"] = I.norm_w(D_MODEL)
    T["lm_head.weight"] = I.lin(VOCAB, D_MODEL, 2.0)
    return cfg, T


def llamba_cfg(n_layer, H, G, bias, tie):
    return {
        "model_type": "llamba", "vocab_size": VOCAB, "tie_embeddings": tie,
        "pad_vocab_size_multiple": 1, "lm_head_bias": False, "d_model": D_MODEL,
        "n_layer": n_layer, "norm_epsilon": 1e-5,
        "mlp_cfg": {"intermediate_size": MLP, "bias": False, "act_fn": "silu"},
        "ssm_cfg": {"d_state": D_STATE, "n_v_heads": H, "n_qk_heads": G, "expand": 1,
                    "chunk_size": 8, "activation": "identity", "bias": bias,
                    "conv_bias": True, "d_conv": 4},
        "bos_token_id": 0, "eos_token_id": 1,
    }


def make_llamba(I):
    n_layer, H, G = 2, 4, 2
    cfg = llamba_cfg(n_layer, H, G, False, True)
    T = OrderedDict()
    T["backbone.embedding.weight"] = 0.5 * I.randn(VOCAB, D_MODEL)
    for l in range(n_layer):
        L = "backbone.layers.%d" % l
        T[L + ".input_layernorm.weight"] = I.norm_w(D_MODEL)
        discrete_weights(I, T, L + ".mixer", D_MODEL, H, G, D_STATE, False, n_layer)
        T[L + ".post_attention_layernorm.weight"] = I.norm_w(D_MODEL)
        mlp_weights(I, T, L + ".mlp", D_MODEL, MLP, n_layer)
    T["backbone.final_layernorm.weight"] = I.norm_w(D_MODEL)
    return cfg, T


def make_mamba2(I):
    n_layer, expand, P, G = 2, 2, 16, 2
    Di = expand * D_MODEL
    H = Di // P
    cfg = {
        "architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2",
        "hidden_size": D_MODEL, "num_hidden_layers": n_layer, "vocab_size": VOCAB,
        "layer_norm_epsilon": 1e-5, "tie_word_embeddings": False, "num_heads": H,
        "head_dim": P, "state_size": D_STATE, "expand": expand, "n_groups": G,
        "conv_kernel": 4, "chunk_size": 8, "use_bias": False, "use_conv_bias": True,
        "rms_norm": True, "hidden_act": "silu", "time_step_rank": 8,
        "time_step_min": 0.001, "time_step_max": 0.1, "time_step_floor": 1e-4,
        "time_step_limit": [0.0, {"__float__": "Infinity"}], "residual_in_fp32": True,
        "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1,
    }
    T = OrderedDict()
    T["backbone.embeddings.weight"] = I.randn(VOCAB, D_MODEL)
    for l in range(n_layer):
        L = "backbone.layers.%d" % l
        T[L + ".norm.weight"] = I.norm_w(D_MODEL)
        mamba2_weights(I, T, L + ".mixer", D_MODEL, Di, H, G, D_STATE, n_layer)
    T["backbone.norm_f.weight"] = I.norm_w(D_MODEL)
    T["lm_head.weight"] = I.lin(VOCAB, D_MODEL, 2.0)
    return cfg, T


def make_hybrid(I):
    plan = [{"mixer": "attention"}, {"mixer": "hybrid", "attention_heads": [1, 3]},
            {"mixer": "ssm"}]
    n_layer, H = len(plan), HEADS
    cfg = llamba_cfg(n_layer, H, H, True, True)
    cfg["model_type"] = "molt_hybrid"
    cfg["attn_cfg"] = {"num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
                       "head_dim": HEAD_DIM, "rope_theta": 10000.0,
                       "max_position_embeddings": 128}
    cfg["layers"] = plan
    T = OrderedDict()
    T["backbone.embedding.weight"] = 0.5 * I.randn(VOCAB, D_MODEL)
    for l, spec in enumerate(plan):
        L = "backbone.layers.%d" % l
        T[L + ".input_layernorm.weight"] = I.norm_w(D_MODEL)
        if spec["mixer"] == "attention":
            attn_weights(I, T, L + ".self_attn", D_MODEL, HEADS, KV_HEADS, HEAD_DIM, n_layer)
        else:
            discrete_weights(I, T, L + ".mixer", D_MODEL, H, H, D_STATE, True, n_layer)
        if spec["mixer"] == "hybrid":
            k = len(spec["attention_heads"])
            attn_weights(I, T, L + ".attn", D_MODEL, k, k, HEAD_DIM, n_layer)
            T[L + ".adapter.weight"] = torch.eye(D_MODEL) + I.lin(D_MODEL, D_MODEL, 0.3)
            T[L + ".adapter.bias"] = 0.02 * I.randn(D_MODEL)
        T[L + ".post_attention_layernorm.weight"] = I.norm_w(D_MODEL)
        mlp_weights(I, T, L + ".mlp", D_MODEL, MLP, n_layer)
    T["backbone.final_layernorm.weight"] = I.norm_w(D_MODEL)
    return cfg, T


def make_llama_odd(I):
    """A Llama whose widths are not multiples of 16 floats (d 36, MLP 70): its
    gate_proj and up_proj are not adjacent in molt's parameter buffer, so
    training takes the unfused MLP-input path."""
    return make_llama(I, 36, 70)


MAKERS = OrderedDict([("llama", make_llama), ("llamba", make_llamba), ("mamba2", make_mamba2),
                      ("hybrid", make_hybrid), ("llama_odd", make_llama_odd)])


def write_model(out_dir, cfg, tensors):
    """config.json + model.safetensors (float32); checks the tensor table
    against molt_torch's expected layout so a maker bug cannot slip through."""
    exp = mt.expected_shapes(mt.parse_config(cfg))
    got = {(k, tuple(v.shape)) for k, v in tensors.items()}
    want = {(k, tuple(v)) for k, v in exp.items()}
    if got != want:
        raise AssertionError("tensor table mismatch: %s" % sorted(got ^ want)[:4])
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    mt.write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors, dtype="F32")


def main():
    args = sys.argv[1:]
    seed = 1234
    if "--seed" in args:
        i = args.index("--seed")
        seed = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 1:
        sys.exit("usage: make_tiny_models.py OUTDIR [--seed S]")
    for k, (name, make) in enumerate(MAKERS.items()):
        cfg, T = make(Init(seed + 1000 * k))
        write_model(os.path.join(args[0], name), cfg, T)
    print("wrote %s/{%s}" % (args[0], ",".join(MAKERS)))


if __name__ == "__main__":
    main()
