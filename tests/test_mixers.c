/*
 * test_mixers.c — the mixer registry (mixers/registry.h) and what each
 * mixer's table gives the model layer:
 *   - every entry of MOLT_MIXERS has every mixer_vt function (a composite
 *     has no matrix of its own: its parts do), its name is its config name,
 *     and names round-trip through layer_kind_name / layer_kind_parse;
 *   - declare + bind of a one-layer model of each kind: every declared
 *     parameter of the layer is bound to a view of m->layers[0], and every
 *     bound view is a declared parameter; the info counts agree with the
 *     state sizing (kv_heads, rec_floats);
 *   - a model mixing kinds per layer (attention, ssm, hybrid, a second ssm
 *     layer with another d_state through the per-layer config, gateloop,
 *     mamba3) builds,
 *     its prefill equals feeding token by token, and its batched decode over
 *     slots equals single decode; config.json refuses to write layers whose
 *     recurrent configs differ, and round-trips them when they agree.
 * Random models (no files needed).
 */
#include "mixers/mixer.h"
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static molt_ctx *ctx;

// ---------------------------------------------------------------------------
// the registry

static void check_registry(void) {
    static const char *const list[] = {
#define NAME(K, name, vt) #name,
        MOLT_MIXERS(NAME)
#undef NAME
    };
    int n = (int)(sizeof list / sizeof list[0]);
    CHECK(n == LAYER_KIND_COUNT && n >= 3, "MOLT_MIXERS lists %d mixers, layer_kind has %d", n,
          LAYER_KIND_COUNT);
    CHECK(LAYER_ATTN == 0 && LAYER_SSM == 1 && LAYER_HYBRID == 2, "enum values kept");
    for (int k = 0; k < n; k++) {
        const mixer_vt *v = mixer_of((layer_kind)k);
        layer_kind back = LAYER_KIND_COUNT;
        CHECK(v && v->name && strcmp(v->name, list[k]) == 0, "kind %d: table name %s, list %s", k,
              v && v->name ? v->name : "(null)", list[k]);
        CHECK(strcmp(layer_kind_name((layer_kind)k), list[k]) == 0, "layer_kind_name(%d)", k);
        CHECK(layer_kind_parse(list[k], &back) && back == (layer_kind)k, "parse %s", list[k]);
        bool all = v->check && v->declare && v->bind && v->init && v->typed && v->info &&
                   v->rec_floats && v->kv_heads && v->work_floats && v->forward &&
                   v->rows_work_floats && v->step_rows && v->act_floats &&
                   v->train_work_floats && v->train_forward && v->train_backward && v->units &&
                   v->out_weights;
        CHECK(all, "%s: a mixer_vt function is missing", list[k]);
        CHECK(v->n_parts >= 1 && v->n_parts <= 2, "%s: %d parts", list[k], v->n_parts);
        if (v->n_parts == 1)
            CHECK(v->part[0] == v && v->mat_heads && v->mat_work_floats && v->materialize,
                  "%s: a plain mixer lists itself and has a mixing matrix", list[k]);
        for (int p = 0; p < v->n_parts; p++)
            CHECK(v->part[p] && v->part[p]->n_parts == 1, "%s: part %d is a plain mixer",
                  list[k], p);
    }
    layer_kind k = LAYER_SSM;
    CHECK(!layer_kind_parse("mamba9", &k) && !layer_kind_parse("", &k) && k == LAYER_SSM,
          "unknown names are refused and leave the kind alone");
    CHECK(strcmp(layer_kind_name(LAYER_KIND_COUNT), "?") == 0, "an invalid kind is named ?");
}

// ---------------------------------------------------------------------------
// a molt_hybrid model of the given per-layer mixers (hybrid layers keep heads 1, 3)

static bool cfg_of(const layer_kind *kinds, int L, model_cfg *c) {
    char layers[1024] = "", json[2048];
    for (int l = 0; l < L; l++)
        snprintf(layers + strlen(layers), sizeof layers - strlen(layers),
                 "%s{\"mixer\": \"%s\"%s}", l ? ", " : "", layer_kind_name(kinds[l]),
                 kinds[l] == LAYER_HYBRID ? ", \"attention_heads\": [1, 3]" : "");
    snprintf(json, sizeof json,
             "{\"model_type\": \"molt_hybrid\", \"vocab_size\": 97, \"d_model\": 64,"
             " \"n_layer\": %d, \"norm_epsilon\": 1e-5, \"mlp_cfg\": {\"intermediate_size\": 96},"
             " \"ssm_cfg\": {\"d_state\": 16, \"n_v_heads\": 8, \"n_qk_heads\": 4,"
             " \"chunk_size\": 8, \"bias\": true},"
             " \"attn_cfg\": {\"num_attention_heads\": 8, \"num_key_value_heads\": 4,"
             " \"head_dim\": 8, \"attention_bias\": true},"
             " \"gateloop_cfg\": {\"n_heads\": 4, \"head_dim\": 16, \"chunk_size\": 8},"
             " \"mamba3_cfg\": {\"d_state\": 16, \"expand\": 1, \"headdim\": 16,"
             " \"chunk_size\": 8}, \"layers\": [%s]}",
             L, layers);
    if (model_cfg_from_json(ctx, "test", json, strlen(json), c) != MOLT_OK) {
        CHECK(0, "config: %s", molt_last_error(ctx));
        return false;
    }
    return true;
}

static molt_model *build(model_cfg *c, uint64_t seed) {
    molt_model *m = NULL;
    CHECK(model_alloc(ctx, c, &m) == MOLT_OK, "alloc: %s", molt_last_error(ctx));
    if (m) {
        model_init_random(m, seed);
        t_seed(seed); // off the identity init: gates, conv, decays all matter
        for (size_t i = 0; i < m->n_floats; i++)
            m->data[i] += t_normal() * 0.05f;
    }
    return m;
}

// The pointers stored in layer_weights (its views, typed views' data too).
static int layer_ptrs(const layer_weights *w, const float **p, int cap) {
    int n = 0;
    const unsigned char *b = (const unsigned char *)w;
    for (size_t o = 0; o + sizeof(void *) <= sizeof *w && n < cap; o += sizeof(void *)) {
        const float *q;
        memcpy(&q, b + o, sizeof q);
        p[n++] = q;
    }
    return n;
}

static void check_declare_bind(void) {
    for (int k = 0; k < LAYER_KIND_COUNT; k++) {
        layer_kind kind = (layer_kind)k;
        const char *name = layer_kind_name(kind);
        model_cfg c;
        if (!cfg_of(&kind, 1, &c))
            continue;
        molt_model *m = build(&c, 3);
        model_free_cfg(&c);
        if (!m)
            continue;
        const float *p[256];
        int np = layer_ptrs(&m->layers[0], p, 256), n_layer_params = 0;
        for (int i = 0; i < m->n_params; i++) {
            const param_info *pi = &m->params[i];
            if (strncmp(pi->name, "backbone.layers.0.", 18) != 0)
                continue;
            n_layer_params++;
            bool bound = false;
            for (int j = 0; j < np; j++)
                bound |= p[j] == m->data + pi->offset;
            CHECK(bound, "%s: %s is declared but not bound", name, pi->name);
        }
        int n_views = 0;
        for (int j = 0; j < np; j++) {
            if (!p[j] || p[j] < m->data || p[j] >= m->data + m->n_floats)
                continue;
            bool declared = false;
            for (int i = 0; i < m->n_params; i++)
                declared |= p[j] == m->data + m->params[i].offset;
            CHECK(declared, "%s: a bound view is no declared parameter", name);
            n_views++;
        }
        const mixer_vt *v = mixer_of(kind);
        // norms + MLP (5) + the mixer's own: attention 4 weights + 4 biases, the
        // SSM (Llamba) in_proj, its bias, conv, conv bias, z_bias, D, out_proj, bias;
        // Mamba-3 (SISO): in_proj, dt_bias, B/C bias, B/C norm, D, out_proj; GateLoop
        // in_proj, a_bias, g_bias, out_proj
        int want = 5 + (kind == LAYER_HYBRID     ? 8 + 8 + 2
                        : kind == LAYER_GATELOOP ? 4
                                                 : 8);
        CHECK(n_layer_params == want, "%s: %d layer parameters, want %d", name, n_layer_params,
              want);
        CHECK(n_views >= n_layer_params, "%s: %d views for %d parameters", name, n_views,
              n_layer_params);
        molt_model_info in;
        molt_model_get_info(m, &in);
        int64_t kv = 2 * (int64_t)v->kv_heads(m, 0) * m->cfg.head_dim * (int64_t)sizeof(float);
        int64_t st = (int64_t)v->rec_floats(m, 0) * (int64_t)sizeof(float);
        CHECK(in.kv_bytes_per_token == kv && in.state_bytes == st,
              "%s: info kv %lld state %lld, sizing says %lld %lld", name,
              (long long)in.kv_bytes_per_token, (long long)in.state_bytes, (long long)kv,
              (long long)st);
        CHECK(in.n_attn_heads_kept == (kind == LAYER_ATTN ? 8 : kind == LAYER_HYBRID ? 2 : 0),
              "%s: %d attention heads kept", name, in.n_attn_heads_kept);
        CHECK((in.d_state == 16) == (kind != LAYER_ATTN), "%s: d_state %d", name, in.d_state);
        int nt = v->typed(m, 0, NULL);
        CHECK(nt == (kind == LAYER_ATTN ? 4 : kind == LAYER_HYBRID ? 6 : 2), "%s: %d typed", name,
              nt);
        molt_model_free(m);
    }
}

// ---------------------------------------------------------------------------
// kinds mixed per layer, and two SSM layers with different d_state

#define NS 4
#define STEPS 10

static void check_mixed(void) {
    const layer_kind kinds[] = {LAYER_ATTN, LAYER_SSM,      LAYER_HYBRID,
                                LAYER_SSM,  LAYER_GATELOOP, LAYER_MAMBA3};
    model_cfg c;
    if (!cfg_of(kinds, 6, &c))
        return;
    // the uniform config writes one ssm_cfg and reads back into every layer
    char *js = NULL;
    model_cfg back;
    CHECK(model_cfg_to_json(ctx, &c, NULL, &js) == MOLT_OK, "write: %s", molt_last_error(ctx));
    if (js) {
        CHECK(model_cfg_from_json(ctx, "back", js, strlen(js), &back) == MOLT_OK, "read: %s",
              molt_last_error(ctx));
        for (int l = 0; l < 6; l++)
            CHECK(memcmp(layer_ssm(&back, l), layer_ssm(&c, l), sizeof(ssm_cfg)) == 0,
                  "layer %d's ssm config round-trips", l);
        model_free_cfg(&back);
        molt__free(js);
        js = NULL;
    }
    // layer 3: d_state 8 (layer 1 keeps 16)
    layer_ssm_mut(&c, 3)->N = 8;
    CHECK(model_cfg_check(ctx, "mixed", &c) == MOLT_OK, "check: %s", molt_last_error(ctx));
    CHECK(model_cfg_to_json(ctx, &c, NULL, &js) == MOLT_ERR_UNSUPPORTED &&
              strstr(molt_last_error(ctx), "differ"),
          "differing recurrent configs are refused by config.json (%s)", molt_last_error(ctx));
    layer_ssm_mut(&c, 3)->N = 0;
    CHECK(model_cfg_check(ctx, "bad", &c) == MOLT_ERR_SHAPE, "a layer's own ssm config is checked");
    layer_ssm_mut(&c, 3)->N = 8;
    molt_model *m = build(&c, 11);
    model_free_cfg(&c);
    if (!m)
        return;
    param_info *a = model_param(m, "backbone.layers.1.mixer.in_proj.weight"),
               *b = model_param(m, "backbone.layers.3.mixer.in_proj.weight");
    // DiscreteMamba2 in_proj rows: x Di, B and C G·N each, z Di, A_log H
    CHECK(a && b && a->shape[0] == 64 + 2 * 4 * 16 + 64 + 8 &&
              b->shape[0] == 64 + 2 * 4 * 8 + 64 + 8,
          "per-layer d_state sizes in_proj: %lld, %lld rows", a ? (long long)a->shape[0] : -1LL,
          b ? (long long)b->shape[0] : -1LL);
    CHECK(mixer_of(LAYER_SSM)->rec_floats(m, 1) > mixer_of(LAYER_SSM)->rec_floats(m, 3),
          "per-layer d_state sizes the state");

    // prefill == token by token
    int V = m->cfg.vocab, n = 19;
    int32_t ids[32];
    t_seed(5);
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(t_uniform(0, 1) * (float)(V - 1));
    float *pre = tm_logits(ctx, m, ids, n, false), *step = tm_logits(ctx, m, ids, n, true);
    bool finite = pre != NULL;
    for (size_t i = 0; pre && i < (size_t)n * V; i++)
        finite &= isfinite(pre[i]) != 0;
    CHECK(finite && step, "mixed model runs forward with finite logits");
    if (pre && step)
        t_close("mixed prefill vs step", pre, step, (size_t)n * V, -1, 1e-5);
    free(pre);
    free(step);

    // batched decode over slots == each sequence alone
    int cap = 48;
    molt_slots *sl = NULL;
    molt_seq *seq[NS] = {0};
    CHECK(molt_slots_new(ctx, m, NS, cap, &sl) == MOLT_OK, "slots: %s", molt_last_error(ctx));
    for (int i = 0; i < NS; i++)
        CHECK(molt_seq_new(ctx, m, cap, &seq[i]) == MOLT_OK, "seq: %s", molt_last_error(ctx));
    float *lb = malloc(sizeof(float) * (size_t)NS * V), *ls = malloc(sizeof(float) * (size_t)V);
    int32_t next[NS], slot[NS];
    double worst = 0;
    int same = 1;
    for (int i = 0; sl && lb && ls && i < NS; i++) {
        int len = 1 + 5 * i;
        slot[i] = i;
        CHECK(molt_slot_prefill(ctx, sl, i, ids, len, 0, lb) == MOLT_OK, "prefill: %s",
              molt_last_error(ctx));
        CHECK(molt_seq_feed(ctx, seq[i], ids, len, 0, ls) == MOLT_OK, "feed");
        CHECK(t_rel_diff(lb, ls, (size_t)V) == 0.0, "slot %d prefill differs from a molt_seq", i);
        next[i] = t_argmax(ls, V);
    }
    for (int s = 0; sl && lb && ls && s < STEPS; s++) {
        CHECK(molt_slots_feed(ctx, sl, NS, slot, next, lb) == MOLT_OK, "step: %s",
              molt_last_error(ctx));
        for (int i = 0; i < NS; i++) {
            molt_seq_feed(ctx, seq[i], &next[i], 1, 0, ls);
            worst = fmax(worst, t_rel_diff(lb + (size_t)i * V, ls, (size_t)V));
            same &= t_argmax(lb + (size_t)i * V, V) == t_argmax(ls, V);
            next[i] = t_argmax(ls, V);
        }
    }
    CHECK(sl && lb && ls && worst < 1e-5 && same,
          "mixed: batched decode differs from single decode by %.3g (same tokens %d)", worst,
          same);
    printf("mixed attention|ssm N16|hybrid|ssm N8|gateloop|mamba3: batch of %d vs single over %d "
           "steps: max rel diff %.2g\n",
           NS, STEPS, worst);
    free(lb);
    free(ls);
    for (int i = 0; i < NS; i++)
        molt_seq_free(seq[i]);
    molt_slots_free(sl);
    molt_model_free(m);
}

int main(void) {
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, getenv("MOLT_TEST_THREADS") ? atoi(getenv("MOLT_TEST_THREADS")) : 2);
    check_registry();
    check_declare_bind();
    check_mixed();
    molt_ctx_free(ctx);
    return t_done("test_mixers");
}
