/*
 * kv_probe.c — the synthetic key-value retrieval probe (ALGORITHMS.md §6;
 * format of shared/models/kv-llama-2m/kv_task.json):
 *
 *   "Memorize the following dictionary:\n" + "\n".join(f"{k}:{v}")
 *     + f"\nThe value of the key '{q}' is "
 *
 * with n distinct random keys, n distinct random values, BOS first; the answer
 * is the value's single token, and an example is correct when the argmax of
 * the last position's logits over the value tokens is the right one (chance
 * 1/|values|). Examples are drawn from a seeded generator, so a (seed, n)
 * pair always gives the same prompts. Accuracy comes with a 95% Wilson
 * interval.
 *
 * The prompts of one (task, pairs, examples, seed) are built once as a kv_set
 * (analysis/heads.h) and scored as often as needed: the head analysis scores
 * the same set under every ablation, and reads where the queried key, its
 * value and the newlines sit in each prompt.
 */
#include "analysis/heads.h"
#include "io/fileio.h"
#include "io/json.h"
#include "models/model.h"
#include "train/data.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define KV_MAX_VALUES 1000

typedef struct kv_task {
    char   **keys;
    int      n_keys;
    int32_t  values[KV_MAX_VALUES], value_tok[KV_MAX_VALUES];
    int      n_values;
} kv_task;

static void kv_task_free(kv_task *t) {
    for (int i = 0; i < t->n_keys; i++)
        molt__free(t->keys[i]);
    molt__free(t->keys);
    memset(t, 0, sizeof *t);
}

static molt_status kv_task_load(molt_ctx *ctx, const char *path, const molt_tokenizer *tok,
                                kv_task *t) {
    memset(t, 0, sizeof *t);
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
    }
    for (int i = 0; i < t->n_values; i++) {
        int64_t v;
        if (!js_whole(cJSON_GetArrayItem(vals, i), 0, 1 << 30, &v)) {
            st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: values[%d] must be a whole number", path, i);
            goto done;
        }
        t->values[i] = (int32_t)v;
        char s[32];
        snprintf(s, sizeof s, "%d", t->values[i]);
        int32_t *ids = NULL;
        size_t n = 0;
        if ((st = molt_tokenize(ctx, tok, s, strlen(s), 0, &ids, &n)) != MOLT_OK)
            goto done;
        t->value_tok[i] = n == 1 ? ids[0] : -1;
        molt__free(ids);
        if (n != 1) {
            st = molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                           "%s: value %s is %zu tokens with this tokenizer (the probe needs "
                           "single-token values)",
                           path, s, n);
            goto done;
        }
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
// prompt sets

void kv_set_free(kv_set *s) {
    if (!s)
        return;
    for (int i = 0; s->ex && i < s->n_ex; i++) {
        molt__free(s->ex[i].ids);
        molt__free(s->ex[i].newline);
    }
    molt__free(s->ex);
    molt__free(s->value_tok);
    memset(s, 0, sizeof *s);
}

molt_status kv_set_build(molt_ctx *ctx, const molt_model *m, const char *task_json, int32_t pairs,
                         int32_t examples, uint64_t seed, bool positions, kv_set *out) {
    memset(out, 0, sizeof *out);
    if (!m->tok)
        return molt__err(ctx, MOLT_ERR_MISSING, "the model has no tokenizer");
    kv_task t;
    molt_status st = kv_task_load(ctx, task_json, m->tok, &t);
    if (st != MOLT_OK)
        return st;
    if (pairs < 1 || pairs > t.n_keys || pairs > t.n_values || examples < 1) {
        int mx = t.n_keys < t.n_values ? t.n_keys : t.n_values;
        kv_task_free(&t);
        return molt__err(ctx, MOLT_ERR_ARG, "%d pairs (1..%d with this task) × %d examples", pairs,
                         mx, examples);
    }
    size_t cap = 64 + (size_t)pairs * 64;
    char *prompt = molt__malloc(cap);
    int *ki = molt__malloc(sizeof(int) * (size_t)(t.n_keys + t.n_values) * 2);
    out->ex = molt__calloc((size_t)examples, sizeof *out->ex);
    out->value_tok = molt__malloc(sizeof(int32_t) * (size_t)t.n_values);
    if (!prompt || !ki || !out->ex || !out->value_tok) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        goto done;
    }
    out->pairs = pairs;
    out->n_values = t.n_values;
    memcpy(out->value_tok, t.value_tok, sizeof(int32_t) * (size_t)t.n_values);
    int *vi = ki + t.n_keys, *scratch = vi + t.n_values;
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + (uint64_t)pairs;
    for (int e = 0; e < examples; e++) {
        sample_distinct(&rng, t.n_keys, pairs, ki, scratch);
        sample_distinct(&rng, t.n_values, pairs, vi, scratch);
        int q = (int)(data_rng_next(&rng) % (uint64_t)pairs);
        int64_t span[4] = {0}; // bytes of the queried key and of its value in the dictionary
        size_t n = (size_t)snprintf(prompt, cap, "Memorize the following dictionary:\n");
        for (int i = 0; i < pairs && n < cap; i++) {
            size_t k0 = n + (i ? 1 : 0), klen = strlen(t.keys[ki[i]]);
            n += (size_t)snprintf(prompt + n, cap - n, "%s%s:%d", i ? "\n" : "", t.keys[ki[i]],
                                  t.values[vi[i]]);
            if (i == q) {
                span[0] = (int64_t)k0;
                span[1] = (int64_t)(k0 + klen);
                span[2] = span[1] + 1;
                span[3] = (int64_t)n;
            }
        }
        if (n < cap)
            n += (size_t)snprintf(prompt + n, cap - n, "\nThe value of the key '%s' is ",
                                  t.keys[ki[q]]);
        if (n >= cap) {
            st = molt__err(ctx, MOLT_ERR_INTERNAL, "kv prompt buffer too small");
            goto done;
        }
        kv_example *x = &out->ex[e];
        size_t nid = 0;
        if ((st = molt_tokenize(ctx, m->tok, prompt, n, molt_tokenizer_bos(m->tok) >= 0, &x->ids,
                                &nid)) != MOLT_OK)
            goto done;
        out->n_ex = e + 1;
        x->n = (int32_t)MOLT_MIN(nid, (size_t)INT32_MAX);
        x->answer = vi[q];
        x->key_lo = x->key_hi = x->value_lo = x->value_hi = -1;
        if ((int64_t)nid > m->cfg.max_seq) {
            st = molt__err(ctx, MOLT_ERR_ARG, "a %d-pair prompt is %zu tokens, longer than the "
                                              "model's context (%d)",
                           pairs, nid, m->cfg.max_seq);
            goto done;
        }
        out->max_len = MOLT_MAX(out->max_len, x->n);
        if (positions && (st = example_positions(ctx, m->tok, x, prompt, n, span)) != MOLT_OK)
            goto done;
    }
done:
    molt__free(prompt);
    molt__free(ki);
    kv_task_free(&t);
    if (st != MOLT_OK)
        kv_set_free(out);
    return st;
}

molt_status kv_set_score(molt_ctx *ctx, const molt_model *m, const kv_set *set, kv_progress *p,
                         int32_t *correct) {
    *correct = 0;
    float *lg = molt__malloc(sizeof(float) * (size_t)m->cfg.vocab);
    molt_seq *s = NULL;
    molt_status st = lg ? molt_seq_new(ctx, m, set->max_len, &s)
                        : molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    for (int e = 0; st == MOLT_OK && e < set->n_ex; e++) {
        const kv_example *x = &set->ex[e];
        molt_seq_reset(s);
        if ((st = molt_seq_feed(ctx, s, x->ids, x->n, 0, lg)) != MOLT_OK)
            break;
        int best = 0;
        for (int v = 1; v < set->n_values; v++)
            if (lg[set->value_tok[v]] > lg[set->value_tok[best]])
                best = v;
        *correct += best == x->answer;
        if (p && p->fn)
            p->fn(++p->done, p->total, p->user);
    }
    molt_seq_free(s);
    molt__free(lg);
    return st;
}

// ----------------------------------------------------------------------------
// molt_eval_kv

molt_status molt_eval_kv(molt_ctx *ctx, const molt_model *m, const char *task_json,
                         int32_t pairs, int32_t examples, uint64_t seed, molt_kv_result *out) {
    memset(out, 0, sizeof *out);
    kv_set set;
    molt_status st = kv_set_build(ctx, m, task_json, pairs, examples, seed, false, &set);
    if (st != MOLT_OK)
        return st;
    int32_t correct = 0;
    st = kv_set_score(ctx, m, &set, NULL, &correct);
    if (st == MOLT_OK) {
        out->correct = correct;
        out->pairs = pairs;
        out->examples = examples;
        double p = (double)out->correct / examples, z = 1.959963984540054, nn = examples;
        double den = 1 + z * z / nn, mid = (p + z * z / (2 * nn)) / den;
        double half = z * sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn)) / den;
        out->accuracy = p;
        out->ci_low = fmax(0, mid - half);
        out->ci_high = fmin(1, mid + half);
        out->chance = 1.0 / set.n_values;
    }
    kv_set_free(&set);
    return st;
}
