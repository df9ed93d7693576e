/*
 * test_kv_score.c — the key-value probe's scoring (analysis/kv_score.c) and
 * the sequence snapshots it walks its trie with (models/forward.h).
 *   - seq_snap: after going down one continuation and restoring, another
 *     continuation's logits are bit-identical to feeding it from a fresh
 *     sequence — on kv-llama-2m (attention), mamba2-random (HF Mamba-2) and a
 *     random hybrid (SSM, hybrid and attention layers).
 *   - kv-llama-2m (one token per value): the trie walk, forced on, predicts
 *     exactly what the single-token fast path does, with the same
 *     log-probabilities, for the kv task and MQAR.
 *   - stories260K (values of 1-2 digits, 1-2 tokens: the candidate set is
 *     closed with "\n"): every candidate's log-probability from the trie walk
 *     equals a brute-force prefill of context + candidate, and the predictions
 *     are its argmax; for the kv task and for MQAR's later queries. The same
 *     seed gives bit-identical scores, another seed other prompts.
 *   - a failing allocation anywhere in building / scoring leaks nothing.
 *   - bad query counts fail with a clear message.
 */
#include "analysis/kv_probe.h"
#include "core/core.h"
#include "models/forward.h"
#include "models/model.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static molt_ctx *ctx;

static const char *HYBRID_JSON =
    "{\"model_type\": \"molt_hybrid\", \"vocab_size\": 96, \"tie_embeddings\": true,"
    " \"pad_vocab_size_multiple\": 1, \"lm_head_bias\": false, \"d_model\": 32, \"n_layer\": 3,"
    " \"norm_epsilon\": 1e-5, \"mlp_cfg\": {\"intermediate_size\": 64, \"bias\": false,"
    " \"act_fn\": \"silu\"}, \"ssm_cfg\": {\"d_state\": 8, \"n_v_heads\": 4, \"n_qk_heads\": 2,"
    " \"expand\": 1, \"chunk_size\": 16, \"activation\": \"identity\", \"bias\": false,"
    " \"conv_bias\": true, \"d_conv\": 4}, \"attn_cfg\": {\"num_attention_heads\": 6,"
    " \"num_key_value_heads\": 2, \"head_dim\": 8, \"rope_theta\": 10000.0,"
    " \"max_position_embeddings\": 128}, \"layers\": [{\"mixer\": \"ssm\"}, {\"mixer\": \"hybrid\","
    " \"attention_heads\": [1, 4]}, {\"mixer\": \"attention\"}], \"bos_token_id\": 0,"
    " \"eos_token_id\": 1}";

static molt_model *load(const char *rel) {
    molt_model *m = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s", t_shared(rel));
    if (!t_have(path, "snapshots, fast path vs trie, bad queries on this model"))
        return NULL;
    CHECK(molt_model_load(ctx, path, NULL, &m) == MOLT_OK, "%s: %s", rel, molt_last_error(ctx));
    return m;
}

static molt_model *random_hybrid(void) {
    model_cfg c;
    molt_model *m = NULL;
    if (model_cfg_from_json(ctx, "hybrid", HYBRID_JSON, strlen(HYBRID_JSON), &c) != MOLT_OK) {
        CHECK(0, "hybrid config: %s", molt_last_error(ctx));
        return NULL;
    }
    CHECK(model_alloc(ctx, &c, &m) == MOLT_OK, "alloc: %s", molt_last_error(ctx));
    model_free_cfg(&c);
    if (m) {
        model_init_random(m, 5);
        t_seed(5);
        for (size_t i = 0; i < m->n_floats; i++)
            m->data[i] += t_normal() * 0.05f; // gates, conv and decays away from their init
    }
    return m;
}

// ----------------------------------------------------------------------------
// snapshots

// Feeds ids one token at a time; the last logits into lg.
static bool feed_steps(molt_seq *s, const int32_t *ids, int n, float *lg) {
    for (int i = 0; i < n; i++)
        if (molt_seq_feed(ctx, s, &ids[i], 1, 0, lg) != MOLT_OK)
            return false;
    return true;
}

static void check_snapshots(const molt_model *m, const char *label) {
    int V = m->cfg.vocab, P = 21;
    int32_t prompt[21], a[4], b[3];
    t_seed(7);
    for (int i = 0; i < P; i++)
        prompt[i] = (int32_t)(t_uniform(0, 1) * (float)(V - 1));
    for (int i = 0; i < 4; i++)
        a[i] = (int32_t)(t_uniform(0, 1) * (float)(V - 1));
    for (int i = 0; i < 3; i++)
        b[i] = (int32_t)(t_uniform(0, 1) * (float)(V - 1));
    b[0] = a[0]; // b shares a's first token: restore to depth 1 below
    molt_seq *s = NULL;
    CHECK(molt_seq_new(ctx, m, 64, &s) == MOLT_OK, "%s: seq: %s", label, molt_last_error(ctx));
    if (!s)
        return;
    size_t nr = seq_snap_floats(s);
    float *rec = malloc(sizeof(float) * (2 * nr + 1)), *lg = malloc(sizeof(float) * (size_t)V),
          *want = malloc(sizeof(float) * (size_t)V);
    seq_snap s0 = {0, rec}, s1 = {0, rec + nr};
    // reference: prompt (one prefill), then b token by token
    bool ok = molt_seq_feed(ctx, s, prompt, P, 0, lg) == MOLT_OK && feed_steps(s, b, 3, want);
    // prompt; snapshot; a[0]; snapshot; the rest of a; back to depth 1; b[1..]
    molt_seq_reset(s);
    ok = ok && molt_seq_feed(ctx, s, prompt, P, 0, lg) == MOLT_OK;
    seq_snap_save(s, &s0);
    ok = ok && feed_steps(s, a, 1, lg);
    seq_snap_save(s, &s1);
    ok = ok && feed_steps(s, a + 1, 3, lg);
    seq_snap_restore(s, &s1);
    ok = ok && feed_steps(s, b + 1, 2, lg);
    CHECK(ok, "%s: feed: %s", label, molt_last_error(ctx));
    CHECK(!memcmp(lg, want, sizeof(float) * (size_t)V), "%s: restored to depth 1: max diff %g",
          label, t_max_abs(lg, want, (size_t)V));
    // back to the prompt, all of b
    seq_snap_restore(s, &s0);
    CHECK(molt_seq_pos(s) == P, "%s: pos %d after restore", label, molt_seq_pos(s));
    CHECK(feed_steps(s, b, 3, lg) && !memcmp(lg, want, sizeof(float) * (size_t)V),
          "%s: restored to the prompt: max diff %g", label, t_max_abs(lg, want, (size_t)V));
    // without restoring the recurrent state, a model with one must differ
    if (nr) {
        seq_snap_restore(s, &s0);
        feed_steps(s, a, 4, lg);
        s->pos = P;
        feed_steps(s, b, 3, lg);
        CHECK(memcmp(lg, want, sizeof(float) * (size_t)V) != 0, "%s: state not restored yet equal",
              label);
    }
    printf("snapshots ok: %s (%zu recurrent floats)\n", label, nr);
    free(rec);
    free(lg);
    free(want);
    molt_seq_free(s);
}

// ----------------------------------------------------------------------------
// scoring

static const char *task(void) {
    static char path[4096];
    snprintf(path, sizeof path, "%s", t_shared("models/kv-llama-2m/kv_task.json"));
    return path;
}

// Predictions and log-probabilities with the fast path and with the trie forced.
static void fast_vs_trie(const molt_model *m, int pairs, int queries, int examples) {
    kv_set set;
    if (kv_set_build(ctx, m, task(), pairs, queries, examples, 9, false, &set) != MOLT_OK) {
        CHECK(0, "build: %s", molt_last_error(ctx));
        return;
    }
    CHECK(set.ex[0].q[0].c.max_len == 1 && !set.ex[0].q[0].c.closed, "kv-llama values: 1 token");
    size_t na = (size_t)examples * queries, nl = na * set.n_values;
    int32_t *p1 = malloc(sizeof(int32_t) * na), *p2 = malloc(sizeof(int32_t) * na);
    double *l1 = malloc(sizeof(double) * nl), *l2 = malloc(sizeof(double) * nl);
    CHECK(kv_set_predict(ctx, m, &set, NULL, p1, l1) == MOLT_OK, "%s", molt_last_error(ctx));
    set.exact = true;
    CHECK(kv_set_predict(ctx, m, &set, NULL, p2, l2) == MOLT_OK, "%s", molt_last_error(ctx));
    int right = 0, same = !memcmp(p1, p2, sizeof(int32_t) * na);
    double dl = 0;
    for (size_t i = 0; i < nl; i++)
        dl = fmax(dl, fabs(l1[i] - l2[i]));
    for (int e = 0; e < examples; e++)
        for (int j = 0; j < queries; j++)
            right += p1[(size_t)e * queries + j] == set.ex[e].q[j].answer;
    CHECK(same, "%d pairs, %d queries: the trie walk predicts differently", pairs, queries);
    CHECK(dl == 0, "%d pairs, %d queries: log-probabilities differ by %g", pairs, queries, dl);
    int32_t c1 = 0, c2 = 0;
    CHECK(kv_set_score(ctx, m, &set, NULL, &c2) == MOLT_OK && c2 == right, "count %d vs %d", c2,
          right);
    set.exact = false;
    CHECK(kv_set_score(ctx, m, &set, NULL, &c1) == MOLT_OK && c1 == right, "count %d vs %d", c1,
          right);
    CHECK(right > (int)na / 10, "%d pairs: %d of %zu right, expected far above chance", pairs,
          right, na);
    printf("kv-llama-2m %d pairs × %d queries: fast path == trie (%d of %zu right)\n", pairs,
           queries, right, na);
    free(p1);
    free(p2);
    free(l1);
    free(l2);
    kv_set_free(&set);
}

// log P(cand | ids[0..at)) by one prefill of context + candidate.
static double brute_logp(const molt_model *m, const int32_t *ids, int at, const int32_t *c, int L) {
    int V = m->cfg.vocab;
    int32_t *all = malloc(sizeof(int32_t) * (size_t)(at + L));
    float *lg = malloc(sizeof(float) * (size_t)(at + L) * V);
    memcpy(all, ids, sizeof(int32_t) * (size_t)at);
    memcpy(all + at, c, sizeof(int32_t) * (size_t)L);
    molt_seq *s = NULL;
    double sum = NAN;
    if (molt_seq_new(ctx, m, at + L, &s) == MOLT_OK &&
        molt_seq_feed(ctx, s, all, at + L, 1, lg) == MOLT_OK) {
        sum = 0;
        for (int d = 0; d < L; d++) {
            const float *r = lg + (size_t)(at - 1 + d) * V;
            double mx = r[0], z = 0;
            for (int i = 1; i < V; i++)
                mx = fmax(mx, (double)r[i]);
            for (int i = 0; i < V; i++)
                z += exp((double)r[i] - mx);
            sum += (double)r[c[d]] - mx - log(z);
        }
    }
    molt_seq_free(s);
    free(all);
    free(lg);
    return sum;
}

static void multi_token(const molt_model *m, int pairs, int queries, int examples) {
    kv_set set;
    if (kv_set_build(ctx, m, task(), pairs, queries, examples, 2, false, &set) != MOLT_OK) {
        CHECK(0, "build: %s", molt_last_error(ctx));
        return;
    }
    const kv_cands *c = &set.ex[0].q[0].c;
    CHECK(c->closed && c->max_len == 3, "stories values: closed %d, longest %d", c->closed,
          c->max_len);
    CHECK(c->off[5] - c->off[4] == 2 && c->off[43] - c->off[42] == 3 &&
              c->tok[c->off[4]] == c->tok[c->off[42]],
          "4 and 42 should be '4' '\\n' and '4' '2' '\\n'");
    int V = set.n_values;
    size_t na = (size_t)examples * queries;
    int32_t *pred = malloc(sizeof(int32_t) * na);
    double *lp = malloc(sizeof(double) * na * V), dmax = 0;
    CHECK(kv_set_predict(ctx, m, &set, NULL, pred, lp) == MOLT_OK, "%s", molt_last_error(ctx));
    int agree = 0;
    for (int e = 0; e < examples; e++)
        for (int j = 0; j < queries; j++) {
            const kv_query *q = &set.ex[e].q[j];
            const double *l = lp + ((size_t)e * queries + j) * V;
            int best = 0;
            for (int v = 0; v < V; v++) {
                double b = brute_logp(m, set.ex[e].ids, q->at, q->c.tok + q->c.off[v],
                                      q->c.off[v + 1] - q->c.off[v]);
                dmax = fmax(dmax, fabs(b - l[v]));
                best = l[v] > l[best] ? v : best;
            }
            agree += best == pred[(size_t)e * queries + j];
        }
    CHECK(dmax < 1e-3, "trie log-probabilities differ from brute force by %g", dmax);
    CHECK(agree == (int)na, "%d of %zu predictions are the argmax", agree, na);
    printf("stories260K %d pairs × %d queries: trie == brute force (max diff %.2g)\n", pairs,
           queries, dmax);
    free(pred);
    free(lp);
    kv_set_free(&set);
}

// The same seed gives the same prompts and bit-identical scores; another seed
// other prompts.
static void deterministic(const molt_model *m) {
    kv_set a, b, c;
    bool ok = kv_set_build(ctx, m, task(), 3, 2, 3, 4, false, &a) == MOLT_OK &&
              kv_set_build(ctx, m, task(), 3, 2, 3, 4, false, &b) == MOLT_OK &&
              kv_set_build(ctx, m, task(), 3, 2, 3, 5, false, &c) == MOLT_OK;
    CHECK(ok, "build: %s", molt_last_error(ctx));
    if (!ok)
        return;
    size_t nl = 6 * (size_t)a.n_values;
    double *la = malloc(sizeof(double) * nl), *lb = malloc(sizeof(double) * nl);
    int32_t pa[6], pb[6];
    CHECK(kv_set_predict(ctx, m, &a, NULL, pa, la) == MOLT_OK &&
              kv_set_predict(ctx, m, &b, NULL, pb, lb) == MOLT_OK,
          "%s", molt_last_error(ctx));
    CHECK(!memcmp(la, lb, sizeof(double) * nl) && !memcmp(pa, pb, sizeof pa),
          "same seed, different scores");
    bool same = true;
    for (int e = 0; e < 3; e++)
        same &= a.ex[e].n == c.ex[e].n &&
                !memcmp(a.ex[e].ids, c.ex[e].ids, sizeof(int32_t) * (size_t)a.ex[e].n);
    CHECK(!same, "another seed drew the same prompts");
    free(la);
    free(lb);
    kv_set_free(&a);
    kv_set_free(&b);
    kv_set_free(&c);
}

// Failing the n-th allocation anywhere in building and scoring a set fails
// cleanly, leaking nothing (n dense at first, then sparser).
static void alloc_failures(const molt_model *m) {
    int64_t live = molt__alloc_live();
    int tries = 0, leaks = 0, done = 0;
    for (int64_t n = 1; !done && tries < 400; n += 1 + n / 16, tries++) {
        molt__alloc_fail_after(n);
        kv_set set;
        int32_t correct = 0;
        molt_status st = kv_set_build(ctx, m, task(), 2, 2, 2, 1, false, &set);
        if (st == MOLT_OK) {
            st = kv_set_score(ctx, m, &set, NULL, &correct);
            kv_set_free(&set);
        }
        molt__alloc_fail_after(0);
        done = st == MOLT_OK;
        leaks += molt__alloc_live() != live;
    }
    CHECK(done && leaks == 0, "%d failure points: %d leaked, done %d", tries, leaks, done);
    printf("allocation failures ok: %d points\n", tries);
}

static void bad_queries(const molt_model *m) {
    kv_set set;
    CHECK(kv_set_build(ctx, m, task(), 3, 4, 5, 1, false, &set) == MOLT_ERR_ARG &&
              strstr(molt_last_error(ctx), "4 queries with 3 pairs"),
          "queries > pairs: %s", molt_last_error(ctx));
    CHECK(kv_set_build(ctx, m, task(), 3, 0, 5, 1, false, &set) == MOLT_ERR_ARG,
          "0 queries accepted");
    molt_mqar_result r;
    CHECK(molt_eval_mqar(ctx, m, task(), 2, 3, 5, 1, &r) == MOLT_ERR_ARG, "mqar: 3 of 2 pairs");
}

int main(void) {
    ctx = molt_ctx_new();
    molt_ctx_set_threads(ctx, 2);
    molt_model *kv = load("models/kv-llama-2m"), *m2 = load("models/mamba2-random"),
               *st = load("models/stories260K/stories260K.bin"), *hy = random_hybrid();
    if (!st)
        return t_skip("test_kv_score", "needs models/stories260K");
    if (kv)
        check_snapshots(kv, "kv-llama-2m");
    if (m2)
        check_snapshots(m2, "mamba2-random");
    if (hy)
        check_snapshots(hy, "hybrid");
    if (kv) {
        fast_vs_trie(kv, 4, 1, 30);
        fast_vs_trie(kv, 8, 3, 10);
    }
    multi_token(st, 3, 1, 3);
    multi_token(st, 4, 3, 2);
    deterministic(st);
    alloc_failures(st);
    if (kv)
        bad_queries(kv);
    molt_model_free(kv);
    molt_model_free(m2);
    molt_model_free(st);
    molt_model_free(hy);
    molt_ctx_free(ctx);
    return t_done("test_kv_score");
}
