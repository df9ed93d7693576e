/*
 * config_mamba3.c — the "mamba3_cfg" block of config.json (contract in
 * models/config_mamba3.h). Defaults are the Mamba3 module's: d_state 128,
 * expand 2, headdim 64, ngroups 1, rope_fraction 0.5, A_floor 1e-4,
 * is_outproj_norm false, is_mimo false, mimo_rank 4 (read only with is_mimo),
 * chunk_size 64; norm_eps 1e-5 (the module's B/C and out norms).
 */
#include "models/config_mamba3.h"

#include "io/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool any_m3(const model_cfg *c) {
    for (int l = 0; l < c->n_layer; l++)
        if (layer_rec_kind(c, l) == LAYER_MAMBA3)
            return true;
    return false;
}

molt_status mamba3_cfg_from_json(molt_ctx *ctx, const char *w, const cJSON *o, model_cfg *c) {
    if (!any_m3(c))
        return MOLT_OK;
    const cJSON *b = NULL;
    MOLT_TRY(js_get_obj(ctx, w, o, "mamba3_cfg", 1, &b));
    mamba3_cfg s = {0};
    int64_t N, expand, P, G, R = 1, chunk;
    double rf, Af, eps;
    bool mimo, norm;
    MOLT_TRY(js_get_int(ctx, w, b, "d_state", 0, 1, 1 << 20, 128, &N));
    MOLT_TRY(js_get_int(ctx, w, b, "expand", 0, 1, 64, 2, &expand));
    MOLT_TRY(js_get_int(ctx, w, b, "headdim", 0, 1, 1 << 20, 64, &P));
    MOLT_TRY(js_get_int(ctx, w, b, "ngroups", 0, 1, 1 << 20, 1, &G));
    MOLT_TRY(js_get_float(ctx, w, b, "rope_fraction", 0, 0.5, &rf));
    MOLT_TRY(js_get_float(ctx, w, b, "A_floor", 0, 1e-4, &Af));
    MOLT_TRY(js_get_float(ctx, w, b, "norm_eps", 0, 1e-5, &eps));
    MOLT_TRY(js_get_bool(ctx, w, b, "is_outproj_norm", 0, false, &norm));
    MOLT_TRY(js_get_bool(ctx, w, b, "is_mimo", 0, false, &mimo));
    if (mimo)
        MOLT_TRY(js_get_int(ctx, w, b, "mimo_rank", 0, 1, 64, 4, &R));
    MOLT_TRY(js_get_int(ctx, w, b, "chunk_size", 0, 1, 1 << 20, 64, &chunk));
    s.d_model = c->d_model;
    s.d_inner = (int)expand * c->d_model;
    if (s.d_inner % P)
        return molt__err(ctx, MOLT_ERR_SHAPE,
                         "%s: mamba3_cfg: d_inner %d (expand %d × d_model) is not divisible by "
                         "headdim %d",
                         w, s.d_inner, (int)expand, (int)P);
    s.P = (int)P, s.H = s.d_inner / s.P, s.N = (int)N, s.G = (int)G, s.R = (int)R;
    s.mimo = mimo, s.outproj_norm = norm, s.chunk = (int)chunk;
    s.rope_fraction = (float)rf, s.A_floor = (float)Af, s.eps = (float)eps;
    const char *e = mamba3_cfg_check(&s);
    if (e)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: mamba3_cfg: %s", w, e);
    for (int l = 0; l < MODEL_MAX_LAYERS; l++)
        c->m3_layer[l] = s;
    return MOLT_OK;
}

// a float as the shortest literal that reads back as the same float
static void add_float(cJSON *o, const char *key, float v) {
    char buf[48];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eEn"))
        strcat(buf, ".0");
    cJSON_AddItemToObject(o, key, cJSON_CreateRaw(buf));
}

molt_status mamba3_cfg_to_json(molt_ctx *ctx, cJSON *o, const model_cfg *c) {
    const mamba3_cfg *s = NULL;
    for (int l = 0; l < c->n_layer; l++) {
        if (layer_rec_kind(c, l) != LAYER_MAMBA3)
            continue;
        if (!s)
            s = layer_m3(c, l);
        else if (memcmp(s, layer_m3(c, l), sizeof *s) != 0)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "config.json: the Mamba-3 layers' configs differ; the format has one "
                             "mamba3_cfg for all of them");
    }
    if (!s)
        return MOLT_OK;
    cJSON *b = cJSON_AddObjectToObject(o, "mamba3_cfg");
    cJSON_AddNumberToObject(b, "d_state", s->N);
    cJSON_AddNumberToObject(b, "expand", s->d_inner / c->d_model);
    cJSON_AddNumberToObject(b, "headdim", s->P);
    cJSON_AddNumberToObject(b, "ngroups", s->G);
    add_float(b, "rope_fraction", s->rope_fraction);
    add_float(b, "A_floor", s->A_floor);
    add_float(b, "norm_eps", s->eps);
    cJSON_AddBoolToObject(b, "is_outproj_norm", s->outproj_norm != 0);
    cJSON_AddBoolToObject(b, "is_mimo", s->mimo != 0);
    if (s->mimo)
        cJSON_AddNumberToObject(b, "mimo_rank", s->R);
    cJSON_AddNumberToObject(b, "chunk_size", s->chunk);
    return MOLT_OK;
}
