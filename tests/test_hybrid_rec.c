/*
 * test_hybrid_rec.c — hybrid layers whose recurrent part is Mamba-3 (SISO,
 * MIMO) or GateLoop instead of the Llamba SSM (model_cfg.hyb_rec,
 * config.json's per-layer "recurrent"), random weights off the init:
 *   - modes: prefill (T up to 300, chunk sizes that do and don't divide T) ==
 *     token by token (relative L2 ≤ 3e-5: GateLoop's complex state over 300
 *     tokens measures 1.2e-5; the mixer alone is held to 2e-5), and the
 *     training forward (train_forward of every layer, B = 2 sequences) ==
 *     prefill of each sequence;
 *   - training: for every parameter tensor of the hybrid layers (recurrent part
 *     .mixer.*, kept heads .attn.*, the combiner's .adapter.*), the element of
 *     largest gradient and two random ones of at least a fifth of it (smaller
 *     ones drown in the fp32 loss's rounding) through train_backward against
 *     central differences of the model's mean cross-entropy (3%);
 *   - state slots: prompts prefilled into slots, then molt_slots_feed ==
 *     feeding every sequence alone, and a forked slot continues as its source;
 *   - save / load: "recurrent" and the mixer's config block are written, every
 *     weight, the layer configs and the logits round-trip bit-exactly;
 *   - info: state bytes = Σ layers the recurrent part's state, KV bytes per
 *     token = the kept heads'; the analysis parts (mixer_part) are the kept
 *     heads and the layer's recurrent mixer;
 *   - config.json: a hybrid without "recurrent" is the SSM (older files), and
 *     "recurrent": "attention" / "hybrid" / an unknown name is refused;
 *   - the same checks for the Mamba-2 mixer (ssm_cfg "layer": "Mamba2": conv,
 *     gated RMSNorm) in blocks with MLPs, alone and beside kept heads: the
 *     shape of `molt distill --student mamba2` (and `hybridize`).
 */
#include "distill/student.h"
#include "kernels/kernels.h"
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

static const char *SSM = "\"ssm_cfg\": {\"d_state\": 8, \"n_v_heads\": 4, \"n_qk_heads\": 4,"
                         " \"expand\": 1, \"chunk_size\": 16}";
static const char *M3 = "\"mamba3_cfg\": {\"d_state\": 16, \"expand\": 1, \"headdim\": 8,"
                        " \"ngroups\": 1, \"chunk_size\": 16}";
static const char *M3MIMO = "\"mamba3_cfg\": {\"d_state\": 8, \"expand\": 1, \"headdim\": 8,"
                            " \"ngroups\": 2, \"is_mimo\": true, \"mimo_rank\": 2,"
                            " \"is_outproj_norm\": true, \"chunk_size\": 8}";
// the Mamba-2 mixer (conv, gated RMSNorm) in molt_hybrid blocks with MLPs (--student mamba2)
static const char *SSM_M2 = "\"ssm_cfg\": {\"layer\": \"Mamba2\", \"d_state\": 8,"
                            " \"n_v_heads\": 4, \"n_qk_heads\": 2, \"expand\": 1,"
                            " \"chunk_size\": 16, \"bias\": true}";
static const char *GL = "\"gateloop_cfg\": {\"n_heads\": 4, \"head_dim\": 8, \"chunk_size\": 16}";

// a molt_hybrid config.json: d 32, 4 heads of 8 (2 KV heads), the blocks given
static void make_json(char *json, size_t cap, const char *layers, int n_layer,
                      const char *blocks) {
    snprintf(json, cap,
             "{\"model_type\": \"molt_hybrid\", \"vocab_size\": 97, \"d_model\": 32,"
             " \"n_layer\": %d, \"norm_epsilon\": 1e-5, \"tie_embeddings\": false,"
             " \"mlp_cfg\": {\"intermediate_size\": 48},"
             " \"attn_cfg\": {\"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
             " \"head_dim\": 8}, %s, \"layers\": [%s]}",
             n_layer, blocks, layers);
}

static void set_chunk(molt_model *m, int q) {
    for (int l = 0; l < MODEL_MAX_LAYERS; l++) {
        m->cfg.m3_layer[l].chunk = q;
        m->cfg.gl_layer[l].chunk = q;
        layer_ssm_mut(&m->cfg, l)->chunk = q;
    }
}

static void random_ids(int32_t *ids, int n, int V, uint64_t seed) {
    t_seed(seed);
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(t_uniform(0, 1) * (float)(V - 1));
}

static void check_modes(molt_model *m, const char *label) {
    int32_t ids[300];
    random_ids(ids, 300, m->cfg.vocab, 3);
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
                t_close(what, got, ref, (size_t)n * m->cfg.vocab, -1, 3e-5);
            free(got);
        }
        free(ref);
    }
    set_chunk(m, 16);
    // the training forward (B = 2 sequences from a zero state) vs prefill of each
    enum { B = 2, T = 45 };
    train_model *tm = NULL;
    CHECK(tm_new(ctx, m, B, T, &tm) == MOLT_OK, "tm_new: %s", molt_last_error(ctx));
    if (!tm)
        return;
    molt_exec ex = molt__exec(ctx);
    tm_forward(&ex, tm, ids);
    size_t V = (size_t)m->cfg.vocab;
    for (int b = 0; b < B; b++) {
        float *ref = tm_logits(ctx, m, ids + b * T, T, false);
        char what[128];
        snprintf(what, sizeof what, "%s train_forward seq %d vs prefill", label, b);
        if (ref)
            t_close(what, tm->logits + (size_t)b * T * V, ref, (size_t)T * V, -1, 1e-5);
        free(ref);
    }
    tm_free(tm);
}

#define NS 4
#define STEPS 12

static void check_slots(molt_model *m, const char *label) {
    int V = m->cfg.vocab, cap = 64;
    int32_t ids[40];
    random_ids(ids, 40, V, 9);
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
    slot[NS] = NS; // a fork of slot 3, and its twin sequence fed the same prompt
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

static void check_roundtrip(const molt_model *m, const char *label, const char *want) {
    char dir[] = "/tmp/molt_hyrec_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(molt_model_save(ctx, m, dir, NULL) == MOLT_OK, "%s save: %s", label,
          molt_last_error(ctx));
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *js = t_read_file(path, NULL);
    CHECK(js && strstr(js, want), "%s: config.json has %s", label, want);
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
        const model_cfg *a = &m->cfg, *b = &r->cfg;
        for (int l = 0; l < a->n_layer; l++) {
            bool same = b->kind[l] == a->kind[l] && layer_rec_kind(b, l) == layer_rec_kind(a, l);
            switch (layer_rec_kind(a, l)) {
            case LAYER_MAMBA3: same &= !memcmp(layer_m3(a, l), layer_m3(b, l), sizeof(mamba3_cfg));
                break;
            case LAYER_GATELOOP:
                same &= !memcmp(layer_gl(a, l), layer_gl(b, l), sizeof(gateloop_cfg));
                break;
            case LAYER_SSM:
                same &= !memcmp(layer_ssm(a, l), layer_ssm(b, l), sizeof(ssm_cfg));
                break;
            default: break;
            }
            if (a->kind[l] == LAYER_HYBRID)
                same &= b->n_keep[l] == a->n_keep[l] &&
                        !memcmp(b->keep_heads[l], a->keep_heads[l], sizeof(int) * a->n_keep[l]);
            CHECK(same, "%s: layer %d config differs after reload", label, l);
        }
        int32_t ids[19];
        for (int i = 0; i < 19; i++)
            ids[i] = i + 1;
        float *x = tm_logits(ctx, m, ids, 19, false), *y = tm_logits(ctx, r, ids, 19, false);
        CHECK(x && y && memcmp(x, y, sizeof(float) * 19 * (size_t)m->cfg.vocab) == 0,
              "%s: reloaded logits differ", label);
        free(x), free(y);
    }
    molt_model_free(r);
    tm_rmdir(dir);
}

static void check_info(const molt_model *m, const char *label) {
    molt_model_info in;
    molt_model_get_info(m, &in);
    int64_t want = 0, kv = 0;
    const model_cfg *c = &m->cfg;
    for (int l = 0; l < c->n_layer; l++) {
        layer_kind k = layer_rec_kind(c, l);
        if (k == LAYER_MAMBA3)
            want += 4 * (int64_t)mamba3_state_floats(layer_m3(c, l));
        else if (k == LAYER_GATELOOP)
            want += 4 * (int64_t)gl_state_floats(layer_gl(c, l));
        else if (k == LAYER_SSM)
            want += 4 * (int64_t)mixer_of(LAYER_SSM)->rec_floats(m, l);
        if (c->kind[l] == LAYER_ATTN)
            kv += 2 * 4 * (int64_t)c->n_kv_head * c->head_dim;
        if (c->kind[l] == LAYER_HYBRID) {
            kv += 2 * 4 * (int64_t)c->n_keep[l] * c->head_dim;
            CHECK(mixer_part(c, l, 0) == &mixer_attention &&
                      mixer_part(c, l, 1) == mixer_of(layer_hybrid_rec(c, l)),
                  "%s: layer %d's analysis parts", label, l);
        }
    }
    CHECK(in.state_bytes == want && in.kv_bytes_per_token == kv,
          "%s: info state %lld bytes (want %lld), KV %lld B/token (want %lld)", label,
          (long long)in.state_bytes, (long long)want, (long long)in.kv_bytes_per_token,
          (long long)kv);
    printf("%s: %lld state bytes per sequence, %lld KV bytes per token\n", label,
           (long long)in.state_bytes, (long long)in.kv_bytes_per_token);
}

static double ce_loss(const molt_exec *ex, train_model *tm, const int32_t *ids,
                      const int32_t *tg) {
    tm_forward(ex, tm, ids);
    return tm_loss_ce(ex, tm, tg, 1.0f);
}

// from a random element on, the first whose gradient is at least a fifth of g[top]
static size_t big_after(const float *g, size_t n, size_t top) {
    size_t j = (size_t)(t_uniform(0, 1) * (float)(n - 1));
    for (size_t k = 0; k < n; k++, j = (j + 1) % n)
        if (fabsf(g[j]) >= 0.2f * fabsf(g[top]))
            return j;
    return top;
}

static void check_train_grads(molt_model *m, const char *label) {
    enum { B = 2, T = 11 };
    train_model *tm = NULL;
    CHECK(tm_new(ctx, m, B, T, &tm) == MOLT_OK, "tm_new: %s", molt_last_error(ctx));
    if (!tm)
        return;
    molt_exec ex = molt__exec(ctx);
    int32_t ids[B * T], tg[B * T];
    random_ids(ids, B * T, m->cfg.vocab, 21);
    random_ids(tg, B * T, m->cfg.vocab, 22);
    tm_zero_grad(tm);
    ce_loss(&ex, tm, ids, tg);
    tm_backward(&ex, tm);
    int checked = 0, tensors = 0;
    double worst = 0;
    t_seed(23);
    for (int i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        if (!strstr(p->name, ".mixer.") && !strstr(p->name, ".attn.") &&
            !strstr(p->name, ".adapter."))
            continue;
        tensors++;
        float *w = m->data + p->offset, *g = tm->grad + p->offset;
        size_t top = 0;
        for (size_t j = 1; j < p->numel; j++)
            if (fabsf(g[j]) > fabsf(g[top]))
                top = j;
        size_t pick[3] = {top, big_after(g, p->numel, top), big_after(g, p->numel, top)};
        for (int k = 0; k < 3; k++) {
            size_t j = pick[k];
            float v = w[j], h = 2e-3f * fmaxf(1.0f, fabsf(v));
            w[j] = v + h;
            double lp = ce_loss(&ex, tm, ids, tg);
            w[j] = v - h;
            double lm = ce_loss(&ex, tm, ids, tg);
            w[j] = v;
            double fd = (lp - lm) / (2.0 * (double)h), an = (double)g[j];
            // floor: the fp32 loss resolves ~1e-7, so fd itself is noisy by ~3e-5
            // (2h = 4e-3); 0.03 · 1e-3 keeps the check above that noise
            double err = fabs(fd - an) / (fmax(fabs(fd), fabs(an)) + 1e-3);
            worst = fmax(worst, err);
            CHECK(err <= 0.03, "%s: %s[%zu] gradient %.6g vs central differences %.6g", label,
                  p->name, j, an, fd);
            checked++;
        }
    }
    printf("%s: %d gradient elements of %d hybrid-layer tensors through train_backward vs "
           "central differences, worst %.2g\n",
           label, checked, tensors, worst);
    CHECK(checked > 0, "%s: no parameters checked", label);
    tm_free(tm);
}

// want: what the saved config.json must hold
static void check_model(const char *layers, int n_layer, const char *blocks, const char *label,
                        const char *want) {
    char json[2048];
    make_json(json, sizeof json, layers, n_layer, blocks);
    molt_model *m = tm_random_model(ctx, json, 7, 0.05f);
    if (!m)
        return;
    check_modes(m, label);
    check_slots(m, label);
    check_roundtrip(m, label, want);
    check_info(m, label);
    check_train_grads(m, label);
    molt_model_free(m);
}

static void check_config(void) {
    char json[2048];
    char blocks[512];
    model_cfg c;
    snprintf(blocks, sizeof blocks, "%s, %s", SSM, M3);
    // no "recurrent": the SSM, as files before it
    make_json(json, sizeof json, "{\"mixer\": \"hybrid\", \"attention_heads\": [2]}", 1, blocks);
    CHECK(model_cfg_from_json(ctx, "t", json, strlen(json), &c) == MOLT_OK &&
              c.kind[0] == LAYER_HYBRID && layer_hybrid_rec(&c, 0) == LAYER_SSM,
          "a hybrid without \"recurrent\" is the SSM (%s)", molt_last_error(ctx));
    char *out = NULL;
    CHECK(model_cfg_to_json(ctx, &c, NULL, &out) == MOLT_OK && out && !strstr(out, "recurrent"),
          "an SSM hybrid's config.json has no \"recurrent\"");
    molt__free(out);
    model_free_cfg(&c);
    static const char *const bad[] = {"attention", "hybrid", "mamba9"};
    for (int i = 0; i < 3; i++) {
        char L[128];
        snprintf(L, sizeof L, "{\"mixer\": \"hybrid\", \"attention_heads\": [2], \"recurrent\":"
                              " \"%s\"}", bad[i]);
        make_json(json, sizeof json, L, 1, blocks);
        CHECK(model_cfg_from_json(ctx, "t", json, strlen(json), &c) == MOLT_ERR_FORMAT &&
                  strstr(molt_last_error(ctx), "recurrent"),
              "\"recurrent\": \"%s\" is refused (%s)", bad[i], molt_last_error(ctx));
        model_free_cfg(&c);
    }
    // a Mamba-3 hybrid needs the mamba3_cfg block
    make_json(json, sizeof json,
              "{\"mixer\": \"hybrid\", \"attention_heads\": [2], \"recurrent\": \"mamba3\"}", 1,
              SSM);
    CHECK(model_cfg_from_json(ctx, "t", json, strlen(json), &c) != MOLT_OK &&
              strstr(molt_last_error(ctx), "mamba3_cfg"),
          "a Mamba-3 hybrid without mamba3_cfg is refused (%s)", molt_last_error(ctx));
    model_free_cfg(&c);
}

#define REC(k) "\"recurrent\":\t\"" k "\""
#define HY(heads, rec)                                                                             \
    "{\"mixer\": \"hybrid\", \"attention_heads\": [" heads "], \"recurrent\": \"" rec "\"}"

// ----------------------------------------------------------------------------
// the Mamba-2 student's attention transfer (student_mamba2.c): the wiring (x ← v,
// B ← k, C ← q, out ← o, identity conv) by the materialized matrix against the
// teacher's q·k, and the init: D = 0, Δ·exp(A_log) = softplus(−4) with Δ small
// and A inside Mamba-2's ranges, norm_w = ½ · RMS of the head's v

static double m2_silu(double v) { return v / (1.0 + exp(-v)); }
static double m2_softplus(double v) { return log1p(exp(v)); }

static void check_mamba2_transfer(void) {
    printf("Mamba-2 student, attention transfer (stories260K teacher):\n");
    const char *path = t_shared("models/stories260K/stories260K.bin");
    if (!t_have(path, "Mamba-2 student transfer"))
        return;
    molt_model       *t = NULL, *s = NULL;
    molt_load_opts    lo = {NULL, 1};
    molt_distill_opts o = {0};
    o.d_state = 3, o.init = "transfer", o.student = "mamba2", o.ssm_bias = 1, o.seed = 1;
    CHECK(molt_model_load(ctx, path, &lo, &t) == MOLT_OK, "teacher: %s", molt_last_error(ctx));
    if (t)
        CHECK(mohawk_make_student(ctx, t, &o, &s) == MOLT_OK, "student: %s",
              molt_last_error(ctx));
    if (!t || !s) {
        molt_model_free(t);
        return;
    }
    const model_cfg *tc = &t->cfg;
    int T = 24, d = tc->d_model, H = tc->n_head, KV = tc->n_kv_head, hd = tc->head_dim, N = 3;
    int grp = H / KV;
    float  *u = malloc(sizeof(float) * (size_t)T * d);
    float  *q = malloc(sizeof(float) * (size_t)T * H * hd);
    float  *k = malloc(sizeof(float) * (size_t)T * KV * hd);
    float  *M = malloc(sizeof(float) * (size_t)H * T * T);
    double *ref = malloc(sizeof(double) * (size_t)H * T * T);
    t_seed(45);
    t_fill_uniform(u, (size_t)T * d, -1, 1);
    for (int l = 0; l < tc->n_layer; l++) {
        const ssm_weights   *w = &s->layers[l].ssm;
        const layer_weights *tw = &t->layers[l];
        double               emax = 0, nmax = 0;
        for (int h = 0; h < H; h++) {
            double dl = m2_softplus(w->dt_bias[h]), A = exp(w->A_log[h]);
            CHECK(w->D[h] == 0.0f, "layer %d head %d: D %g, want 0", l, h, (double)w->D[h]);
            CHECK(fabs(dl * A - m2_softplus(-4.0)) < 1e-6, "layer %d head %d: Δ·A %g, want %g",
                  l, h, dl * A, m2_softplus(-4.0));
            CHECK(dl >= 1e-3 && dl <= 0.01 && A >= 1 && A <= 16,
                  "layer %d head %d: Δ %g, -A %g (want Δ in [1e-3, 0.01], -A in [1, 16])", l, h,
                  dl, A);
            const float *wv = tw->wv + (size_t)(h / grp) * hd * d;
            double       ss = 0;
            for (int i = 0; i < hd * d; i++) {
                double a = (double)wv[i] * (double)tw->attn_norm[i % d];
                ss += a * a;
            }
            for (int i = 0; i < hd; i++)
                nmax = fmax(nmax, fabs((double)w->norm_w[h * hd + i] - 0.5 * sqrt(ss / hd)) /
                                      (0.5 * sqrt(ss / hd)));
        }
        CHECK(nmax < 1e-6, "layer %d: norm_w vs ½·RMS of v: %.3g", l, nmax);
        // M[h,t,s] = Δ·(C_t·B_s)·exp(Δ·A·(t−s)), C = silu(q[:N]), B = silu(k[:N]), D = 0
        k_matmul(TEX, q, u, tw->wq, NULL, T, d, H * hd, 0);
        k_matmul(TEX, k, u, tw->wk, NULL, T, d, KV * hd, 0);
        float *work = malloc(sizeof(float) * layer_mixer(s, l)->mat_work_floats(s, l, T));
        layer_mixer(s, l)->materialize(TEX, s, l, M, u, T, work);
        double dl = m2_softplus(w->dt_bias[0]), m = 0;
        for (int h = 0; h < H; h++)
            for (int a = 0; a < T; a++)
                for (int b = 0; b < T; b++) {
                    double v = 0;
                    for (int n = 0; b <= a && n < N; n++)
                        v += m2_silu(q[(size_t)a * H * hd + h * hd + n]) *
                             m2_silu(k[(size_t)b * KV * hd + (h / grp) * hd + n]);
                    ref[((size_t)h * T + a) * T + b] =
                        b <= a ? v * dl * exp(-m2_softplus(-4.0) * (a - b)) : 0.0;
                }
        for (size_t i = 0; i < (size_t)H * T * T; i++) {
            m = fmax(m, fabs(ref[i]));
            double e = fabs((double)M[i] - ref[i]);
            emax = e == e ? fmax(emax, e) : (double)INFINITY;
        }
        CHECK(emax <= 1e-5 * m, "layer %d: student M vs Δ·silu(q)·silu(k)·decay: %.3g", l,
              emax / m);
        if (l == 0)
            printf("  layer 0: M vs Δ·silu(q)·silu(k)·0.982^(t-s): %.2g; Δ %.4g, A %.3g\n",
                   emax / m, dl, -exp(w->A_log[0]));
        free(work);
    }
    free(u), free(q), free(k), free(M), free(ref);
    molt_model_free(s);
    molt_model_free(t);
}

int main(void) {
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, getenv("MOLT_TEST_THREADS") ? atoi(getenv("MOLT_TEST_THREADS")) : 2);
    char blocks[512];
    check_model(HY("1, 3", "mamba3") ", {\"mixer\": \"mamba3\"}, " HY("0", "mamba3"), 3, M3,
                "hybrid+mamba3 SISO", REC("mamba3"));
    check_model(HY("2", "mamba3") ", " HY("0, 1, 3", "mamba3"), 2, M3MIMO,
                "hybrid+mamba3 MIMO R2", REC("mamba3"));
    check_model(HY("1, 3", "gateloop") ", {\"mixer\": \"gateloop\"}, " HY("2", "gateloop"), 3, GL,
                "hybrid+gateloop", REC("gateloop"));
    snprintf(blocks, sizeof blocks, "%s, %s, %s", SSM, M3, GL);
    check_model("{\"mixer\": \"hybrid\", \"attention_heads\": [0]}, " HY("1", "mamba3") ", "
                HY("2, 3", "gateloop") ", {\"mixer\": \"attention\"}",
                4, blocks, "hybrid ssm|mamba3|gateloop|attention", REC("gateloop"));
    check_model("{\"mixer\": \"ssm\"}, {\"mixer\": \"hybrid\", \"attention_heads\": [1, 2]}", 2,
                SSM_M2, "mamba2 + MLP | hybrid+mamba2", "\"layer\":\t\"Mamba2\"");
    check_config();
    check_mamba2_transfer();
    molt_ctx_free(ctx);
    return t_done("test_hybrid_rec");
}
