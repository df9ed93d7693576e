/*
 * test_typed_weights.c — molt_model_set_weight_dtype and the typed inference
 * paths (k_matmul_w over the models' molt_w views), for random Llama, Llamba,
 * Mamba-2 and hybrid models and stories260K (models/, if present):
 *   1 "f32" on a fresh model: prefill, stepwise decode and batched slots give
 *     bit-identical logits to the model before the call;
 *   2 bf16 / f16: the logits of the typed model equal the f32 path of the same
 *     model whose matrices were rounded to that type (the conversion is then
 *     exact: only the summation order differs) within 1e-5 relative, with the
 *     same greedy tokens over 32 steps, for prefill, single-sequence decode and
 *     batched slots; NaN written into the f32 master's matrices afterwards
 *     changes no bit (the typed paths read only the copy);
 *   3 switching back to "f32" restores bit-identical logits;
 *   4 a bad dtype string is MOLT_ERR_ARG and an allocation failure MOLT_ERR_OOM,
 *     each leaving the model unchanged and leaking nothing.
 */
#include "models/model.h"
#include "testmodel.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static molt_ctx *ctx;

#define NS 3     // slots
#define STEPS 32 // greedy steps
#define PLEN 5   // prompt tokens

static molt_model *make_model(const char *json, uint64_t seed) {
    return tm_random_model(ctx, json, seed, 0.05f);
}

// ----------------------------------------------------------------------------
// one run of the three inference paths: logits of a prefill, of a greedy
// single-sequence decode and of a greedy batched decode over NS slots

typedef struct run {
    float  *pre;               // [PLEN, V]  prefill, all positions
    float  *seq;               // [STEPS, V] single sequence, each step
    float  *slots;             // [STEPS, NS, V]
    int32_t seq_tok[STEPS], slot_tok[STEPS][NS];
    bool    ok;
} run;

static void run_free(run *r) {
    free(r->pre), free(r->seq), free(r->slots);
    memset(r, 0, sizeof *r);
}

static void prompt(int s, int V, int32_t *ids) {
    for (int i = 0; i < PLEN; i++)
        ids[i] = (int32_t)((7 + 13 * s + 5 * i * (s + 1)) % V);
}

static run run_model(const molt_model *m) {
    int V = m->cfg.vocab;
    run r = {0};
    r.pre = malloc(sizeof(float) * (size_t)PLEN * V);
    r.seq = malloc(sizeof(float) * (size_t)STEPS * V);
    r.slots = malloc(sizeof(float) * (size_t)STEPS * NS * V);
    float *lg = malloc(sizeof(float) * (size_t)NS * V);
    molt_seq *s = NULL;
    molt_slots *sl = NULL;
    int32_t ids[PLEN];
    bool ok = r.pre && r.seq && r.slots && lg &&
              molt_seq_new(ctx, m, PLEN + STEPS + 1, &s) == MOLT_OK &&
              molt_slots_new(ctx, m, NS, PLEN + STEPS + 1, &sl) == MOLT_OK;
    // prefill: all positions' logits; then greedy decode from its last row
    prompt(0, V, ids);
    ok = ok && molt_seq_feed(ctx, s, ids, PLEN, 1, r.pre) == MOLT_OK;
    int32_t t = ok ? t_argmax(r.pre + (size_t)(PLEN - 1) * V, V) : 0;
    for (int k = 0; ok && k < STEPS; k++) {
        r.seq_tok[k] = t;
        ok = molt_seq_feed(ctx, s, &t, 1, 0, r.seq + (size_t)k * V) == MOLT_OK;
        t = t_argmax(r.seq + (size_t)k * V, V);
    }
    // slots: different prompts, then greedy steps of all slots together
    int32_t slot[NS], tok[NS];
    for (int i = 0; ok && i < NS; i++) {
        prompt(i + 1, V, ids);
        slot[i] = i;
        ok = molt_slot_prefill(ctx, sl, i, ids, PLEN - i, 0, lg) == MOLT_OK; // ragged positions
        tok[i] = t_argmax(lg, V);
    }
    for (int k = 0; ok && k < STEPS; k++) {
        memcpy(r.slot_tok[k], tok, sizeof tok);
        float *out = r.slots + (size_t)k * NS * V;
        ok = molt_slots_feed(ctx, sl, NS, slot, tok, out) == MOLT_OK;
        for (int i = 0; i < NS; i++)
            tok[i] = t_argmax(out + (size_t)i * V, V);
    }
    CHECK(ok, "run: %s", molt_last_error(ctx));
    molt_seq_free(s);
    molt_slots_free(sl);
    free(lg);
    r.ok = ok;
    return r;
}

static bool run_same_bits(const run *a, const run *b, int V) {
    return a->ok && b->ok && !memcmp(a->pre, b->pre, sizeof(float) * (size_t)PLEN * V) &&
           !memcmp(a->seq, b->seq, sizeof(float) * (size_t)STEPS * V) &&
           !memcmp(a->slots, b->slots, sizeof(float) * (size_t)STEPS * NS * V) &&
           !memcmp(a->seq_tok, b->seq_tok, sizeof a->seq_tok) &&
           !memcmp(a->slot_tok, b->slot_tok, sizeof a->slot_tok);
}

// worst |a − b| / max |b| over each path; greedy tokens must agree
static double run_rel(const run *a, const run *b, int V, bool *same_tokens) {
    const float *pa[3] = {a->pre, a->seq, a->slots}, *pb[3] = {b->pre, b->seq, b->slots};
    size_t n[3] = {(size_t)PLEN * V, (size_t)STEPS * V, (size_t)STEPS * NS * V};
    double worst = 0;
    for (int p = 0; p < 3; p++) {
        double d = 0, s = 1e-6;
        for (size_t i = 0; i < n[p]; i++) {
            d = fmax(d, fabs((double)pa[p][i] - (double)pb[p][i]));
            s = fmax(s, fabs((double)pb[p][i]));
        }
        worst = fmax(worst, d / s);
    }
    *same_tokens = !memcmp(a->seq_tok, b->seq_tok, sizeof a->seq_tok) &&
                   !memcmp(a->slot_tok, b->slot_tok, sizeof a->slot_tok);
    return worst;
}

// Rounds the model's typed matrices (their f32 masters) to dt in place: the
// f32 path then multiplies by exactly the values the typed copy holds.
static bool is_typed_param(const char *name) {
    static const char *const suf[] = {"q_proj.weight",  "k_proj.weight",    "v_proj.weight",
                                      "o_proj.weight",  "gate_proj.weight", "up_proj.weight",
                                      "down_proj.weight", "mixer.in_proj.weight",
                                      "mixer.out_proj.weight", "lm_head.weight"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suf / sizeof *suf; i++) {
        size_t k = strlen(suf[i]);
        if (n >= k && !strcmp(name + n - k, suf[i]))
            return true;
    }
    return false;
}

static void round_matrices(molt_model *m, molt_dtype dt) {
    for (int i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        // tied: the head is the embedding, rounded through it
        bool head = m->cfg.tie_embeddings && m->data + p->offset == m->lm_head;
        if (!is_typed_param(p->name) && !head)
            continue;
        float *x = m->data + p->offset;
        for (size_t j = 0; j < p->numel; j++)
            x[j] = dt == MOLT_BF16 ? molt_bf16_to_f32(molt_f32_to_bf16(x[j]))
                                   : molt_f16_to_f32(molt_f32_to_f16(x[j]));
    }
}

// every typed view of m has type dt (and is non-NULL where its matrix is)
static bool views_are(const molt_model *m, molt_dtype dt) {
    bool ok = m->weight_dt == dt && m->lm_head_t.dt == dt && m->lm_head_t.data;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const layer_weights *w = &m->layers[l];
        const molt_w v[9] = {w->t_q,    w->t_k,    w->t_v,    w->t_o,           w->t_gate,
                             w->t_up,   w->t_down, w->ssm.in_proj_t, w->ssm.out_proj_t};
        const float *f[9] = {w->wq,     w->wk,     w->wv,     w->wo,          w->w_gate,
                             w->w_up,   w->w_down, w->ssm.in_proj, w->ssm.out_proj};
        for (int i = 0; i < 9; i++)
            ok &= f[i] ? v[i].dt == dt && v[i].data &&
                             (dt != MOLT_F32 || v[i].data == (const void *)f[i])
                       : v[i].data == NULL;
    }
    return ok;
}

// ----------------------------------------------------------------------------

static void check_errors(molt_model *m, const run *want) {
    int V = m->cfg.vocab;
    void *buf = m->wbuf;
    molt_dtype dt = m->weight_dt;
    const char *bad[] = {"", "fp32", "bf32", "F16", "q8"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(molt_model_set_weight_dtype(ctx, m, bad[i]) == MOLT_ERR_ARG,
              "dtype '%s' refused", bad[i]);
    CHECK(molt_model_set_weight_dtype(ctx, m, NULL) == MOLT_ERR_ARG, "NULL dtype refused");
    CHECK(strstr(molt_last_error(ctx), "bf16") != NULL, "the error names the choices: %s",
          molt_last_error(ctx));
    CHECK(m->wbuf == buf && views_are(m, dt), "a refused dtype changes nothing");
    // allocation failures: OOM, unchanged, no leak; then it succeeds
    int64_t live = molt__alloc_live();
    int fails = 0, leaks = 0, bad_st = 0;
    molt_status st = MOLT_ERR_OOM;
    for (int64_t n = 1; st != MOLT_OK && n < 20; n++) {
        molt__alloc_fail_after(n);
        st = molt_model_set_weight_dtype(ctx, m, "f16");
        molt__alloc_fail_after(0);
        if (st == MOLT_OK)
            break;
        fails++;
        bad_st += st != MOLT_ERR_OOM || m->wbuf != buf || !views_are(m, dt);
        leaks += molt__alloc_live() != live;
    }
    CHECK(st == MOLT_OK && fails >= 2, "f16 after %d failed allocations", fails);
    CHECK(bad_st == 0, "%d failures were not OOM or changed the model", bad_st);
    CHECK(leaks == 0, "%d failures leaked", leaks);
    CHECK(views_are(m, MOLT_F16), "f16 views");
    CHECK(molt_model_set_weight_dtype(ctx, m, molt_dtype_name(dt)) == MOLT_OK, "back");
    run r = run_model(m);
    CHECK(run_same_bits(&r, want, V), "after the error checks: the same bits as before");
    run_free(&r);
}

static void check_model(const char *name, molt_model *m) {
    if (!m)
        return;
    int V = m->cfg.vocab;
    // 1  f32 views on a fresh model: the bits of the model before the call
    CHECK(views_are(m, MOLT_F32) && !m->wbuf, "%s: fresh model has f32 views", name);
    run base = run_model(m);
    CHECK(molt_model_set_weight_dtype(ctx, m, "f32") == MOLT_OK, "%s: f32", name);
    run r1 = run_model(m);
    CHECK(run_same_bits(&r1, &base, V), "%s: f32 views: bit-identical logits", name);
    run_free(&r1);
    for (molt_dtype dt = MOLT_BF16; dt <= MOLT_F16; dt++) {
        const char *dn = molt_dtype_name(dt);
        // 2  the typed model vs the f32 path of the same model with its matrices
        //    rounded to dt (a tied head rounds the embedding too: both paths read it)
        float *master = malloc(sizeof(float) * m->n_floats);
        memcpy(master, m->data, sizeof(float) * m->n_floats);
        round_matrices(m, dt);
        run ref = run_model(m);
        CHECK(molt_model_set_weight_dtype(ctx, m, dn) == MOLT_OK, "%s: %s: %s", name, dn,
              molt_last_error(ctx));
        CHECK(views_are(m, dt) && m->wbuf, "%s: %s views", name, dn);
        run typed = run_model(m);
        bool same;
        double rel = run_rel(&typed, &ref, V, &same);
        CHECK(rel <= 1e-5, "%s: %s vs rounded f32: %.2e relative", name, dn, rel);
        CHECK(same, "%s: %s: the same greedy tokens over %d steps (prefill, decode, slots)",
              name, dn, STEPS);
        double moved = run_rel(&typed, &base, V, &same);
        printf("  %-9s %-4s vs f32 of its rounded matrices: %.2e relative, same greedy tokens; "
               "rounding alone moves them %.2e\n",
               name, dn, rel, moved);
        // the typed paths read the copy, not the master: NaN in the master's
        // matrices (not a tied head: it is the embedding) changes no bit
        for (int i = 0; i < m->n_params; i++)
            if (is_typed_param(m->params[i].name))
                for (size_t j = 0; j < m->params[i].numel; j++)
                    m->data[m->params[i].offset + j] = NAN;
        run again = run_model(m);
        CHECK(run_same_bits(&again, &typed, V), "%s: %s: the typed paths read only the copy",
              name, dn);
        run_free(&again);
        memcpy(m->data, master, sizeof(float) * m->n_floats);
        free(master);
        CHECK(molt_model_set_weight_dtype(ctx, m, "f32") == MOLT_OK && !m->wbuf &&
                  views_are(m, MOLT_F32),
              "%s: back to f32", name);
        // 3  back to f32 (unrounded master): the original bits
        run back = run_model(m);
        CHECK(run_same_bits(&back, &base, V), "%s: after %s, f32 gives the original bits", name,
              dn);
        run_free(&back);
        run_free(&ref);
        run_free(&typed);
    }
    // 4  errors, from f32 and from bf16
    check_errors(m, &base);
    CHECK(molt_model_set_weight_dtype(ctx, m, "bf16") == MOLT_OK, "%s: bf16", name);
    run tb = run_model(m);
    check_errors(m, &tb);
    run_free(&tb);
    run_free(&base);
}

int main(void) {
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, 2);
    for (size_t i = 0; i < TM_N_ARCH_CFGS; i++) {
        molt_model *m = make_model(tm_arch_cfgs[i][1], 11 + i);
        check_model(tm_arch_cfgs[i][0], m);
        molt_model_free(m); // frees the typed buffer (bf16 here): the leak checks of make asan
    }
    const char *path = "models/stories260K/stories260K.bin";
    if (t_exists(path)) {
        molt_model *m = NULL;
        molt_load_opts o = {0};
        o.no_tokenizer = 1;
        CHECK(molt_model_load(ctx, path, &o, &m) == MOLT_OK, "load: %s", molt_last_error(ctx));
        check_model("stories", m);
        molt_model_free(m);
    } else {
        printf("  (stories260K not present: skipped)\n");
    }
    molt_ctx_free(ctx);
    return t_done("test_typed_weights");
}
