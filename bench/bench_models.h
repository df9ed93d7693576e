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

#endif
