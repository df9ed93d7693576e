/*
 * test_hybrid.c — Llamba and molt_hybrid models end to end.
 *   - Llamba: prefill (chunk 1, 7, 16, 64) == token by token; save → load bit-exact.
 *   - A hybrid keeping no heads (all layers "ssm") == the pure Llamba model, bit for bit.
 *   - A hybrid keeping all heads of a kv-llama-2m layer: its attention branch
 *     reproduces the teacher layer's attention output (before the combiner).
 *   - Hybrid prefill == token by token; save → load bit-exact; KV bytes only
 *     for kept heads.
 *   - Memory: decoding a pure recurrent model keeps resident memory constant
 *     from 512 to 16384 tokens of context, while attention grows.
 *   - Bad configs fail with a clear error.
 */
#include "mixers/attention.h"
#include "models/forward.h"
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static molt_ctx *ctx;

static const char *LLAMBA_JSON =
    "{\"model_type\": \"llamba\", \"vocab_size\": 96, \"tie_embeddings\": %s, \"d_model\": 64,"
    " \"n_layer\": %d, \"norm_epsilon\": 1e-5, \"mlp_cfg\": {\"intermediate_size\": 128},"
    " \"ssm_cfg\": {\"d_state\": %d, \"n_v_heads\": 8, \"n_qk_heads\": %d, \"expand\": 1,"
    " \"chunk_size\": 16, \"d_conv\": 4}}";

static molt_model *make_model(const char *json, uint64_t seed) {
    return tm_random_model(ctx, json, seed, 0.02f);
}

static void compare_modes(molt_model *m, int *chunks, int nch, const char *label) {
    int32_t ids[300];
    t_seed(11);
    for (int i = 0; i < 300; i++)
        ids[i] = (int32_t)(t_uniform(0, 1) * (float)(m->cfg.vocab - 1));
    static const int lens[] = {1, 7, 17, 64, 65, 300};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int n = lens[li];
        float *ref = tm_logits(ctx, m, ids, n, true);
        for (int c = 0; c < nch; c++) {
            for (int l = 0; l < m->cfg.n_layer; l++)
                layer_ssm_mut(&m->cfg, l)->chunk = chunks[c];
            float *got = tm_logits(ctx, m, ids, n, false);
            char what[128];
            snprintf(what, sizeof what, "%s T=%d chunk %d prefill vs step", label, n, chunks[c]);
            CHECK(got && ref, "%s: run failed", what);
            if (got && ref)
                t_close(what, got, ref, (size_t)n * m->cfg.vocab, -1, 1e-5);
            free(got);
        }
        free(ref);
    }
    for (int l = 0; l < m->cfg.n_layer; l++)
        layer_ssm_mut(&m->cfg, l)->chunk = 16;
}

static void roundtrip(const molt_model *m, const char *label) {
    char dir[] = "/tmp/molt_rt_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(molt_model_save(ctx, m, dir, NULL) == MOLT_OK, "%s save: %s", label,
          molt_last_error(ctx));
    molt_model *r = NULL;
    CHECK(molt_model_load(ctx, dir, NULL, &r) == MOLT_OK, "%s reload: %s", label,
          molt_last_error(ctx));
    if (r) {
        CHECK(r->cfg.arch == m->cfg.arch && r->n_floats == m->n_floats,
              "%s: reloaded model differs (arch %d/%d, %zu/%zu floats)", label, r->cfg.arch,
              m->cfg.arch, r->n_floats, m->n_floats);
        for (int i = 0; i < m->n_params && r->n_floats == m->n_floats; i++)
            CHECK(memcmp(r->data + m->params[i].offset, m->data + m->params[i].offset,
                         sizeof(float) * m->params[i].numel) == 0,
                  "%s: reloaded weights differ in %s", label, m->params[i].name);
        for (int l = 0; l < m->cfg.n_layer; l++) {
            CHECK(r->cfg.kind[l] == m->cfg.kind[l] && r->cfg.n_keep[l] == m->cfg.n_keep[l],
                  "%s: layer %d plan differs after reload", label, l);
            for (int i = 0; i < m->cfg.n_keep[l]; i++)
                CHECK(r->cfg.keep_heads[l][i] == m->cfg.keep_heads[l][i], "%s: kept head", label);
        }
        int32_t ids[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
        float *a = tm_logits(ctx, m, ids, 9, false), *b = tm_logits(ctx, r, ids, 9, false);
        CHECK(a && b && memcmp(a, b, sizeof(float) * 9 * (size_t)m->cfg.vocab) == 0,
              "%s: reloaded logits differ", label);
        free(a);
        free(b);
    }
    molt_model_free(r);
    tm_rmdir(dir);
}

static void test_llamba(void) {
    char json[1024];
    snprintf(json, sizeof json, LLAMBA_JSON, "true", 3, 16, 4);
    molt_model *m = make_model(json, 1);
    if (!m)
        return;
    int chunks[] = {1, 7, 16, 64};
    compare_modes(m, chunks, 4, "llamba");
    roundtrip(m, "llamba");
    // the hybrid with every layer recurrent, same weights (same tensor names)
    const char *hj =
        "{\"model_type\": \"molt_hybrid\", \"vocab_size\": 96, \"tie_embeddings\": true,"
        " \"d_model\": 64, \"n_layer\": 3, \"norm_epsilon\": 1e-5,"
        " \"mlp_cfg\": {\"intermediate_size\": 128}, \"ssm_cfg\": {\"d_state\": 16,"
        " \"n_v_heads\": 8, \"n_qk_heads\": 4, \"chunk_size\": 16},"
        " \"attn_cfg\": {\"num_attention_heads\": 8, \"num_key_value_heads\": 4, \"head_dim\": 8},"
        " \"layers\": [{\"mixer\": \"ssm\"}, {\"mixer\": \"ssm\"}, {\"mixer\": \"ssm\"}]}";
    molt_model *h = make_model(hj, 2);
    if (h) {
        for (int i = 0; i < h->n_params; i++) {
            param_info *p = model_param(m, h->params[i].name);
            CHECK(p && p->numel == h->params[i].numel, "hybrid param %s missing in llamba",
                  h->params[i].name);
            if (p)
                memcpy(h->data + h->params[i].offset, m->data + p->offset,
                       sizeof(float) * p->numel);
        }
        int32_t ids[40];
        for (int i = 0; i < 40; i++)
            ids[i] = (i * 7 + 3) % 96;
        float *a = tm_logits(ctx, m, ids, 40, false), *b = tm_logits(ctx, h, ids, 40, false);
        CHECK(a && b && memcmp(a, b, sizeof(float) * 40 * 96) == 0,
              "hybrid keeping no heads differs from the pure Llamba model");
        free(a);
        free(b);
    }
    molt_model_free(h);
    molt_model_free(m);
}

// kv-llama-2m's config.json (the structural checks below hold for any weights)
static const char *KV_LLAMA_JSON =
    "{\"model_type\": \"llama\", \"hidden_size\": 192, \"num_hidden_layers\": 6,"
    " \"num_attention_heads\": 6, \"num_key_value_heads\": 2, \"head_dim\": 32,"
    " \"intermediate_size\": 512, \"vocab_size\": 1024, \"max_position_embeddings\": 1024,"
    " \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"tie_word_embeddings\": true}";

static void test_hybrid_from_teacher(void) {
    molt_model *t = NULL;
    const char *kv = t_shared("models/kv-llama-2m");
    if (t_exists(kv)) {
        CHECK(molt_model_load(ctx, kv, NULL, &t) == MOLT_OK, "teacher: %s", molt_last_error(ctx));
    } else {
        printf("teacher: %s absent; a random Llama of its shape\n", kv);
        t = make_model(KV_LLAMA_JSON, 77);
    }
    if (!t)
        return;
    model_cfg plan;
    memset(&plan, 0, sizeof plan);
    model_cfg_set_ssm(&plan, &(ssm_cfg){SSM_DISCRETE, 192, 192, 6, 32, 8, 6, 4, 0, 16, 1e-5f, 0.0f,
                                        INFINITY});
    plan.conv_bias = true;
    int all[6] = {0, 1, 2, 3, 4, 5}, two[2] = {4, 1};
    int L = t->cfg.n_layer;
    for (int l = 0; l < L; l++)
        plan.kind[l] = LAYER_SSM;
    plan.kind[2] = LAYER_HYBRID;
    plan.n_keep[2] = 6;
    plan.keep_heads[2] = all;
    plan.kind[4] = LAYER_HYBRID;
    plan.n_keep[4] = 2;
    plan.keep_heads[4] = two;
    plan.kind[5] = LAYER_ATTN;
    molt_model *h = NULL;
    CHECK(model_hybrid_from_teacher(ctx, t, &plan, 3, &h) == MOLT_OK, "hybridize: %s",
          molt_last_error(ctx));
    if (!h) {
        molt_model_free(t);
        return;
    }
    // attention branch of layer 2 (all heads kept) == teacher layer 2 attention output
    int T = 33, d = 192;
    float *u = malloc(sizeof(float) * (size_t)T * d);
    t_seed(5);
    t_fill_normal(u, (size_t)T * d, 1.0f);
    attn_cfg tc, hc;
    attn_weights tw, hw;
    layer_attn(t, 2, &tc, &tw);
    layer_attn(h, 2, &hc, &hw);
    CHECK(hc.H == 6 && hc.KV == 6, "kept heads get their own k/v");
    size_t wn = attn_work(&hc, T, T, 1); // the larger: kept heads own their k/v
    float *work = malloc(sizeof(float) * wn), *ya = malloc(sizeof(float) * (size_t)T * d),
          *yb = malloc(sizeof(float) * (size_t)T * d);
    float *kc = malloc(sizeof(float) * 6 * (size_t)T * 32), *vc = malloc(sizeof(float) * 6 * (size_t)T * 32);
    attn_forward(TEX, ya, NULL, u, T, 0, &tc, &tw, kc, vc, T, t->rope_cos, t->rope_sin, work, 1);
    attn_forward(TEX, yb, NULL, u, T, 0, &hc, &hw, kc, vc, T, h->rope_cos, h->rope_sin, work, 1);
    t_close("hybrid all-heads attention branch vs teacher layer", yb, ya, (size_t)T * d, 1e-5, 1e-6);
    printf("all-heads attention branch vs teacher: max-abs %.2e\n",
           t_max_abs(yb, ya, (size_t)T * d));
    free(u);
    free(work);
    free(ya);
    free(yb);
    free(kc);
    free(vc);
    // memory accounting: KV only for kept heads (6 + 2) and the attention layer (2 kv heads)
    molt_model_info in;
    molt_model_get_info(h, &in);
    CHECK(in.kv_bytes_per_token == (int64_t)(6 + 2 + 2) * 2 * 32 * 4,
          "kv bytes per token %lld", (long long)in.kv_bytes_per_token);
    CHECK(in.n_attn_heads_kept == 6 + 2 + 6, "kept heads %d", in.n_attn_heads_kept);
    int chunks[] = {1, 16, 64};
    compare_modes(h, chunks, 3, "hybrid");
    roundtrip(h, "hybrid");
    molt_model_free(h);
    molt_model_free(t);
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

// resident memory after 512 and 16384 tokens of context, fed `step` tokens at
// a time (1 = decoding; the attention baseline is fed in blocks to keep the
// test fast — its cache grows the same way)
static void decode_rss(const molt_model *m, int step, long *at512, long *at16k) {
    molt_seq *s = NULL;
    CHECK(molt_seq_new(ctx, m, 16384, &s) == MOLT_OK, "seq: %s", molt_last_error(ctx));
    if (!s)
        return;
    int32_t ids[256];
    for (int i = 0; i < 16384; i += step) {
        for (int j = 0; j < step; j++)
            ids[j] = ((i + j) * 31 + 7) % m->cfg.vocab;
        molt_seq_feed(ctx, s, ids, step, 0, NULL);
        if (i + step == 512)
            *at512 = rss_kb();
    }
    *at16k = rss_kb();
    molt_seq_free(s);
}

static void test_memory(void) {
    char json[1024];
    snprintf(json, sizeof json, LLAMBA_JSON, "true", 2, 16, 8);
    molt_model *m = make_model(json, 4);
    const char *lj = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
                     " \"num_attention_heads\": 8, \"num_key_value_heads\": 8, \"intermediate_size\": 128,"
                     " \"vocab_size\": 96, \"max_position_embeddings\": 16384, \"rms_norm_eps\": 1e-5,"
                     " \"tie_word_embeddings\": true}";
    molt_model *a = make_model(lj, 5);
    if (!m || !a) {
        molt_model_free(m);
        molt_model_free(a);
        return;
    }
    long r0 = 0, r1 = 0, a0 = 0, a1 = 0;
    decode_rss(m, 1, &r0, &r1);
    decode_rss(a, 256, &a0, &a1);
    printf("resident memory, Llamba: %ld KiB at 512 tokens, %ld KiB at 16384 (+%ld)\n", r0, r1,
           r1 - r0);
    printf("resident memory, Llama:  %ld KiB at 512 tokens, %ld KiB at 16384 (+%ld; KV %lld "
           "B/token)\n",
           a0, a1, a1 - a0, (long long)model_kv_bytes_per_token(&a->cfg));
    CHECK(r1 - r0 <= 64, "recurrent decode grew resident memory by %ld KiB", r1 - r0);
    CHECK(a1 - a0 >= (long)(model_kv_bytes_per_token(&a->cfg) * (16384 - 512) / 1024 / 2),
          "attention decode should grow with its KV cache (grew %ld KiB)", a1 - a0);
    molt_model_free(m);
    molt_model_free(a);
}

static void expect_cfg_error(const char *json, const char *needle) {
    model_cfg c;
    molt_status st = model_cfg_from_json(ctx, "bad.json", json, strlen(json), &c);
    CHECK(st != MOLT_OK && strstr(molt_last_error(ctx), needle),
          "config should fail mentioning '%s' (status %d: %s)", needle, st, molt_last_error(ctx));
    if (st == MOLT_OK)
        model_free_cfg(&c);
}

static void test_bad_configs(void) {
    char json[1024];
    snprintf(json, sizeof json, LLAMBA_JSON, "true", 2, 16, 3); // 8 v heads, 3 qk heads
    expect_cfg_error(json, "n_qk_heads");
    expect_cfg_error("{\"model_type\": \"llamba\", \"vocab_size\": 96, \"d_model\": 64, "
                     "\"n_layer\": 1, \"mlp_cfg\": {\"intermediate_size\": 8}, \"ssm_cfg\": "
                     "{\"d_state\": 16, \"n_v_heads\": 5}}",
                     "n_v_heads");
    expect_cfg_error("{\"model_type\": \"molt_hybrid\", \"vocab_size\": 96, \"d_model\": 64,"
                     " \"n_layer\": 1, \"mlp_cfg\": {\"intermediate_size\": 8}, \"ssm_cfg\": "
                     "{\"d_state\": 16, \"n_v_heads\": 8}, \"attn_cfg\": {\"num_attention_heads\": "
                     "8, \"head_dim\": 8}, \"layers\": [{\"mixer\": \"hybrid\", "
                     "\"attention_heads\": [2, 9]}]}",
                     "head 9");
    expect_cfg_error("{\"model_type\": \"molt_hybrid\", \"vocab_size\": 96, \"d_model\": 64,"
                     " \"n_layer\": 2, \"mlp_cfg\": {\"intermediate_size\": 8}, \"ssm_cfg\": "
                     "{\"d_state\": 16, \"n_v_heads\": 8}, \"attn_cfg\": {\"num_attention_heads\": "
                     "8, \"head_dim\": 8}, \"layers\": [{\"mixer\": \"ssm\"}]}",
                     "layers");
    // d_state in config.json inconsistent with the tensors on disk
    snprintf(json, sizeof json, LLAMBA_JSON, "false", 1, 16, 8);
    molt_model *m = make_model(json, 9);
    char dir[] = "/tmp/molt_bad_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    if (m && molt_model_save(ctx, m, dir, NULL) == MOLT_OK) {
        char path[256];
        snprintf(path, sizeof path, "%s/config.json", dir);
        snprintf(json, sizeof json, LLAMBA_JSON, "false", 1, 8, 8);
        FILE *f = fopen(path, "w");
        fputs(json, f);
        fclose(f);
        molt_model *r = NULL;
        molt_status st = molt_model_load(ctx, dir, NULL, &r);
        CHECK(st == MOLT_ERR_SHAPE && strstr(molt_last_error(ctx), "in_proj"),
              "d_state mismatch: status %d, %s", st, molt_last_error(ctx));
        molt_model_free(r);
        // conv width inconsistent
        snprintf(json, sizeof json, LLAMBA_JSON, "false", 1, 16, 8);
        char *k = strstr(json, "\"d_conv\": 4");
        if (k)
            k[10] = '3';
        f = fopen(path, "w");
        fputs(json, f);
        fclose(f);
        st = molt_model_load(ctx, dir, NULL, &r);
        CHECK(st == MOLT_ERR_SHAPE && strstr(molt_last_error(ctx), "conv1d"),
              "d_conv mismatch: status %d, %s", st, molt_last_error(ctx));
        molt_model_free(r);
    }
    tm_rmdir(dir);
    molt_model_free(m);
}

int main(void) {
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, 2);
    test_llamba();
    test_hybrid_from_teacher();
    test_memory();
    test_bad_configs();
    molt_ctx_free(ctx);
    return t_done("test_hybrid");
}
