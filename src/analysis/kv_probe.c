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
 */
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

molt_status molt_eval_kv(molt_ctx *ctx, const molt_model *m, const char *task_json,
                         int32_t pairs, int32_t examples, uint64_t seed, molt_kv_result *out) {
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
    int V = m->cfg.vocab;
    size_t cap = 64 + (size_t)pairs * 64;
    char *prompt = molt__malloc(cap);
    int *ki = molt__malloc(sizeof(int) * (size_t)(t.n_keys + t.n_values) * 2);
    float *lg = molt__malloc(sizeof(float) * (size_t)V);
    molt_seq *s = NULL;
    if (!prompt || !ki || !lg) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory");
        goto done;
    }
    int *vi = ki + t.n_keys, *scratch = vi + t.n_values;
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + (uint64_t)pairs;
    for (int e = 0; e < examples; e++) {
        sample_distinct(&rng, t.n_keys, pairs, ki, scratch);
        sample_distinct(&rng, t.n_values, pairs, vi, scratch);
        int q = (int)(data_rng_next(&rng) % (uint64_t)pairs);
        size_t n = (size_t)snprintf(prompt, cap, "Memorize the following dictionary:\n");
        for (int i = 0; i < pairs && n < cap; i++)
            n += (size_t)snprintf(prompt + n, cap - n, "%s%s:%d", i ? "\n" : "", t.keys[ki[i]],
                                  t.values[vi[i]]);
        if (n < cap)
            n += (size_t)snprintf(prompt + n, cap - n, "\nThe value of the key '%s' is ",
                                  t.keys[ki[q]]);
        if (n >= cap) {
            st = molt__err(ctx, MOLT_ERR_INTERNAL, "kv prompt buffer too small");
            goto done;
        }
        int32_t *ids = NULL;
        size_t nid = 0;
        if ((st = molt_tokenize(ctx, m->tok, prompt, n, molt_tokenizer_bos(m->tok) >= 0, &ids,
                                &nid)) != MOLT_OK)
            goto done;
        if ((int64_t)nid > m->cfg.max_seq) {
            molt__free(ids);
            st = molt__err(ctx, MOLT_ERR_ARG, "a %d-pair prompt is %zu tokens, longer than the "
                                              "model's context (%d)",
                           pairs, nid, m->cfg.max_seq);
            goto done;
        }
        molt_seq_free(s);
        s = NULL;
        if ((st = molt_seq_new(ctx, m, (int32_t)nid, &s)) == MOLT_OK)
            st = molt_seq_feed(ctx, s, ids, (int32_t)nid, 0, lg);
        molt__free(ids);
        if (st != MOLT_OK)
            goto done;
        int best = 0;
        for (int v = 1; v < t.n_values; v++)
            if (lg[t.value_tok[v]] > lg[t.value_tok[best]])
                best = v;
        out->correct += best == vi[q];
    }
    out->pairs = pairs;
    out->examples = examples;
    double p = (double)out->correct / examples, z = 1.959963984540054, nn = examples;
    double den = 1 + z * z / nn, mid = (p + z * z / (2 * nn)) / den;
    double half = z * sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn)) / den;
    out->accuracy = p;
    out->ci_low = fmax(0, mid - half);
    out->ci_high = fmin(1, mid + half);
    out->chance = 1.0 / t.n_values;
done:
    molt_seq_free(s);
    molt__free(prompt);
    molt__free(ki);
    molt__free(lg);
    kv_task_free(&t);
    return st;
}
