/*
 * bench_models.h — the random-weight models the benchmarks share: a Llama and
 * a Llamba of kv-llama-2m's width (d 192, 6 layers, 6 heads of 32, MLP 512,
 * vocab 1024; Llamba d_state 16), and bench_model() to build one from a
 * config (exits on error: benchmarks only). Speed does not depend on values.
 */
#ifndef MOLT_BENCH_MODELS_H
#define MOLT_BENCH_MODELS_H

#include "models/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const BENCH_LLAMA_KV2M =
    "{\"model_type\": \"llama\", \"hidden_size\": 192, \"num_hidden_layers\": "
    "6,"
    " \"num_attention_heads\": 6, \"num_key_value_heads\": 2, \"head_dim\": 32,"
    " \"intermediate_size\": 512, \"vocab_size\": 1024, "
    "\"max_position_embeddings\": 8320,"
    " \"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": true}";
static const char *const BENCH_LLAMBA_KV2M =
    "{\"model_type\": \"llamba\", \"vocab_size\": 1024, \"tie_embeddings\": "
    "true, \"d_model\": 192,"
    " \"n_layer\": 6, \"mlp_cfg\": {\"intermediate_size\": 512}, \"ssm_cfg\": "
    "{\"d_state\": 16,"
    " \"n_v_heads\": 6, \"n_qk_heads\": 6, \"chunk_size\": 64}}";

// The issue-15 decode models: a 110M Llama (d 768, 12 layers, 12 heads of 64,
// FFN 2048, vocab 32000, tied) and a 115M HF Mamba-2 (d 768, 24 layers,
// d_state 128, expand 2, 24 heads of 64, one group, conv 4, vocab 32000, tied).
static const char *const BENCH_LLAMA_110M =
    "{\"model_type\": \"llama\", \"hidden_size\": 768, \"num_hidden_layers\": 12,"
    " \"num_attention_heads\": 12, \"num_key_value_heads\": 12, \"head_dim\": 64,"
    " \"intermediate_size\": 2048, \"vocab_size\": 32000, \"max_position_embeddings\": 8448,"
    " \"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": true}";
static const char *const BENCH_MAMBA2_115M =
    "{\"model_type\": \"mamba2\", \"hidden_size\": 768, \"num_hidden_layers\": 24,"
    " \"state_size\": 128, \"expand\": 2, \"head_dim\": 64, \"num_heads\": 24,"
    " \"n_groups\": 1, \"conv_kernel\": 4, \"chunk_size\": 256, \"use_bias\": false,"
    " \"use_conv_bias\": true, \"vocab_size\": 32000, \"layer_norm_epsilon\": 1e-5,"
    " \"tie_word_embeddings\": true, \"bos_token_id\": 0, \"eos_token_id\": 1}";

// bytes of the matrices decoding reads, in the model's current weight type
static inline double bench_matrix_bytes(molt_ctx *ctx, molt_model *m) {
    if (m->weight_dt != MOLT_F32)
        return (double)m->wbuf_bytes;
    model_typed *t = NULL;
    int n = 0;
    if (model_typed_list(ctx, m, &t, &n) != MOLT_OK) {
        fprintf(stderr, "error: %s\n", molt_last_error(ctx));
        exit(1);
    }
    double b = 0;
    for (int i = 0; i < n; i++)
        b += (double)t[i].n * 4.0;
    molt__free(t);
    return b;
}

static inline molt_model *bench_model(molt_ctx *ctx, const char *json) {
  model_cfg c;
  molt_model *m = NULL;
  if (model_cfg_from_json(ctx, "bench", json, strlen(json), &c) != MOLT_OK ||
      model_alloc(ctx, &c, &m) != MOLT_OK) {
    fprintf(stderr, "error: %s\n", molt_last_error(ctx));
    exit(1);
  }
  model_free_cfg(&c);
  model_init_random(m, 1);
  return m;
}

// The 1B shapes of issue 12 (bench_gpu.c, bench_dist.c): a random-weight Llama-3.2-1B teacher
// (hidden 2048, 16 layers, 32 heads / 8 KV, MLP 8192, vocab 128256, tied) and a Llamba-1B
// student (32 heads × 64, d_state 64, same MLP); BENCH_1B_SMALL: d 512, 4 layers, 8 heads /
// 4 KV, MLP 1024, vocab 32000 for a quick check. bench_1b_cfgs writes both configs.
typedef struct {
    int D, L, H, KV, F, V, NS;
} bench_1b;
static const bench_1b BENCH_1B = {2048, 16, 32, 8, 8192, 128256, 64};
static const bench_1b BENCH_1B_SMALL = {512, 4, 8, 4, 1024, 32000, 64};

static inline void bench_1b_cfgs(const bench_1b *s, char *teacher, size_t nt, char *student,
                                 size_t ns) {
    snprintf(teacher, nt,
             "{\"model_type\": \"llama\", \"hidden_size\": %d, \"num_hidden_layers\": %d,"
             " \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d,"
             " \"intermediate_size\": %d, \"vocab_size\": %d, \"max_position_embeddings\": 8192,"
             " \"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": true, \"rope_theta\": 500000.0}",
             s->D, s->L, s->H, s->KV, s->D / s->H, s->F, s->V);
    snprintf(student, ns,
             "{\"model_type\": \"llamba\", \"vocab_size\": %d, \"tie_embeddings\": true,"
             " \"d_model\": %d, \"n_layer\": %d, \"mlp_cfg\": {\"intermediate_size\": %d},"
             " \"ssm_cfg\": {\"d_state\": %d, \"n_v_heads\": %d, \"n_qk_heads\": %d,"
             " \"expand\": 1, \"chunk_size\": 128}, \"max_position_embeddings\": 8192}",
             s->V, s->D, s->L, s->F, s->NS, s->H, s->H);
}

#endif
