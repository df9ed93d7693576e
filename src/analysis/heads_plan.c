/*
 * heads_plan.c — which teacher heads a hybrid keeps as attention (see
 * molt_heads_plan in molt.h): an explicit "L:H,..." list, the top K (or a
 * fraction) of a `molt heads --json` ranking, or K heads drawn at random
 * (the control). Everything is checked here, before any work starts; the
 * messages name the option `molt hybridize` takes for each field.
 */
#include "core/core.h"
#include "io/fileio.h"
#include "io/json.h"
#include "models/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RANKING_MAX_BYTES ((size_t)64 << 20)

molt_heads_plan_opts molt_heads_plan_defaults(void) {
    molt_heads_plan_opts o;
    memset(&o, 0, sizeof o);
    o.keep = -1;
    o.keep_frac = -1;
    o.random_heads = -1;
    return o;
}

// "L:H,L:H" → ls/hs (cap entries at most; NULL arrays: count only). false on bad syntax.
static bool parse_list(const char *s, int32_t *ls, int32_t *hs, int cap, int *n) {
    *n = 0;
    while (*s) {
        char *e;
        long l = strtol(s, &e, 10);
        if (e == s || *e != ':' || (ls && *n >= cap))
            return false;
        s = e + 1;
        long h = strtol(s, &e, 10);
        if (e == s || l < 0 || h < 0 || l > 1 << 20 || h > 1 << 20)
            return false;
        if (ls) {
            ls[*n] = (int32_t)l;
            hs[*n] = (int32_t)h;
        }
        (*n)++;
        s = e;
        if (*s == ',') {
            s++;
            if (!*s) // a trailing comma: "0:1," is a typo, not a list of one
                return false;
        } else if (*s) {
            return false;
        }
    }
    return *n > 0;
}

// The plan checks that need no model.
static molt_status check_plan(molt_ctx *ctx, const molt_heads_plan_opts *o, int *n_list) {
    int plans = (o->heads != NULL) + (o->keep >= 0) + (o->keep_frac >= 0) + (o->random_heads >= 0);
    if (plans != 1)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "give exactly one of --heads, --keep, --keep-frac, --random-heads "
                         "(got %d)",
                         plans);
    if (o->heads && !parse_list(o->heads, NULL, NULL, 0, n_list))
        return molt__err(ctx, MOLT_ERR_ARG,
                         "--heads expects LAYER:HEAD pairs like 3:1,4:0 (got \"%s\")", o->heads);
    if (o->keep_frac > 1 || isnan(o->keep_frac))
        return molt__err(ctx, MOLT_ERR_ARG, "--keep-frac %g is not a fraction in [0, 1]",
                         o->keep_frac);
    if ((o->keep >= 0 || o->keep_frac >= 0) && !o->ranking)
        return molt__err(ctx, MOLT_ERR_ARG,
                         "--keep / --keep-frac need --ranking FILE (from `molt heads TEACHER "
                         "--json > FILE`)");
    return MOLT_OK;
}

// The first k heads of a ranking file into ls/hs.
static molt_status read_ranking(molt_ctx *ctx, const char *path, int k, int32_t *ls,
                                int32_t *hs) {
    char *txt = NULL;
    size_t len = 0;
    molt_status st = fio_read_all(ctx, path, RANKING_MAX_BYTES, &txt, &len);
    if (st != MOLT_OK)
        return st;
    cJSON *a = NULL;
    st = js_parse_status(ctx, path, txt, len, &a);
    molt__free(txt);
    if (st != MOLT_OK)
        return st;
    int total = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
    if (!cJSON_IsArray(a))
        st = molt__err(ctx, MOLT_ERR_FORMAT,
                       "%s: not a JSON list of heads (from `molt heads --json`)", path);
    else if (total < k)
        st = molt__err(ctx, MOLT_ERR_ARG, "%s ranks %d heads, fewer than --keep %d", path, total,
                       k);
    for (int i = 0; st == MOLT_OK && i < k; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        const cJSON *l = cJSON_GetObjectItem(e, "layer"), *h = cJSON_GetObjectItem(e, "head");
        const cJSON *kind = cJSON_GetObjectItem(e, "kind");
        if (!cJSON_IsNumber(l) || !cJSON_IsNumber(h) || l->valuedouble != floor(l->valuedouble) ||
            h->valuedouble != floor(h->valuedouble) || fabs(l->valuedouble) > 1 << 20 ||
            fabs(h->valuedouble) > 1 << 20)
            st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: entry %d lacks \"layer\"/\"head\"", path, i);
        else if (cJSON_IsString(kind) && strcmp(kind->valuestring, "attention"))
            st = molt__err(ctx, MOLT_ERR_ARG,
                           "%s: entry %d is a %s head: rank the teacher's attention heads "
                           "(`molt heads TEACHER --json`)",
                           path, i, kind->valuestring);
        else {
            ls[i] = (int32_t)l->valuedouble;
            hs[i] = (int32_t)h->valuedouble;
        }
    }
    cJSON_Delete(a);
    return st;
}

// k of the n_layer·n_head pairs: a seeded partial Fisher-Yates shuffle
// (xorshift64), the first k of the permutation.
static molt_status random_plan(molt_ctx *ctx, int n_layer, int n_head, int k, uint64_t seed,
                               int32_t *ls, int32_t *hs) {
    int all = n_layer * n_head;
    int *perm = molt__malloc(sizeof(int) * (size_t)(all > 0 ? all : 1));
    if (!perm)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory (head plan)");
    uint64_t r = seed * 0x9E3779B97F4A7C15ull + 17;
    for (int i = 0; i < all; i++)
        perm[i] = i;
    for (int i = 0; i < k; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int j = i + (int)(r % (uint64_t)(all - i)), tmp = perm[i];
        perm[i] = perm[j], perm[j] = tmp;
        ls[i] = perm[i] / n_head;
        hs[i] = perm[i] % n_head;
    }
    molt__free(perm);
    return MOLT_OK;
}

// Every head exists and none is listed twice.
static molt_status check_heads(molt_ctx *ctx, const model_cfg *c, const int32_t *ls,
                               const int32_t *hs, int n, const char *from) {
    for (int i = 0; i < n; i++) {
        if (ls[i] < 0 || ls[i] >= c->n_layer || hs[i] < 0 || hs[i] >= c->n_head)
            return molt__err(ctx, MOLT_ERR_ARG,
                             "%s%skept head %d:%d does not exist (the teacher has layers 0..%d, "
                             "heads 0..%d)",
                             from ? from : "", from ? ": " : "", ls[i], hs[i], c->n_layer - 1,
                             c->n_head - 1);
        for (int j = 0; j < i; j++)
            if (ls[j] == ls[i] && hs[j] == hs[i])
                return molt__err(ctx, MOLT_ERR_ARG, "%s%shead %d:%d is listed twice",
                                 from ? from : "", from ? ": " : "", ls[i], hs[i]);
    }
    return MOLT_OK;
}

molt_status molt_heads_plan(molt_ctx *ctx, const molt_model *teacher,
                            const molt_heads_plan_opts *o, int32_t **layers, int32_t **heads,
                            int32_t *n) {
    *layers = *heads = NULL;
    *n = 0;
    int n_list = 0;
    molt_status st = check_plan(ctx, o, &n_list);
    if (st != MOLT_OK || !teacher)
        return st;
    const model_cfg *c = &teacher->cfg;
    if (c->arch != ARCH_LLAMA)
        return molt__err(ctx, MOLT_ERR_ARG, "the teacher must be a Llama model (got %s)",
                         model_arch_name(c->arch));
    int all = c->n_layer * c->n_head, k;
    if (o->heads)
        k = n_list;
    else if (o->random_heads >= 0)
        k = o->random_heads;
    else
        k = o->keep >= 0 ? o->keep : (int)lround(o->keep_frac * all);
    if (!o->heads && k > all)
        return molt__err(ctx, MOLT_ERR_ARG, "%s %d, but the teacher has only %d heads",
                         o->random_heads >= 0 ? "--random-heads" : "--keep", k, all);
    if (k == 0)
        return MOLT_OK;
    int32_t *ls = molt__malloc(sizeof(int32_t) * (size_t)k);
    int32_t *hs = molt__malloc(sizeof(int32_t) * (size_t)k);
    if (!ls || !hs)
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory (head plan)");
    else if (o->heads) {
        bool ok = parse_list(o->heads, ls, hs, k, &n_list); // checked above
        MOLT_ASSERT(ok);
    }
    else if (o->random_heads >= 0)
        st = random_plan(ctx, c->n_layer, c->n_head, k, o->seed, ls, hs);
    else
        st = read_ranking(ctx, o->ranking, k, ls, hs);
    if (st == MOLT_OK)
        st = check_heads(ctx, c, ls, hs, k, o->heads || o->random_heads >= 0 ? NULL : o->ranking);
    if (st != MOLT_OK) {
        molt__free(ls);
        molt__free(hs);
        return st;
    }
    *layers = ls;
    *heads = hs;
    *n = k;
    return MOLT_OK;
}
