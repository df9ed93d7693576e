/*
 * kv_score.c — scoring the key-value probe's prompt sets (kv_probe.h): at
 * every answer position, the value whose candidate tokens c_0 .. c_{L-1}
 * have the highest total log-probability, teacher-forced,
 *
 *     score(v) = Σ_d log softmax(logits after context + c_0 .. c_{d-1})[c_d]
 *
 * (ties: the lowest value index).
 *
 * One token per value (every candidate of the position is one token): the
 * argmax of the answer position's logits over the value tokens, read from the
 * context's feed — the log-softmax's normaliser is shared, so the argmax of
 * the raw logits is the same (and compared exactly as before multi-token
 * values existed).
 *
 * Longer values: the candidates, in lexicographic order of their tokens
 * (kv_cands.order), are the leaves of a trie walked depth first. The context
 * is fed once; depth d keeps the logits after the current path's first d
 * tokens and a snapshot of the sequence there (seq_snap: the position, plus
 * the recurrent state of SSM / hybrid layers; the KV cache is append-only).
 * A candidate sharing its first p tokens with the previous one reuses depths
 * 0..p and feeds only its remaining tokens, one at a time from the snapshot
 * at depth p; its last token is never fed. So each trie node with children
 * costs one one-token step. Afterwards the sequence is restored to the answer
 * position, and MQAR's next query continues from there with the text's own
 * tokens (the right answer and the next line).
 */
#include "analysis/kv_probe.h"
#include "models/forward.h"

#include <math.h>
#include <string.h>

// A sequence and the trie walk's depths, sized for one set.
typedef struct scorer {
    molt_seq *s;
    int32_t   depth;     // longest candidate of the set
    float    *lg;        // [depth, vocab] logits after the path's first d tokens
    double   *lse;       // [depth] their log-sum-exp
    seq_snap *snap;      // [depth] the sequence after the path's first d tokens
    float    *rec;       // [depth, seq_snap_floats] the snapshots' recurrent state
    int32_t  *path;      // [depth] the previous candidate's tokens
} scorer;

static void scorer_free(scorer *k) {
    molt_seq_free(k->s);
    molt__free(k->lg);
    molt__free(k->lse);
    molt__free(k->snap);
    molt__free_aligned(k->rec);
    molt__free(k->path);
    memset(k, 0, sizeof *k);
}

static molt_status scorer_new(molt_ctx *ctx, const molt_model *m, const kv_set *set, scorer *k) {
    memset(k, 0, sizeof *k);
    k->depth = 1;
    for (int e = 0; e < set->n_ex; e++)
        for (int j = 0; j < set->ex[e].n_q; j++)
            k->depth = MOLT_MAX(k->depth, set->ex[e].q[j].c.max_len);
    molt_status st = molt_seq_new(ctx, m, MOLT_MAX(set->seq_len, 1), &k->s);
    if (st != MOLT_OK)
        return st;
    size_t D = (size_t)k->depth, nr = seq_snap_floats(k->s);
    k->lg = molt__malloc(sizeof(float) * D * (size_t)m->cfg.vocab);
    k->lse = molt__malloc(sizeof(double) * D);
    k->snap = molt__malloc(sizeof(seq_snap) * D);
    k->rec = molt__malloc_aligned(sizeof(float) * MOLT_MAX(D * nr, 1));
    k->path = molt__malloc(sizeof(int32_t) * D);
    if (!k->lg || !k->lse || !k->snap || !k->rec || !k->path) {
        scorer_free(k);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for the probe's scoring state");
    }
    for (size_t d = 0; d < D; d++)
        k->snap[d].rec = k->rec + d * nr;
    return MOLT_OK;
}

static double log_sum_exp(const float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int i = 0; i < n; i++)
        s += exp((double)x[i] - (double)mx);
    return (double)mx + log(s);
}

// ----------------------------------------------------------------------------
// one answer position; the sequence holds its context, k->lg row 0 the logits
// of the context's last position

// score[v] for every candidate by the trie walk; leaves the sequence at the
// answer position.
static molt_status trie_walk(molt_ctx *ctx, scorer *k, const kv_cands *c, int V, double *score) {
    int vocab = k->s->m->cfg.vocab;
    k->lse[0] = log_sum_exp(k->lg, vocab);
    seq_snap_save(k->s, &k->snap[0]);
    int valid = 1, cur = 0, plen = 0; // depths with logits of the path; depth of the sequence
    for (int i = 0; i < V; i++) {
        int v = c->order[i], L = c->off[v + 1] - c->off[v];
        const int32_t *t = c->tok + c->off[v];
        int p = 0;
        while (p < L && p < plen && t[p] == k->path[p])
            p++;
        for (int d = MOLT_MIN(p + 1, valid); d < L; d++) { // logits after t[0..d)
            if (cur != d - 1)
                seq_snap_restore(k->s, &k->snap[d - 1]);
            float *lg = k->lg + (size_t)d * vocab;
            molt_status st = molt_seq_feed(ctx, k->s, &t[d - 1], 1, 0, lg);
            if (st != MOLT_OK)
                return st;
            k->lse[d] = log_sum_exp(lg, vocab);
            seq_snap_save(k->s, &k->snap[d]);
            cur = d;
        }
        double sc = 0;
        for (int d = 0; d < L; d++)
            sc += (double)k->lg[(size_t)d * vocab + t[d]] - k->lse[d];
        score[v] = sc;
        memcpy(k->path, t, sizeof(int32_t) * (size_t)L);
        plen = valid = L;
    }
    if (cur != 0)
        seq_snap_restore(k->s, &k->snap[0]);
    return MOLT_OK;
}

// The predicted value of one query; logp (may be NULL): [V] every score.
static molt_status predict_query(molt_ctx *ctx, scorer *k, const kv_set *set, const kv_query *q,
                                 int32_t *pred, double *logp, double *score) {
    const kv_cands *c = &q->c;
    int V = set->n_values;
    if (c->max_len == 1 && !set->exact) {
        int best = 0;
        for (int v = 1; v < V; v++)
            if (k->lg[c->tok[c->off[v]]] > k->lg[c->tok[c->off[best]]])
                best = v;
        *pred = best;
        if (logp) {
            double lse = log_sum_exp(k->lg, k->s->m->cfg.vocab);
            for (int v = 0; v < V; v++)
                logp[v] = (double)k->lg[c->tok[c->off[v]]] - lse;
        }
        return MOLT_OK;
    }
    molt_status st = trie_walk(ctx, k, c, V, score);
    if (st != MOLT_OK)
        return st;
    int best = 0;
    for (int v = 1; v < V; v++)
        if (score[v] > score[best])
            best = v;
    *pred = best;
    if (logp)
        memcpy(logp, score, sizeof(double) * (size_t)V);
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// sets

molt_status kv_set_predict(molt_ctx *ctx, const molt_model *m, const kv_set *set, kv_progress *p,
                           int32_t *pred, double *logp) {
    scorer k;
    molt_status st = scorer_new(ctx, m, set, &k);
    if (st != MOLT_OK)
        return st;
    double *score = molt__malloc(sizeof(double) * (size_t)set->n_values);
    if (!score) {
        scorer_free(&k);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    }
    size_t V = (size_t)set->n_values;
    for (int e = 0; st == MOLT_OK && e < set->n_ex; e++) {
        const kv_example *x = &set->ex[e];
        molt_seq_reset(k.s);
        for (int j = 0, pos = 0; st == MOLT_OK && j < x->n_q; j++) {
            const kv_query *q = &x->q[j];
            size_t a = (size_t)e * set->queries + (size_t)j;
            if ((st = molt_seq_feed(ctx, k.s, x->ids + pos, q->at - pos, 0, k.lg)) == MOLT_OK)
                st = predict_query(ctx, &k, set, q, &pred[a], logp ? logp + a * V : NULL, score);
            pos = q->at;
        }
        if (st == MOLT_OK && p && p->fn)
            p->fn(++p->done, p->total, p->user);
    }
    molt__free(score);
    scorer_free(&k);
    return st;
}

molt_status kv_set_score(molt_ctx *ctx, const molt_model *m, const kv_set *set, kv_progress *p,
                         int32_t *correct) {
    *correct = 0;
    size_t na = (size_t)set->n_ex * (size_t)set->queries;
    int32_t *pred = molt__malloc(sizeof(int32_t) * MOLT_MAX(na, 1));
    if (!pred)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    molt_status st = kv_set_predict(ctx, m, set, p, pred, NULL);
    for (int e = 0; st == MOLT_OK && e < set->n_ex; e++)
        for (int j = 0; j < set->ex[e].n_q; j++)
            *correct += pred[(size_t)e * set->queries + (size_t)j] == set->ex[e].q[j].answer;
    molt__free(pred);
    return st;
}
