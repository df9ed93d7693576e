/*
 * fuzz_heads_ranking.c — the head ranking JSON that molt_heads_plan reads for
 * --keep K / --keep-frac P (written by `molt heads TEACHER --json`), from
 * arbitrary bytes, against a small Llama teacher (3 layers x 4 heads, made
 * once): the plan must come back or fail with a status, never crash, and
 * leak nothing; every head of a plan exists and none is there twice.
 * K runs over 1..13 (13 > the 12 heads) with the input's length.
 * Corpus: fuzz/corpus/heads_ranking/.
 */
#include "fuzz_tmpfile.h"
#include "models/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static molt_model *teacher(void) {
    static const char cfg[] =
        "{\"model_type\": \"llama\", \"vocab_size\": 16, \"hidden_size\": 16, "
        "\"intermediate_size\": 32, \"num_hidden_layers\": 3, \"num_attention_heads\": 4, "
        "\"num_key_value_heads\": 2, \"max_position_embeddings\": 16, "
        "\"rms_norm_eps\": 1e-5}";
    molt_ctx *ctx = molt_ctx_new();
    model_cfg c;
    molt_model *m = NULL;
    if (model_cfg_from_json(ctx, "teacher", cfg, sizeof cfg - 1, &c) != MOLT_OK ||
        model_alloc(ctx, &c, &m) != MOLT_OK) {
        fprintf(stderr, "fuzz_heads_ranking: %s\n", molt_last_error(ctx));
        abort();
    }
    model_free_cfg(&c);
    molt_ctx_free(ctx);
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static molt_model *m;
    if (!m)
        m = teacher();
    char path[256];
    fz_write("heads.json", data, size, path, sizeof path);
    int64_t live = molt__alloc_live();
    molt_ctx *ctx = molt_ctx_new();
    molt_heads_plan_opts o = molt_heads_plan_defaults();
    o.ranking = path;
    if (size % 5 == 4)
        o.keep_frac = 0.5;
    else
        o.keep = 1 + (int32_t)(size % 13);
    int32_t *ls = NULL, *hs = NULL, n = 0;
    if (molt_heads_plan(ctx, m, &o, &ls, &hs, &n) == MOLT_OK) {
        bool seen[3][4] = {{false}};
        for (int i = 0; i < n; i++) {
            if (ls[i] < 0 || ls[i] >= 3 || hs[i] < 0 || hs[i] >= 4 || seen[ls[i]][hs[i]])
                abort();
            seen[ls[i]][hs[i]] = true;
        }
    }
    molt_free(ls);
    molt_free(hs);
    molt_ctx_free(ctx);
    if (molt__alloc_live() != live) {
        fprintf(stderr, "fuzz_heads_ranking: leaked %lld blocks\n",
                (long long)(molt__alloc_live() - live));
        abort();
    }
    return 0;
}
