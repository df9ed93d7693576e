/*
 * problems.c — molt_problems_load: GSM8K jsonl ({"question", "answer"} a line,
 * the key after the last "####") or SVAMP's JSON array ({"Body", "Question",
 * "Answer": number}). Every record must give a question and a numeric answer;
 * anything else is MOLT_ERR_FORMAT naming the file and the record.
 */
#include "core/core.h"
#include "io/fileio.h"
#include "io/json.h"

#include <stdio.h>
#include <string.h>

#define PROBLEMS_MAX_FILE ((size_t)1 << 30)

void molt_problems_free(molt_problem *p, int32_t n) {
    if (!p)
        return;
    for (int32_t i = 0; i < n; i++) {
        molt__free(p[i].question);
        molt__free(p[i].solution);
    }
    molt__free(p);
}

typedef struct plist {
    molt_problem *p;
    int32_t       n, cap;
} plist;

static molt_status push(molt_ctx *ctx, plist *l, char *q, char *sol, const char *where) {
    if (!q || !sol) {
        molt__free(q);
        molt__free(sol);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
    }
    if (l->n == l->cap) {
        int32_t cap = l->cap ? l->cap * 2 : 64;
        void   *t = cap > l->cap ? molt__realloc(l->p, sizeof(molt_problem) * (size_t)cap) : NULL;
        if (!t) {
            molt__free(q);
            molt__free(sol);
            return molt__err(ctx, MOLT_ERR_OOM, "out of memory for %d problems", l->n + 1);
        }
        l->p = t, l->cap = cap;
    }
    molt_problem *p = &l->p[l->n];
    p->question = q, p->solution = sol;
    const char *mark = NULL;
    for (const char *s = sol; (s = strstr(s, "####")); s += 4)
        mark = s + 4;
    if (mark)
        molt_answer_parse(mark, strlen(mark), &p->answer);
    else
        molt_answer_parse(sol, strlen(sol), &p->answer);
    if (!p->answer.found) {
        molt__free(q);
        molt__free(sol);
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: the answer is not one number after \"####\"",
                         where);
    }
    l->n++;
    return MOLT_OK;
}

static char *join(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char  *s = molt__malloc(na + nb + 2);
    if (!s)
        return NULL;
    memcpy(s, a, na);
    size_t o = na;
    if (na && nb)
        s[o++] = ' ';
    memcpy(s + o, b, nb + 1);
    return s;
}

static molt_status svamp(molt_ctx *ctx, const char *path, const char *buf, size_t len, plist *l) {
    cJSON *root = js_parse(ctx, path, buf, len);
    if (!root)
        return molt_last_status(ctx);
    molt_status st = MOLT_OK;
    int         i = 0;
    if (!cJSON_IsArray(root))
        st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: expected a JSON array of problems", path);
    for (cJSON *e = root->child; st == MOLT_OK && e; e = e->next, i++) {
        char where[512];
        snprintf(where, sizeof where, "%s: record %d", path, i);
        const char *body, *q;
        double      ans;
        if ((st = js_get_str(ctx, where, e, "Body", 0, "", &body)) != MOLT_OK ||
            (st = js_get_str(ctx, where, e, "Question", 1, NULL, &q)) != MOLT_OK ||
            (st = js_get_float(ctx, where, e, "Answer", 1, 0, &ans)) != MOLT_OK)
            break;
        char num[64];
        snprintf(num, sizeof num, "%.10g", ans);
        st = push(ctx, l, join(body, q), molt__strdup(num), where);
    }
    cJSON_Delete(root);
    return st;
}

static molt_status gsm8k(molt_ctx *ctx, const char *path, const char *buf, size_t len, plist *l) {
    molt_status st = MOLT_OK;
    int         line = 0;
    for (const char *p = buf, *end = buf + len; st == MOLT_OK && p < end; line++) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        e = e ? e : end;
        const char *a = p;
        while (a < e && (*a == ' ' || *a == '\t' || *a == '\r'))
            a++;
        if (a < e) {
            char where[512];
            snprintf(where, sizeof where, "%s: line %d", path, line + 1);
            cJSON *o = js_parse(ctx, where, p, (size_t)(e - p));
            if (!o)
                return molt_last_status(ctx);
            const char *q, *ans;
            if (!cJSON_IsObject(o))
                st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: expected a JSON object", where);
            else if ((st = js_get_str(ctx, where, o, "question", 1, NULL, &q)) == MOLT_OK &&
                     (st = js_get_str(ctx, where, o, "answer", 1, NULL, &ans)) == MOLT_OK)
                st = push(ctx, l, molt__strdup(q), molt__strdup(ans), where);
            cJSON_Delete(o);
        }
        p = e + 1;
    }
    return st;
}

molt_status molt_problems_load(molt_ctx *ctx, const char *path, molt_problem **out, int32_t *n) {
    *out = NULL, *n = 0;
    char  *buf = NULL;
    size_t len = 0;
    MOLT_TRY(fio_read_all(ctx, path, PROBLEMS_MAX_FILE, &buf, &len));
    js_init_hooks();
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t'))
        i++;
    plist       l = {0};
    molt_status st = i < len && buf[i] == '[' ? svamp(ctx, path, buf, len, &l)
                                              : gsm8k(ctx, path, buf, len, &l);
    molt__free(buf);
    if (st == MOLT_OK && l.n == 0)
        st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: no problems in the file", path);
    if (st != MOLT_OK) {
        molt_problems_free(l.p, l.n);
        return st;
    }
    *out = l.p, *n = l.n;
    return MOLT_OK;
}
