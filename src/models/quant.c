/*
 * quant.c — q8_0 model files (docs/FORMATS.md): the tensors molt_model_save
 * writes for dtype "q8_0", and what the loader makes of them.
 *
 * Every typed matrix (the ones decoding reads: q/k/v/o, MLP, in/out_proj, the
 * head) is stored as two tensors
 *     NAME        I8  [rows, cols]        q, plain row-major
 *     NAME_scale  F16 [rows, ⌈cols/32⌉]   d, block b of row r: q[r, 32b..32b+31]·d[r, b]
 * except a head tied to the embeddings: the embedding table stays F32 (its
 * rows are gathered, not multiplied) and the head's q8_0 copy is made from it
 * on load — the same bytes as at save. Everything else is F32. config.json
 * says so in "quantization_config" (so that other readers refuse the file
 * instead of misreading it).
 *
 * Loading: the I8 rows are packed as the model's q8_0 copy (wbuf) as they are
 * — a save → load round trip keeps every byte — and their dequantized values
 * (q·d, exact) become the f32 parameters (training, analysis and a later save
 * read those).
 */
#include "models/quant.h"

#include "io/json.h"
#include "kernels/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SCALE_SUFFIX "_scale"

// the rows of matrix t as q8_0: the model's copy when it has one (a loaded
// q8_0 model keeps the file's bytes), else quantized from the f32 parameter
static molt_status rows_of(molt_ctx *ctx, const molt_model *m, const model_typed *t,
                           uint8_t *rows) {
    size_t rb = molt_q8_row_bytes(t->cols);
    if (t->view->dt == MOLT_Q8_0) {
        molt_exec ex = be_exec1(m->be);
        be_download(&ex, rows, t->view->data, t->rows * rb);
        return MOLT_OK;
    }
    for (size_t r = 0; r < t->rows; r++)
        if (!molt_q8_quantize_row(rows + r * rb, t->src + r * t->cols, t->cols))
            return molt__err(ctx, MOLT_ERR_ARG, "%s: row %zu has a value that q8_0 cannot hold "
                                                "(inf, NaN or beyond ±8.3e6)",
                             m->params[t->param].name, r);
    return MOLT_OK;
}

static bool stored_q8(const molt_model *m, const model_typed *t) {
    return t->src != m->embed; // a tied head: the F32 embedding table is stored
}

void model_q8_save_free(q8_save *s) {
    for (int i = 0; i < s->n_own; i++)
        molt__free(s->own[i]);
    molt__free(s->own);
    molt__free(s->ts);
    molt__free(s->names);
    memset(s, 0, sizeof *s);
}

molt_status model_q8_save_tensors(molt_ctx *ctx, const molt_model *cm, q8_save *s) {
    // typed_list hands out pointers to the views; nothing is changed
    molt_model *m = (molt_model *)(uintptr_t)cm;
    memset(s, 0, sizeof *s);
    model_typed *t = NULL;
    int nt = 0;
    molt_status st = model_typed_list(ctx, m, &t, &nt);
    if (st != MOLT_OK)
        return st;
    s->ts = molt__calloc((size_t)(m->n_params + nt), sizeof *s->ts);
    s->own = molt__calloc((size_t)(2 * nt + 1), sizeof *s->own);
    s->names = molt__calloc((size_t)(nt + 1), sizeof *s->names);
    int *of = molt__malloc(sizeof(int) * (size_t)(m->n_params + 1)); // param → typed entry
    if (!s->ts || !s->own || !s->names || !of) {
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory saving the model");
        goto out;
    }
    for (int i = 0; i < m->n_params; i++)
        of[i] = -1;
    for (int k = 0; k < nt; k++)
        if (stored_q8(m, &t[k]))
            of[t[k].param] = k;
    for (int i = 0; i < m->n_params && st == MOLT_OK; i++) {
        const param_info *p = &m->params[i];
        st_wtensor *w = &s->ts[s->n++];
        w->name = p->name;
        w->ndim = p->ndim;
        memcpy(w->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim);
        if (of[i] < 0) {
            w->dtype = ST_F32;
            w->data = m->data + p->offset;
            continue;
        }
        const model_typed *tk = &t[of[i]];
        size_t rb = molt_q8_row_bytes(tk->cols), nb = molt_q8_blocks(tk->cols);
        uint8_t  *rows = molt__malloc(rb * (tk->rows ? tk->rows : 1));
        int8_t   *q = molt__malloc(tk->n ? tk->n : 1);
        uint16_t *d = molt__malloc(2 * (tk->rows * nb > 0 ? tk->rows * nb : 1));
        s->own[s->n_own++] = q, s->own[s->n_own++] = d;
        if (!rows || !q || !d) {
            molt__free(rows);
            st = molt__err(ctx, MOLT_ERR_OOM, "out of memory saving %s as q8_0", p->name);
            break;
        }
        if ((st = rows_of(ctx, m, tk, rows)) == MOLT_OK)
            for (size_t r = 0; r < tk->rows; r++)
                molt_q8_unpack_row(q + r * tk->cols, d + r * nb, rows + r * rb, tk->cols);
        molt__free(rows);
        w->dtype = ST_I8;
        w->raw = q;
        w->ndim = 2;
        w->shape[0] = (int64_t)tk->rows, w->shape[1] = (int64_t)tk->cols;
        st_wtensor *ws = &s->ts[s->n++];
        snprintf(s->names[of[i]], sizeof s->names[0], "%s" SCALE_SUFFIX, p->name);
        ws->name = s->names[of[i]];
        ws->dtype = ST_F16;
        ws->ndim = 2;
        ws->shape[0] = (int64_t)tk->rows, ws->shape[1] = (int64_t)nb;
        ws->raw = d;
    }
out:
    molt__free(of);
    molt__free(t);
    if (st != MOLT_OK)
        model_q8_save_free(s);
    return st;
}

molt_status model_q8_config(molt_ctx *ctx, const char *json, char **out) {
    cJSON *o = js_parse(ctx, "config.json", json, strlen(json));
    if (!o)
        return MOLT_ERR_OOM;
    cJSON *q = cJSON_AddObjectToObject(o, "quantization_config");
    bool ok = q && cJSON_AddStringToObject(q, "quant_method", "molt_q8_0") &&
              cJSON_AddNumberToObject(q, "block_size", MOLT_Q8_BLOCK) &&
              cJSON_AddStringToObject(q, "scale_dtype", "float16") &&
              cJSON_AddStringToObject(q, "scale_suffix", SCALE_SUFFIX);
    char *txt = ok ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!txt)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory writing config.json");
    *out = txt;
    return MOLT_OK;
}

bool model_q8_is_scale(const molt_model *m, const char *name) {
    size_t n = strlen(name), k = strlen(SCALE_SUFFIX);
    if (n <= k || strcmp(name + n - k, SCALE_SUFFIX) != 0 || n - k >= MODEL_NAME_MAX)
        return false;
    char base[MODEL_NAME_MAX];
    memcpy(base, name, n - k);
    base[n - k] = 0;
    return model_param(m, base) != NULL;
}

// one I8 matrix of the file → packed rows (returned) and the f32 parameter
static molt_status load_one(molt_ctx *ctx, molt_model *m, const st_file *f, const st_tensor *t,
                            const model_typed *tk, uint8_t **packed) {
    const char *path = st_shard_path(f, t->shard);
    char sname[MODEL_NAME_MAX + 8];
    snprintf(sname, sizeof sname, "%s" SCALE_SUFFIX, t->name);
    const st_tensor *sc = st_find(f, sname);
    size_t nb = molt_q8_blocks(tk->cols), rb = molt_q8_row_bytes(tk->cols);
    if (t->ndim != 2 || (size_t)t->shape[0] != tk->rows || (size_t)t->shape[1] != tk->cols)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: q8_0 tensor '%s' is not [%zu, %zu]", path,
                         t->name, tk->rows, tk->cols);
    if (!sc || sc->dtype != ST_F16 || sc->ndim != 2 || (size_t)sc->shape[0] != tk->rows ||
        (size_t)sc->shape[1] != nb)
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: q8_0 tensor '%s' needs '%s', F16 [%zu, %zu]",
                         path, t->name, sname, tk->rows, nb);
    uint8_t  *rows = molt__malloc(rb * (tk->rows ? tk->rows : 1));
    int8_t   *q = molt__malloc(tk->cols ? tk->cols : 1);
    uint16_t *d = molt__malloc(2 * (nb ? nb : 1));
    molt_status st = MOLT_OK;
    if (!rows || !q || !d)
        st = molt__err(ctx, MOLT_ERR_OOM, "out of memory loading %s", t->name);
    float *dst = m->data + m->params[tk->param].offset;
    for (size_t r = 0; r < tk->rows && st == MOLT_OK; r++) {
        memcpy(q, (const int8_t *)t->data + r * tk->cols, tk->cols); // the mapping: unaligned
        memcpy(d, (const uint8_t *)sc->data + 2 * r * nb, 2 * nb);
        if (!molt_q8_pack_row(rows + r * rb, q, d, tk->cols))
            st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: q8_0 tensor '%s', row %zu: a value of -128 "
                                                 "or a scale that is negative, inf or NaN",
                           path, t->name, r);
        else
            molt_q8_dequantize_row(dst + r * tk->cols, rows + r * rb, tk->cols);
    }
    molt__free(q);
    molt__free(d);
    if (st != MOLT_OK) {
        molt__free(rows);
        return st;
    }
    *packed = rows;
    return MOLT_OK;
}

molt_status model_q8_load(molt_ctx *ctx, molt_model *m, const st_file *f, const char *dir) {
    int any = 0;
    for (int i = 0; i < m->n_params; i++) {
        const st_tensor *t = st_find(f, m->params[i].name);
        any |= t && t->dtype == ST_I8;
    }
    if (!any)
        return MOLT_OK;
    model_typed *t = NULL;
    int nt = 0;
    molt_status st = model_typed_list(ctx, m, &t, &nt);
    if (st != MOLT_OK)
        return st;
    uint8_t **packed = molt__calloc((size_t)m->n_params, sizeof *packed);
    if (!packed) {
        molt__free(t);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory loading %s", dir);
    }
    for (int i = 0; i < m->n_params && st == MOLT_OK; i++) {
        const st_tensor *ten = st_find(f, m->params[i].name);
        if (!ten || ten->dtype != ST_I8)
            continue;
        int k = 0;
        while (k < nt && t[k].param != i)
            k++;
        if (k == nt)
            st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: tensor '%s' has dtype I8, but only the "
                                                 "weight matrices decoding reads can be q8_0",
                           st_shard_path(f, ten->shard), ten->name);
        else
            st = load_one(ctx, m, f, ten, &t[k], &packed[i]);
    }
    if (st == MOLT_OK) // the others (a tied head) are quantized from their f32 parameter
        st = model_set_typed(ctx, m, MOLT_Q8_0, (const uint8_t *const *)packed);
    for (int i = 0; i < m->n_params; i++)
        molt__free(packed[i]);
    molt__free(packed);
    molt__free(t);
    return st;
}
