/* testmodel.c — see testmodel.h. */
#include "testmodel.h"

#include "io/safetensors.h"
#include "models/model.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

float *tm_logits(molt_ctx *ctx, const molt_model *m, const int32_t *ids, int n, bool stepwise) {
    molt_model_info in;
    molt_model_get_info(m, &in);
    molt_seq *s;
    if (molt_seq_new(ctx, m, n, &s) != MOLT_OK)
        return NULL;
    int V = in.vocab;
    float *lg = malloc(sizeof(float) * (size_t)n * V);
    molt_status st = MOLT_OK;
    if (stepwise)
        for (int i = 0; i < n && st == MOLT_OK; i++)
            st = molt_seq_feed(ctx, s, ids + i, 1, 1, lg + (size_t)i * V);
    else
        st = molt_seq_feed(ctx, s, ids, n, 1, lg);
    molt_seq_free(s);
    if (st != MOLT_OK) {
        free(lg);
        return NULL;
    }
    return lg;
}

int tm_check_reference(molt_ctx *ctx, const molt_model *m, const char *ref_path, double tol,
                       const char *label) {
    st_file *rf = NULL;
    if (st_open(ctx, ref_path, &rf) != MOLT_OK) {
        CHECK(0, "reference %s: %s", ref_path, molt_last_error(ctx));
        return 0;
    }
    molt_model_info in;
    molt_model_get_info(m, &in);
    int V = in.vocab, p = 0;
    for (;; p++) {
        char name[64];
        snprintf(name, sizeof name, "ids_%d", p);
        const st_tensor *ti = st_find(rf, name);
        snprintf(name, sizeof name, "logits_%d", p);
        const st_tensor *tl = st_find(rf, name);
        if (!ti || !tl)
            break;
        int n = (int)ti->numel;
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
        float *want = malloc(sizeof(float) * (size_t)n * V);
        CHECK(tl->numel == (int64_t)n * V, "%s: reference %d has %lld logits, want %d x %d",
              label, p, (long long)tl->numel, n, V);
        CHECK(st_read_i32(ctx, ti, ids) == MOLT_OK && st_read_f32(ctx, tl, want) == MOLT_OK,
              "read reference %d", p);
        for (int stepwise = 0; stepwise < 2; stepwise++) {
            float *got = tm_logits(ctx, m, ids, n, stepwise);
            char what[160];
            snprintf(what, sizeof what, "%s prompt %d (%d tokens) %s vs HF", label, p, n,
                     stepwise ? "token-by-token" : "prefill");
            CHECK(got != NULL, "%s: run failed: %s", what, molt_last_error(ctx));
            if (got) {
                t_close(what, got, want, (size_t)n * V, tol, -1);
                printf("%s: max-abs %.2e\n", what, t_max_abs(got, want, (size_t)n * V));
            }
            free(got);
        }
        free(ids);
        free(want);
    }
    st_close(rf);
    CHECK(p > 0, "%s: no prompts in %s", label, ref_path);
    return p;
}

molt_model *tm_load_stories(molt_ctx *ctx, const char *what) {
    char bin[4096], tokp[4096];
    snprintf(bin, sizeof bin, "%s", t_shared("models/stories260K/stories260K.bin"));
    snprintf(tokp, sizeof tokp, "%s", t_shared("models/stories260K/tok512.bin"));
    if (!t_have(bin, what) || !t_have(tokp, what))
        return NULL;
    molt_load_opts o = {tokp, 0};
    molt_model    *m = NULL;
    CHECK(molt_model_load(ctx, bin, &o, &m) == MOLT_OK, "load: %s", molt_last_error(ctx));
    return m;
}

void tm_rmdir(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "rm -rf %s", dir);
}

molt_model *tm_random_model(molt_ctx *ctx, const char *json, uint64_t seed, float noise) {
    model_cfg   c;
    molt_model *m = NULL;
    if (model_cfg_from_json(ctx, "test", json, strlen(json), &c) != MOLT_OK) {
        CHECK(0, "config: %s", molt_last_error(ctx));
        return NULL;
    }
    CHECK(model_alloc(ctx, &c, &m) == MOLT_OK, "alloc: %s", molt_last_error(ctx));
    model_free_cfg(&c);
    if (m) {
        model_init_random(m, seed);
        t_seed(seed);
        for (size_t i = 0; i < m->n_floats; i++)
            m->data[i] += t_normal() * noise;
    }
    return m;
}

const char *const tm_arch_cfgs[TM_N_ARCH_CFGS][2] = {
    {"llama",
     "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
     " \"num_attention_heads\": 8, \"num_key_value_heads\": 4, \"intermediate_size\": 96,"
     " \"vocab_size\": 97, \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5}"},
    {"llama_odd", // gate / up not adjacent in the f32 buffer (F·d breaks 16-float alignment)
     "{\"model_type\": \"llama\", \"hidden_size\": 40, \"num_hidden_layers\": 2,"
     " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 61,"
     " \"vocab_size\": 97, \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5,"
     " \"attention_bias\": true, \"tie_word_embeddings\": true}"},
    {"llamba",
     "{\"model_type\": \"llamba\", \"vocab_size\": 97, \"d_model\": 64, \"n_layer\": 2,"
     " \"norm_epsilon\": 1e-5, \"mlp_cfg\": {\"intermediate_size\": 96},"
     " \"ssm_cfg\": {\"d_state\": 16, \"n_v_heads\": 8, \"n_qk_heads\": 4, \"expand\": 1,"
     " \"chunk_size\": 8, \"d_conv\": 4}}"},
    {"mamba2",
     "{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
     " \"vocab_size\": 97, \"layer_norm_epsilon\": 1e-5, \"num_heads\": 8, \"head_dim\": 16,"
     " \"state_size\": 16, \"expand\": 2, \"n_groups\": 2, \"conv_kernel\": 4, \"chunk_size\": 8,"
     " \"use_bias\": false, \"use_conv_bias\": true}"},
    {"hybrid",
     "{\"model_type\": \"molt_hybrid\", \"vocab_size\": 97, \"d_model\": 64, \"n_layer\": 3,"
     " \"norm_epsilon\": 1e-5, \"mlp_cfg\": {\"intermediate_size\": 96}, \"ssm_cfg\":"
     " {\"d_state\": 16, \"n_v_heads\": 8, \"n_qk_heads\": 4, \"chunk_size\": 8},"
     " \"attn_cfg\": {\"num_attention_heads\": 8, \"num_key_value_heads\": 4, \"head_dim\": 8},"
     " \"layers\": [{\"mixer\": \"attention\"}, {\"mixer\": \"hybrid\", \"attention_heads\":"
     " [1, 3]}, {\"mixer\": \"ssm\"}]}"},
};

void tm_same_params(const char *what, const molt_model *a, const molt_model *b) {
    CHECK(a->n_params == b->n_params, "%s: %d vs %d parameters", what, a->n_params, b->n_params);
    for (int i = 0; i < a->n_params && i < b->n_params; i++) {
        const param_info *p = &a->params[i], *q = &b->params[i];
        CHECK(!strcmp(p->name, q->name) && p->numel == q->numel, "%s: parameter %d: %s vs %s",
              what, i, p->name, q->name);
        if (p->numel == q->numel)
            CHECK(!memcmp(a->data + p->offset, b->data + q->offset, 4 * p->numel),
                  "%s: %s differs", what, p->name);
    }
}
