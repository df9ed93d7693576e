/*
 * kv_probe.c — the synthetic key-value retrieval probe (ALGORITHMS.md §6;
 * format of shared/models/kv-llama-2m/kv_task.json) and its multi-query form
 * (MQAR, multi-query associative recall):
 *
 *   "Memorize the following dictionary:\n" + "\n".join(f"{k}:{v}")
 *     + "".join(f"\nThe value of the key '{q}' is {v_q}" for the first Q-1 queries)
 *     + f"\nThe value of the key '{q}' is "
 *
 * with n distinct random keys, n distinct random values, Q distinct queried
 * keys of the dictionary (Q = 1: the kv task), BOS first. Each answer is
 * scored teacher-forced at its position (kv_score.c): right when the right
 * value has the highest total log-probability among all the task's values,
 * each with the tokens it gets in context (chance 1/|values|). With one token
 * per value that is the argmax of the answer position's logits over the
 * value tokens. Examples are drawn from a seeded generator, so a (seed, n)
 * pair always gives the same dictionaries (and, for Q = 1, the same prompts
 * as MQAR's first query). Accuracy comes with a 95% Wilson interval.
 *
 * In-context tokens: value v at a position whose text so far is P gets the
 * tokens of P + v after those of P (which must be their prefix: a tokenizer
 * that merges the value into the prompt is refused, naming the value). The
 * candidate set is closed with "\n" when it is not prefix-free (kv_probe.h).
 *
 * The prompts of one (task, pairs, queries, examples, seed) are built once as
 * a kv_set (analysis/kv_probe.h) and scored as often as needed: the head
 * analysis scores the same set under every ablation, and reads where the
 * queried key, its value and the newlines sit in each prompt.
 */
#include "analysis/kv_probe.h"
#include "io/fileio.h"
#include "io/json.h"
#include "models/model.h"
#include "train/data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV_MAX_VALUES 1000

typedef struct kv_task {
    const char *path;
    char      **keys;
    int         n_keys;
    size_t      max_key;     // bytes of the longest key
    int32_t     values[KV_MAX_VALUES];
    int         n_values;
} kv_task;

static void kv_task_free(kv_task *t) {
    for (int i = 0; i < t->n_keys; i++)
        molt__free(t->keys[i]);
    molt__free(t->keys);
    memset(t, 0, sizeof *t);
}

static molt_status kv_task_load(molt_ctx *ctx, const char *path, kv_task *t) {
    memset(t, 0, sizeof *t);
    t->path = path;
    char *js = NULL;
    size_t len = 0;
    molt_status st = fio_read_all(ctx, path, 16u << 20, &js, &len);
    if (st != MOLT_OK)
        return st;
    cJSON *o = js_parse(ctx, path, js, len);
    molt__free(js);
    if (!o)
        return molt_last_status(ctx);
    const cJSON *keys = NULL, *vals = NULL;
    if ((st = js_get_arr(ctx, path, o, "keys", 1, &keys)) != MOLT_OK ||
        (st = js_get_arr(ctx, path, o, "values", 1, &vals)) != MOLT_OK)
        goto done;
    t->n_values = cJSON_GetArraySize(vals);
    int nk = cJSON_GetArraySize(keys);
    if (t->n_values < 2 || t->n_values > KV_MAX_VALUES || nk < 2) {
        st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: needs 2..%d values and at least 2 keys", path,
                       KV_MAX_VALUES);
        goto done;
    }
    t->keys = molt__calloc((size_t)nk, sizeof(char *));
    if (!t->keys) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        goto done;
    }
    for (int i = 0; i < nk; i++) {
        const cJSON *k = cJSON_GetArrayItem(keys, i);
        if (!cJSON_IsString(k) || !(t->keys[i] = molt__strdup(k->valuestring))) {
            st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: keys[%d] must be a string", path, i);
            goto done;
        }
        t->n_keys = i + 1;
        t->max_key = MOLT_MAX(t->max_key, strlen(t->keys[i]));
    }
    for (int i = 0; i < t->n_values; i++) {
        int64_t v;
        if (!js_whole(cJSON_GetArrayItem(vals, i), 0, 1 << 30, &v)) {
            st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: values[%d] must be a whole number", path, i);
            goto done;
        }
        t->values[i] = (int32_t)v;
    }
done:
    cJSON_Delete(o);
    if (st != MOLT_OK)
        kv_task_free(t);
    return st;
}

// partial Fisher-Yates: first k of a permutation of 0..n-1
static void sample_distinct(uint64_t *rng, int n, int k, int *out, int *scratch) {
    for (int i = 0; i < n; i++)
        scratch[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)(data_rng_next(rng) % (uint64_t)(n - i));
        int tmp = scratch[i];
        scratch[i] = scratch[j];
        scratch[j] = tmp;
        out[i] = scratch[i];
    }
}

// ----------------------------------------------------------------------------
// token positions of the probe's landmarks

// Token i covers bytes [end[i-1], end[i]) of the prompt: the length of the
// decoded prefix ids[0..i], shifted so the decoded text ends where the prompt
// does (a decoder may add or drop a leading space / BOS text). Returns false
// when the decoded text is not the prompt (positions unknown then).
static bool token_ends(molt_ctx *ctx, const molt_tokenizer *tok, const int32_t *ids, int n,
                       const char *prompt, size_t plen, int64_t *end) {
    char *full = NULL;
    size_t flen = 0;
    if (molt_detokenize(ctx, tok, ids, (size_t)n, &full, &flen) != MOLT_OK)
        return false;
    bool ok = flen >= plen && memcmp(full + flen - plen, prompt, plen) == 0;
    int64_t shift = (int64_t)flen - (int64_t)plen;
    molt__free(full);
    for (int i = 0; ok && i < n; i++) {
        char *t = NULL;
        size_t tl = 0;
        if (molt_detokenize(ctx, tok, ids, (size_t)i + 1, &t, &tl) != MOLT_OK)
            return false;
        molt__free(t);
        end[i] = (int64_t)tl - shift;
    }
    return ok;
}

// Tokens overlapping bytes [c0, c1) → [*lo, *hi).
static void token_range(const int64_t *end, int n, int64_t c0, int64_t c1, int32_t *lo,
                        int32_t *hi) {
    *lo = *hi = -1;
    for (int i = 0; i < n; i++) {
        int64_t b = i ? end[i - 1] : INT64_MIN;
        if (b < c1 && end[i] > c0) {
            if (*lo < 0)
                *lo = i;
            *hi = i + 1;
        }
    }
}

static molt_status example_positions(molt_ctx *ctx, const molt_tokenizer *tok, kv_example *e,
                                     const char *prompt, size_t plen, const int64_t span[4]) {
    e->key_lo = e->key_hi = e->value_lo = e->value_hi = -1;
    int64_t *end = molt__malloc(sizeof(int64_t) * (size_t)e->n);
    e->newline = molt__calloc((size_t)e->n, 1);
    if (!end || !e->newline) {
        molt__free(end);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    }
    if (!token_ends(ctx, tok, e->ids, e->n, prompt, plen, end)) {
        molt__free(end);
        molt__free(e->newline);
        e->newline = NULL; // positions unknown: the tokenizer does not round-trip the prompt
        return MOLT_OK;
    }
    token_range(end, e->n, span[0], span[1], &e->key_lo, &e->key_hi);
    token_range(end, e->n, span[2], span[3], &e->value_lo, &e->value_hi);
    for (int i = 0; i < e->n; i++)
        for (int64_t b = i ? MOLT_MAX(end[i - 1], 0) : 0; b < end[i] && b < (int64_t)plen; b++)
            e->newline[i] |= prompt[b] == '\n';
    molt__free(end);
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// candidates: every value with its in-context tokens at one answer position

typedef struct cand_ref {
    const int32_t *t;
    int32_t        n, v;
} cand_ref;

// What one set's build reuses: the tokenizer, the texts and the candidates
// being collected.
typedef struct builder {
    molt_ctx             *ctx;
    const molt_tokenizer *tok;
    const kv_task        *t;
    bool                  bos;
    int32_t               vocab;     // the model's
    size_t                cap;       // bytes of text and ctext
    char                 *text;      // the example's prompt
    char                 *ctext;     // a context followed by one candidate value
    size_t               *clen;      // [queries] bytes of the text before each answer
    int32_t              *ctok;      // [ctok_cap] candidates' tokens, value after value
    size_t                ctok_n, ctok_cap;
    int32_t               off[KV_MAX_VALUES + 1];
    cand_ref              ref[KV_MAX_VALUES];
} builder;

static molt_status ctok_push(builder *b, const int32_t *x, size_t n) {
    if (b->ctok_n + n > b->ctok_cap) {
        size_t nc = MOLT_MAX(2 * b->ctok_cap, b->ctok_n + n + 256);
        int32_t *p = molt__realloc(b->ctok, nc * sizeof(int32_t));
        if (!p)
            return molt__err(b->ctx, MOLT_ERR_OOM, "out of memory");
        b->ctok = p;
        b->ctok_cap = nc;
    }
    memcpy(b->ctok + b->ctok_n, x, n * sizeof(int32_t));
    b->ctok_n += n;
    return MOLT_OK;
}

// Appends to ctok value v's tokens after the context ctext[0..clen), whose
// tokens are ids[0..at): the tokens of context + v (+ "\n") after those.
static molt_status cand_add(builder *b, size_t clen, const int32_t *ids, int32_t at, int v,
                            bool closed) {
    int32_t val = b->t->values[v];
    int k = snprintf(b->ctext + clen, b->cap - clen, "%d%s", val, closed ? "\n" : "");
    int32_t *cid = NULL;
    size_t n = 0;
    molt_status st = molt_tokenize(b->ctx, b->tok, b->ctext, clen + (size_t)k, b->bos, &cid, &n);
    if (st != MOLT_OK)
        return st;
    if (n <= (size_t)at || memcmp(cid, ids, sizeof(int32_t) * (size_t)at) != 0) {
        st = molt__err(b->ctx, MOLT_ERR_UNSUPPORTED,
                       "%s: with this tokenizer the value %d merges with the prompt before it "
                       "(the tokens of prompt + \"%d\" do not start with the prompt's tokens), "
                       "so the probe cannot score it",
                       b->t->path, val, val);
        goto done;
    }
    for (size_t i = (size_t)at; i < n; i++)
        if (cid[i] < 0 || cid[i] >= b->vocab) {
            st = molt__err(b->ctx, MOLT_ERR_FORMAT,
                           "%s: the value %d gets token %d, outside the model's vocab (0..%d)",
                           b->t->path, val, cid[i], b->vocab - 1);
            goto done;
        }
    st = ctok_push(b, cid + at, n - (size_t)at);
done:
    molt__free(cid);
    return st;
}

static int cmp_cand(const void *pa, const void *pb) {
    const cand_ref *a = pa, *b = pb;
    for (int i = 0; i < a->n && i < b->n; i++)
        if (a->t[i] != b->t[i])
            return a->t[i] < b->t[i] ? -1 : 1;
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    return (a->v > b->v) - (a->v < b->v);
}

// Collects every value's tokens into ctok / off and sorts them into ref.
// *clash: the first sorted index i whose tokens are a prefix of (or equal to)
// ref[i+1]'s, -1 when the set is prefix-free. (In lexicographic order, a
// prefix of any later sequence is a prefix of the next one.)
static molt_status cands_collect(builder *b, size_t clen, const int32_t *ids, int32_t at,
                                 bool closed, int *clash) {
    int V = b->t->n_values;
    b->ctok_n = 0;
    b->off[0] = 0;
    for (int v = 0; v < V; v++) {
        molt_status st = cand_add(b, clen, ids, at, v, closed);
        if (st != MOLT_OK)
            return st;
        b->off[v + 1] = (int32_t)b->ctok_n;
    }
    for (int v = 0; v < V; v++)
        b->ref[v] = (cand_ref){b->ctok + b->off[v], b->off[v + 1] - b->off[v], v};
    qsort(b->ref, (size_t)V, sizeof(cand_ref), cmp_cand);
    *clash = -1;
    for (int i = 0; i + 1 < V && *clash < 0; i++)
        if (b->ref[i].n <= b->ref[i + 1].n &&
            !memcmp(b->ref[i].t, b->ref[i + 1].t, sizeof(int32_t) * (size_t)b->ref[i].n))
            *clash = i;
    return MOLT_OK;
}

// kv_cands from what cands_collect left: one block [off | order | tok].
static molt_status cands_store(builder *b, bool closed, kv_cands *c) {
    size_t V = (size_t)b->t->n_values;
    int32_t *blk = molt__malloc(sizeof(int32_t) * (2 * V + 1 + b->ctok_n));
    if (!blk)
        return molt__err(b->ctx, MOLT_ERR_OOM, "out of memory");
    c->off = blk;
    c->order = blk + V + 1;
    c->tok = blk + 2 * V + 1;
    memcpy(c->off, b->off, sizeof(int32_t) * (V + 1));
    memcpy(c->tok, b->ctok, sizeof(int32_t) * b->ctok_n);
    c->max_len = 0;
    for (size_t i = 0; i < V; i++) {
        c->order[i] = b->ref[i].v;
        c->max_len = MOLT_MAX(c->max_len, b->ref[i].n);
    }
    c->closed = closed;
    return MOLT_OK;
}

// The candidates after the context text[0..clen) (tokens ids[0..at)): the
// values' own tokens when prefix-free, else closed with "\n".
static molt_status query_cands(builder *b, size_t clen, const int32_t *ids, int32_t at,
                               kv_cands *c) {
    memcpy(b->ctext, b->text, clen);
    int clash = -1;
    for (int closed = 0; closed < 2; closed++) {
        molt_status st = cands_collect(b, clen, ids, at, closed, &clash);
        if (st != MOLT_OK)
            return st;
        if (clash < 0)
            return cands_store(b, closed, c);
    }
    const cand_ref *x = &b->ref[clash], *y = &b->ref[clash + 1];
    if (x->n == y->n)
        return molt__err(b->ctx, MOLT_ERR_UNSUPPORTED,
                         "%s: the values %d and %d get the same tokens with this tokenizer, so "
                         "the probe cannot tell them apart",
                         b->t->path, b->t->values[x->v], b->t->values[y->v]);
    return molt__err(b->ctx, MOLT_ERR_UNSUPPORTED,
                     "%s: with this tokenizer the tokens of value %d are a prefix of those of "
                     "value %d, even followed by \"\\n\", so the probe cannot score them",
                     b->t->path, b->t->values[x->v], b->t->values[y->v]);
}

// ----------------------------------------------------------------------------
// prompt sets

// The text of one example into b->text: the dictionary, then the queries,
// each answered but the last. b->clen[j]: bytes before query j's answer.
// span: bytes of the last queried key and of its value in the dictionary.
// Returns the text's length (b->cap is sized for the longest text).
static size_t example_text(builder *b, const int *ki, const int *vi, const int *qi, int pairs,
                           int Q, int64_t span[4]) {
    const kv_task *t = b->t;
    char *p = b->text;
    size_t cap = b->cap;
    size_t n = (size_t)snprintf(p, cap, "Memorize the following dictionary:\n");
    for (int i = 0; i < pairs; i++) {
        size_t k0 = n + (i ? 1 : 0), klen = strlen(t->keys[ki[i]]);
        n += (size_t)snprintf(p + n, cap - n, "%s%s:%d", i ? "\n" : "", t->keys[ki[i]],
                              t->values[vi[i]]);
        if (i == qi[Q - 1]) {
            span[0] = (int64_t)k0;
            span[1] = (int64_t)(k0 + klen);
            span[2] = span[1] + 1;
            span[3] = (int64_t)n;
        }
    }
    for (int j = 0; j < Q; j++) {
        n += (size_t)snprintf(p + n, cap - n, "\nThe value of the key '%s' is ",
                              t->keys[ki[qi[j]]]);
        b->clen[j] = n;
        if (j + 1 < Q)
            n += (size_t)snprintf(p + n, cap - n, "%d", t->values[vi[qi[j]]]);
    }
    MOLT_ASSERT(n + 16 < cap);
    return n;
}

// Query j < Q-1: its answer position, the number of tokens of the text before
// it, which must be a prefix of the whole prompt's tokens ids[0..n).
static molt_status answer_at(builder *b, size_t clen, const int32_t *ids, int32_t n, int32_t value,
                             int32_t *at) {
    int32_t *cid = NULL;
    size_t nc = 0;
    molt_status st = molt_tokenize(b->ctx, b->tok, b->text, clen, b->bos, &cid, &nc);
    if (st != MOLT_OK)
        return st;
    if (nc >= (size_t)n || memcmp(cid, ids, sizeof(int32_t) * nc) != 0)
        st = molt__err(b->ctx, MOLT_ERR_UNSUPPORTED,
                       "%s: with this tokenizer the answer %d merges with the line after it (the "
                       "tokens before it are not a prefix of the prompt's), so the probe cannot "
                       "score it",
                       b->t->path, value);
    *at = (int32_t)nc;
    molt__free(cid);
    return st;
}

static molt_status context_err(molt_ctx *ctx, int pairs, int64_t len, int32_t max_seq,
                               const char *what) {
    return molt__err(ctx, MOLT_ERR_ARG, "a %d-pair prompt%s is %lld tokens, longer than the "
                                        "model's context (%d)",
                     pairs, what, (long long)len, max_seq);
}

// Tokenizes one example (keys ki, values vi, queried dictionary entries qi)
// and finds every answer's position and candidates.
static molt_status example_build(builder *b, const molt_model *m, const int *ki, const int *vi,
                                 const int *qi, int pairs, int Q, bool positions, kv_example *x,
                                 int32_t *seq_len) {
    int64_t span[4] = {0};
    size_t n = example_text(b, ki, vi, qi, pairs, Q, span);
    size_t nid = 0;
    x->key_lo = x->key_hi = x->value_lo = x->value_hi = -1;
    molt_status st = molt_tokenize(b->ctx, b->tok, b->text, n, b->bos, &x->ids, &nid);
    if (st != MOLT_OK)
        return st;
    x->n = (int32_t)MOLT_MIN(nid, (size_t)INT32_MAX);
    if ((int64_t)nid > m->cfg.max_seq)
        return context_err(b->ctx, pairs, (int64_t)nid, m->cfg.max_seq, "");
    if (!(x->q = molt__calloc((size_t)Q, sizeof(kv_query))))
        return molt__err(b->ctx, MOLT_ERR_OOM, "out of memory");
    x->n_q = Q;
    for (int j = 0; j < Q; j++) {
        kv_query *q = &x->q[j];
        q->answer = vi[qi[j]];
        q->at = x->n;
        if (j + 1 < Q &&
            (st = answer_at(b, b->clen[j], x->ids, x->n, b->t->values[q->answer], &q->at)) !=
                MOLT_OK)
            return st;
        if ((st = query_cands(b, b->clen[j], x->ids, q->at, &q->c)) != MOLT_OK)
            return st;
        int64_t len = (int64_t)q->at + q->c.max_len - 1;
        if (len > m->cfg.max_seq)
            return context_err(b->ctx, pairs, len, m->cfg.max_seq, " with its answer");
        *seq_len = (int32_t)MOLT_MAX(*seq_len, len);
    }
    return positions ? example_positions(b->ctx, b->tok, x, b->text, n, span) : MOLT_OK;
}

void kv_set_free(kv_set *s) {
    if (!s)
        return;
    for (int i = 0; s->ex && i < s->n_ex; i++) {
        kv_example *x = &s->ex[i];
        for (int j = 0; x->q && j < x->n_q; j++)
            molt__free(x->q[j].c.off);
        molt__free(x->q);
        molt__free(x->ids);
        molt__free(x->newline);
    }
    molt__free(s->ex);
    memset(s, 0, sizeof *s);
}

const int32_t *kv_answer(const kv_query *q, int32_t *n) {
    *n = q->c.off[q->answer + 1] - q->c.off[q->answer];
    return q->c.tok + q->c.off[q->answer];
}

static molt_status check_sizes(molt_ctx *ctx, const kv_task *t, int32_t pairs, int32_t queries,
                               int32_t examples) {
    if (pairs < 1 || pairs > t->n_keys || pairs > t->n_values || examples < 1) {
        int mx = t->n_keys < t->n_values ? t->n_keys : t->n_values;
        return molt__err(ctx, MOLT_ERR_ARG, "%d pairs (1..%d with this task) × %d examples", pairs,
                         mx, examples);
    }
    if (queries < 1 || queries > pairs)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "%d queries with %d pairs: queries ask distinct keys of the dictionary "
                         "(1..%d)",
                         queries, pairs, pairs);
    if ((int64_t)queries * examples > INT32_MAX)
        return molt__err(ctx, MOLT_ERR_ARG, "%d queries × %d examples is too many answers",
                         queries, examples);
    return MOLT_OK;
}

static void builder_free(builder *b) {
    molt__free(b->text);
    molt__free(b->ctext);
    molt__free(b->clen);
    molt__free(b->ctok);
}

molt_status kv_set_build(molt_ctx *ctx, const molt_model *m, const char *task_json, int32_t pairs,
                         int32_t queries, int32_t examples, uint64_t seed, bool positions,
                         kv_set *out) {
    memset(out, 0, sizeof *out);
    if (!m->tok)
        return molt__err(ctx, MOLT_ERR_MISSING, "the model has no tokenizer");
    kv_task t;
    molt_status st = kv_task_load(ctx, task_json, &t);
    if (st != MOLT_OK)
        return st;
    if ((st = check_sizes(ctx, &t, pairs, queries, examples)) != MOLT_OK) {
        kv_task_free(&t);
        return st;
    }
    builder *b = molt__calloc(1, sizeof *b);
    int *ki = molt__malloc(sizeof(int) * (size_t)(2 * (t.n_keys + t.n_values) + pairs));
    if (b) {
        *b = (builder){.ctx = ctx, .tok = m->tok, .t = &t, .vocab = m->cfg.vocab,
                       .bos = molt_tokenizer_bos(m->tok) >= 0};
        b->cap = 64 + (size_t)(pairs + queries) * (t.max_key + 64);
        b->text = molt__malloc(b->cap);
        b->ctext = molt__malloc(b->cap);
        b->clen = molt__malloc(sizeof(size_t) * (size_t)queries);
    }
    out->ex = molt__calloc((size_t)examples, sizeof *out->ex);
    if (!b || !ki || !b->text || !b->ctext || !b->clen || !out->ex) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        goto done;
    }
    out->pairs = pairs;
    out->queries = queries;
    out->n_values = t.n_values;
    int *vi = ki + t.n_keys, *qi = vi + t.n_values, *scratch = qi + pairs;
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + (uint64_t)pairs;
    for (int e = 0; e < examples && st == MOLT_OK; e++) {
        sample_distinct(&rng, t.n_keys, pairs, ki, scratch);
        sample_distinct(&rng, t.n_values, pairs, vi, scratch);
        sample_distinct(&rng, pairs, queries, qi, scratch); // queries = 1: one draw % pairs
        out->n_ex = e + 1;
        st = example_build(b, m, ki, vi, qi, pairs, queries, positions, &out->ex[e],
                           &out->seq_len);
        out->max_len = MOLT_MAX(out->max_len, out->ex[e].n);
    }
done:
    if (b)
        builder_free(b);
    molt__free(b);
    molt__free(ki);
    kv_task_free(&t);
    if (st != MOLT_OK)
        kv_set_free(out);
    return st;
}

// ----------------------------------------------------------------------------
// molt_eval_kv, molt_eval_mqar

// 95% Wilson interval of correct / n.
static void wilson(int32_t correct, int32_t n, double *acc, double *lo, double *hi) {
    double p = (double)correct / n, z = 1.959963984540054, nn = n;
    double den = 1 + z * z / nn, mid = (p + z * z / (2 * nn)) / den;
    double half = z * sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn)) / den;
    *acc = p;
    *lo = fmax(0, mid - half);
    *hi = fmin(1, mid + half);
}

// Builds and scores one set: *correct answers right of examples · queries.
static molt_status eval_set(molt_ctx *ctx, const molt_model *m, const char *task_json,
                            int32_t pairs, int32_t queries, int32_t examples, uint64_t seed,
                            int32_t *correct, int32_t *n_values) {
    kv_set set;
    molt_status st = kv_set_build(ctx, m, task_json, pairs, queries, examples, seed, false, &set);
    if (st != MOLT_OK)
        return st;
    st = kv_set_score(ctx, m, &set, NULL, correct);
    *n_values = set.n_values;
    kv_set_free(&set);
    return st;
}

molt_status molt_eval_kv(molt_ctx *ctx, const molt_model *m, const char *task_json,
                         int32_t pairs, int32_t examples, uint64_t seed, molt_kv_result *out) {
    memset(out, 0, sizeof *out);
    int32_t correct = 0, nv = 0;
    molt_status st = eval_set(ctx, m, task_json, pairs, 1, examples, seed, &correct, &nv);
    if (st != MOLT_OK)
        return st;
    out->correct = correct;
    out->pairs = pairs;
    out->examples = examples;
    wilson(correct, examples, &out->accuracy, &out->ci_low, &out->ci_high);
    out->chance = 1.0 / nv;
    return MOLT_OK;
}

molt_status molt_eval_mqar(molt_ctx *ctx, const molt_model *m, const char *task_json,
                           int32_t pairs, int32_t queries, int32_t examples, uint64_t seed,
                           molt_mqar_result *out) {
    memset(out, 0, sizeof *out);
    int32_t correct = 0, nv = 0;
    molt_status st = eval_set(ctx, m, task_json, pairs, queries, examples, seed, &correct, &nv);
    if (st != MOLT_OK)
        return st;
    out->pairs = pairs;
    out->queries = queries;
    out->examples = examples;
    out->answers = queries * examples;
    out->correct = correct;
    wilson(correct, out->answers, &out->accuracy, &out->ci_low, &out->ci_high);
    out->chance = 1.0 / nv;
    return MOLT_OK;
}
