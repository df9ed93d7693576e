/*
 * test_mamba3_model.c — Mamba-3 layers in whole models (molt_hybrid files,
 * "mixer": "mamba3" + one "mamba3_cfg" block), random weights off the init:
 *   - pure Mamba-3 models (SISO; MIMO R 2 with the out norm) and one mixing
 *     attention and Mamba-3 layers: prefill (T up to 300, chunk sizes that do
 *     and don't divide the pieces) == token by token;
 *   - state slots: a prompt prefilled into each slot, then molt_slots_feed
 *     (each mixer's step_rows) == feeding every sequence alone, and a forked
 *     slot continues as its source;
 *   - save / load: the config (no ssm_cfg when no layer has an SSM) and every
 *     weight round-trip bit-exactly, and so do the logits; names as the
 *     reference module (backbone.layers.i.mixer.{in_proj.weight, dt_bias, ...});
 *   - info: state bytes = Σ_layers (H·P·N + R·H·N + H·P + H·S)·4, d_state;
 *   - training through the mixer table (train_model: every layer's train_forward /
 *     train_backward, the gradient slots mapped by mx_mamba3.c): for every Mamba-3
 *     parameter tensor, the element of largest gradient and two random ones against
 *     central differences of the model's mean cross-entropy (fp32, so to 3%);
 *   - config.json refuses Mamba-3 layers whose configs differ, and a layer
 *     config that fails its check; a Mamba-3 layer without "mamba3_cfg" is refused.
 */
#include "mixers/mixer.h"
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"
#include "train/model_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static molt_ctx *ctx;

// a molt_hybrid config.json: layers given as a list of mixer names
static void make_json(char *json, size_t cap, const char *layers, int n_layer, const char *m3) {
    snprintf(json, cap,
             "{\"model_type\": \"molt_hybrid\", \"vocab_size\": 97, \"d_model\": 32,"
             " \"n_layer\": %d, \"norm_epsilon\": 1e-5, \"tie_embeddings\": false,"
             " \"mlp_cfg\": {\"intermediate_size\": 48},"
             " \"attn_cfg\": {\"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
             " \"head_dim\": 8}, \"mamba3_cfg\": %s, \"layers\": [%s]}",
             n_layer, m3, layers);
}

static const char *SISO = "{\"d_state\": 16, \"expand\": 2, \"headdim\": 16, \"ngroups\": 1,"
                          " \"chunk_size\": 16}";
static const char *MIMO = "{\"d_state\": 8, \"expand\": 1, \"headdim\": 8, \"ngroups\": 2,"
                          " \"rope_fraction\": 1.0, \"is_mimo\": true, \"mimo_rank\": 2,"
                          " \"is_outproj_norm\": true, \"chunk_size\": 8}";

static void set_chunk(molt_model *m, int q) {
    for (int l = 0; l < MODEL_MAX_LAYERS; l++)
        m->cfg.m3_layer[l].chunk = q;
}

static void check_modes(molt_model *m, const char *label) {
    int32_t ids[300];
    t_seed(3);
    for (int i = 0; i < 300; i++)
        ids[i] = (int32_t)(t_uniform(0, 1) * (float)(m->cfg.vocab - 1));
    static const int lens[] = {1, 7, 64, 300};
    static const int chunks[] = {1, 7, 16};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int n = lens[li];
        float *ref = tm_logits(ctx, m, ids, n, true);
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            set_chunk(m, chunks[c]);
            float *got = tm_logits(ctx, m, ids, n, false);
            char what[128];
            snprintf(what, sizeof what, "%s T=%d chunk %d prefill vs step", label, n, chunks[c]);
            CHECK(got && ref, "%s: run failed: %s", what, molt_last_error(ctx));
            if (got && ref)
                t_close(what, got, ref, (size_t)n * m->cfg.vocab, -1, 1e-5);
            free(got);
        }
        free(ref);
    }
    set_chunk(m, 16);
}

#define NS 4
#define STEPS 12

static void check_slots(molt_model *m, const char *label) {
    int V = m->cfg.vocab, cap = 64;
    int32_t ids[40];
    t_seed(9);
    for (int i = 0; i < 40; i++)
        ids[i] = (int32_t)(t_uniform(0, 1) * (float)(V - 1));
    molt_slots *sl = NULL;
    molt_seq *seq[NS + 1] = {0};
    CHECK(molt_slots_new(ctx, m, NS + 1, cap, &sl) == MOLT_OK, "slots: %s", molt_last_error(ctx));
    for (int i = 0; i <= NS; i++)
        CHECK(molt_seq_new(ctx, m, cap, &seq[i]) == MOLT_OK, "seq: %s", molt_last_error(ctx));
    float *lb = malloc(sizeof(float) * (NS + 1) * V), *ls = malloc(sizeof(float) * V);
    int32_t next[NS + 1], slot[NS + 1];
    double worst = 0;
    int same = 1;
    for (int i = 0; sl && i < NS; i++) {
        int len = 1 + 9 * i; // 1, 10, 19, 28: prefill pieces of several chunks
        slot[i] = i;
        CHECK(molt_slot_prefill(ctx, sl, i, ids, len, 0, lb) == MOLT_OK, "prefill: %s",
              molt_last_error(ctx));
        CHECK(molt_seq_feed(ctx, seq[i], ids, len, 0, ls) == MOLT_OK, "feed");
        CHECK(t_rel_diff(lb, ls, (size_t)V) == 0.0, "%s: slot %d prefill differs", label, i);
        next[i] = t_argmax(ls, V);
    }
    // slot NS: a fork of slot 3, and its twin sequence fed the same prompt
    slot[NS] = NS;
    CHECK(sl && molt_slot_copy(ctx, sl, 3, NS) == MOLT_OK, "fork: %s", molt_last_error(ctx));
    molt_seq_feed(ctx, seq[NS], ids, 28, 0, ls);
    next[NS] = next[3];
    for (int s = 0; sl && s < STEPS; s++) {
        CHECK(molt_slots_feed(ctx, sl, NS + 1, slot, next, lb) == MOLT_OK, "step: %s",
              molt_last_error(ctx));
        for (int i = 0; i <= NS; i++) {
            molt_seq_feed(ctx, seq[i], &next[i], 1, 0, ls);
            worst = fmax(worst, t_rel_diff(lb + (size_t)i * V, ls, (size_t)V));
            same &= t_argmax(lb + (size_t)i * V, V) == t_argmax(ls, V);
            next[i] = t_argmax(ls, V);
        }
    }
    CHECK(worst < 1e-5 && same, "%s: batched decode differs from single decode by %.3g (%d)",
          label, worst, same);
    printf("%s: slots (incl. a fork) vs single decode over %d steps: max rel diff %.2g\n", label,
           STEPS, worst);
    free(lb), free(ls);
    for (int i = 0; i <= NS; i++)
        molt_seq_free(seq[i]);
    molt_slots_free(sl);
}

static void check_roundtrip(const molt_model *m, const char *label, bool pure) {
    char dir[] = "/tmp/molt_m3_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(molt_model_save(ctx, m, dir, NULL) == MOLT_OK, "%s save: %s", label,
          molt_last_error(ctx));
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *js = t_read_file(path, NULL);
    CHECK(js && strstr(js, "\"mamba3_cfg\"") && (!pure || !strstr(js, "\"ssm_cfg\"")),
          "%s: config.json has mamba3_cfg%s", label, pure ? " and no ssm_cfg" : "");
    free(js);
    molt_model *r = NULL;
    CHECK(molt_model_load(ctx, dir, NULL, &r) == MOLT_OK, "%s reload: %s", label,
          molt_last_error(ctx));
    if (r) {
        CHECK(r->n_floats == m->n_floats && r->n_params == m->n_params, "%s: layout", label);
        for (int i = 0; i < m->n_params && r->n_floats == m->n_floats; i++)
            CHECK(!strcmp(r->params[i].name, m->params[i].name) &&
                      memcmp(r->data + m->params[i].offset, m->data + m->params[i].offset,
                             sizeof(float) * m->params[i].numel) == 0,
                  "%s: reloaded %s differs", label, m->params[i].name);
        for (int l = 0; l < m->cfg.n_layer; l++)
            CHECK(r->cfg.kind[l] == m->cfg.kind[l] &&
                      (m->cfg.kind[l] != LAYER_MAMBA3 ||
                       !memcmp(layer_m3(&r->cfg, l), layer_m3(&m->cfg, l), sizeof(mamba3_cfg))),
                  "%s: layer %d config differs after reload", label, l);
        int32_t ids[19];
        for (int i = 0; i < 19; i++)
            ids[i] = i + 1;
        float *a = tm_logits(ctx, m, ids, 19, false), *b = tm_logits(ctx, r, ids, 19, false);
        CHECK(a && b && memcmp(a, b, sizeof(float) * 19 * (size_t)m->cfg.vocab) == 0,
              "%s: reloaded logits differ", label);
        free(a), free(b);
    }
    molt_model_free(r);
    tm_rmdir(dir);
}

static void check_info(const molt_model *m, const char *label) {
    molt_model_info in;
    molt_model_get_info(m, &in);
    int64_t want = 0;
    int d_state = 0;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        if (m->cfg.kind[l] != LAYER_MAMBA3)
            continue;
        const mamba3_cfg *c = layer_m3(&m->cfg, l);
        int S = mamba3_angles(c);
        want += 4 * ((int64_t)c->H * c->P * c->N + (int64_t)c->R * c->H * c->N +
                     (int64_t)c->H * c->P + (int64_t)c->H * S);
        if (!d_state)
            d_state = c->N;
    }
    CHECK(in.state_bytes == want && in.d_state == d_state,
          "%s: info state %lld bytes (want %lld), d_state %d (want %d)", label,
          (long long)in.state_bytes, (long long)want, in.d_state, d_state);
    printf("%s: %lld state bytes per sequence\n", label, (long long)in.state_bytes);
}

static double ce_loss(const molt_exec *ex, train_model *tm, const int32_t *ids,
                      const int32_t *tg) {
    tm_forward(ex, tm, ids);
    return tm_loss_ce(ex, tm, tg, 1.0f);
}

static void check_train_grads(molt_model *m, const char *label) {
    enum { B = 2, T = 11 };
    train_model *tm = NULL;
    CHECK(tm_new(ctx, m, B, T, &tm) == MOLT_OK, "tm_new: %s", molt_last_error(ctx));
    if (!tm)
        return;
    molt_exec ex = molt__exec(ctx);
    int32_t ids[B * T], tg[B * T];
    t_seed(21);
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)(t_uniform(0, 1) * (float)(m->cfg.vocab - 1));
        tg[i] = (int32_t)(t_uniform(0, 1) * (float)(m->cfg.vocab - 1));
    }
    tm_zero_grad(tm);
    ce_loss(&ex, tm, ids, tg);
    tm_backward(&ex, tm);
    int checked = 0;
    double worst = 0;
    for (int i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        if (!strstr(p->name, ".mixer."))
            continue;
        float *w = m->data + p->offset, *g = tm->grad + p->offset;
        size_t top = 0;
        for (size_t j = 1; j < p->numel; j++)
            if (fabsf(g[j]) > fabsf(g[top]))
                top = j;
        size_t pick[3] = {top, (size_t)(t_uniform(0, 1) * (float)(p->numel - 1)),
                          (size_t)(t_uniform(0, 1) * (float)(p->numel - 1))};
        for (int k = 0; k < 3; k++) {
            size_t j = pick[k];
            float v = w[j], h = 2e-3f * fmaxf(1.0f, fabsf(v));
            w[j] = v + h;
            double lp = ce_loss(&ex, tm, ids, tg);
            w[j] = v - h;
            double lm = ce_loss(&ex, tm, ids, tg);
            w[j] = v;
            double fd = (lp - lm) / (2.0 * (double)h), an = (double)g[j];
            double err = fabs(fd - an) / (fmax(fabs(fd), fabs(an)) + 2e-4);
            worst = fmax(worst, err);
            CHECK(err <= 0.03, "%s: %s[%zu] gradient %.6g vs central differences %.6g", label,
                  p->name, j, an, fd);
            checked++;
        }
    }
    printf("%s: %d Mamba-3 gradient elements through train_backward vs central differences, "
           "worst %.2g\n",
           label, checked, worst);
    CHECK(checked > 0, "%s: no Mamba-3 parameters checked", label);
    tm_free(tm);
}

static void check_model(const char *layers, int n_layer, const char *m3, const char *label,
                        bool pure) {
    char json[2048];
    make_json(json, sizeof json, layers, n_layer, m3);
    molt_model *m = tm_random_model(ctx, json, 7, 0.05f);
    if (!m)
        return;
    check_modes(m, label);
    check_slots(m, label);
    check_roundtrip(m, label, pure);
    check_info(m, label);
    check_train_grads(m, label);
    molt_model_free(m);
}

static void check_config(void) {
    char json[2048];
    model_cfg c;
    // a Mamba-3 layer needs its block
    snprintf(json, sizeof json,
             "{\"model_type\": \"molt_hybrid\", \"vocab_size\": 97, \"d_model\": 32,"
             " \"n_layer\": 1, \"mlp_cfg\": {\"intermediate_size\": 48},"
             " \"attn_cfg\": {\"num_attention_heads\": 4, \"head_dim\": 8},"
             " \"layers\": [{\"mixer\": \"mamba3\"}]}");
    CHECK(model_cfg_from_json(ctx, "t", json, strlen(json), &c) != MOLT_OK &&
              strstr(molt_last_error(ctx), "mamba3_cfg"),
          "a Mamba-3 layer without mamba3_cfg is refused (%s)", molt_last_error(ctx));
    // a block that fails its check (headdim does not divide d_inner; MIMO with odd N)
    make_json(json, sizeof json, "{\"mixer\": \"mamba3\"}", 1, "{\"headdim\": 24}");
    CHECK(model_cfg_from_json(ctx, "t", json, strlen(json), &c) == MOLT_ERR_SHAPE,
          "headdim 24 refused (%s)", molt_last_error(ctx));
    make_json(json, sizeof json, "{\"mixer\": \"mamba3\"}", 1,
              "{\"d_state\": 7, \"headdim\": 16, \"is_mimo\": true}");
    CHECK(model_cfg_from_json(ctx, "t", json, strlen(json), &c) == MOLT_ERR_SHAPE &&
              strstr(molt_last_error(ctx), "even"),
          "MIMO with odd d_state refused (%s)", molt_last_error(ctx));
    // an SSM layer still needs ssm_cfg
    make_json(json, sizeof json, "{\"mixer\": \"ssm\"}", 1, SISO);
    CHECK(model_cfg_from_json(ctx, "t", json, strlen(json), &c) == MOLT_ERR_FORMAT &&
              strstr(molt_last_error(ctx), "ssm_cfg"),
          "an SSM layer without ssm_cfg is refused (%s)", molt_last_error(ctx));
    // two Mamba-3 layers with different configs: checked, but config.json cannot say it
    make_json(json, sizeof json, "{\"mixer\": \"mamba3\"}, {\"mixer\": \"mamba3\"}", 2, SISO);
    CHECK(model_cfg_from_json(ctx, "t", json, strlen(json), &c) == MOLT_OK, "read: %s",
          molt_last_error(ctx));
    c.m3_layer[1].N = 8;
    CHECK(model_cfg_check(ctx, "t", &c) == MOLT_OK, "per-layer Mamba-3 configs are allowed");
    char *out = NULL;
    CHECK(model_cfg_to_json(ctx, &c, NULL, &out) == MOLT_ERR_UNSUPPORTED &&
              strstr(molt_last_error(ctx), "differ"),
          "differing Mamba-3 configs are refused by config.json (%s)", molt_last_error(ctx));
    molt__free(out);
    c.m3_layer[1].N = 0;
    CHECK(model_cfg_check(ctx, "t", &c) == MOLT_ERR_SHAPE, "a layer's Mamba-3 config is checked");
    model_free_cfg(&c);
}

int main(void) {
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, getenv("MOLT_TEST_THREADS") ? atoi(getenv("MOLT_TEST_THREADS")) : 2);
    check_model("{\"mixer\": \"mamba3\"}, {\"mixer\": \"mamba3\"}", 2, SISO, "mamba3 SISO", true);
    check_model("{\"mixer\": \"mamba3\"}, {\"mixer\": \"mamba3\"}", 2, MIMO,
                "mamba3 MIMO R2 norm", true);
    check_model("{\"mixer\": \"attention\"}, {\"mixer\": \"mamba3\"}, {\"mixer\": \"attention\"}",
                3, SISO, "attention|mamba3|attention", true);
    check_config();
    molt_ctx_free(ctx);
    return t_done("test_mamba3_model");
}
