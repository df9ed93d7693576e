/*
 * config.c — config.json ⇄ model_cfg for every architecture molt loads.
 *
 *   llama        HF LlamaConfig. RoPE both as transformers-4 `rope_theta` +
 *                `rope_scaling{rope_type|type, factor, ...}` and transformers-5
 *                `rope_parameters{rope_theta, rope_type, ...}`; rope types
 *                "default", "llama3", "linear". head_dim given or hidden/heads.
 *   llamba       cartesia LlambaConfig (d_model, n_layer, mlp_cfg, ssm_cfg).
 *   mamba2       HF Mamba2Config (time_step_limit may hold {"__float__": "Infinity"}).
 *   molt_hybrid  molt's own: the llamba keys + "attn_cfg" (the teacher's attention
 *                geometry and RoPE) + "layers": [{"mixer": "attention" | "ssm" |
 *                "hybrid" | "mamba3" | "gateloop", "attention_heads": [..], hybrids: "recurrent":
 *                "ssm" (default) | "mamba3" | "gateloop"}], + "mamba3_cfg"
 *                when a layer is Mamba-3 (config_mamba3.c), "gateloop_cfg": {n_heads,
 *                head_dim, chunk_size} with GateLoop layers; "ssm_cfg" only when a layer
 *                has an SSM                                         (docs/FORMATS.md)
 *
 * Unknown model_type → MOLT_ERR_UNSUPPORTED; every bad key names itself.
 */
#include "io/json.h"
#include "models/config_mamba3.h"
#include "models/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const int64_t BIG = (int64_t)1 << 30;

static molt_status geti(molt_ctx *ctx, const char *w, const cJSON *o, const char *k, int req,
                        int64_t lo, int64_t hi, int64_t def, int *out) {
    int64_t v;
    MOLT_TRY(js_get_int(ctx, w, o, k, req, lo, hi, def, &v));
    *out = (int)v;
    return MOLT_OK;
}

static molt_status getf(molt_ctx *ctx, const char *w, const cJSON *o, const char *k, int req,
                        double def, float *out) {
    double v;
    MOLT_TRY(js_get_float(ctx, w, o, k, req, def, &v));
    *out = (float)v;
    return MOLT_OK;
}

// bos/eos may be an int, a list of ints (first is used), or null
static molt_status get_token_id(molt_ctx *ctx, const char *w, const cJSON *o, const char *k,
                                int def, int *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    *out = def;
    if (!it || cJSON_IsNull(it))
        return MOLT_OK;
    if (cJSON_IsArray(it))
        it = cJSON_GetArrayItem(it, 0);
    int64_t v;
    if (!it || !js_whole(it, 0, BIG, &v))
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: \"%s\" must be a token id or a list of them",
                         w, k);
    *out = (int)v;
    return MOLT_OK;
}

// RoPE from either spelling. `params` is rope_parameters (t5) or rope_scaling (t4).
static molt_status parse_rope(molt_ctx *ctx, const char *w, const cJSON *root, rope_cfg *r) {
    const cJSON *rp = NULL, *rs = NULL;
    MOLT_TRY(js_get_obj(ctx, w, root, "rope_parameters", 0, &rp));
    MOLT_TRY(js_get_obj(ctx, w, root, "rope_scaling", 0, &rs));
    memset(r, 0, sizeof *r);
    r->kind = ROPE_DEFAULT;
    r->factor = 1.0f;
    double theta = 10000.0;
    MOLT_TRY(js_get_float(ctx, w, root, "rope_theta", 0, theta, &theta));
    const cJSON *sc = rs;
    if (rp) {
        MOLT_TRY(js_get_float(ctx, w, rp, "rope_theta", 0, theta, &theta));
        sc = rp;
    }
    r->theta = (float)theta;
    if (!sc)
        return MOLT_OK;
    const char *type = NULL;
    MOLT_TRY(js_get_str(ctx, w, sc, "rope_type", 0, NULL, &type));
    if (!type)
        MOLT_TRY(js_get_str(ctx, w, sc, "type", 0, "default", &type));
    if (strcmp(type, "default") == 0)
        return MOLT_OK;
    if (strcmp(type, "linear") == 0) {
        r->kind = ROPE_LINEAR;
        return getf(ctx, w, sc, "factor", 1, 1.0, &r->factor);
    }
    if (strcmp(type, "llama3") == 0) {
        r->kind = ROPE_LLAMA3;
        MOLT_TRY(getf(ctx, w, sc, "factor", 1, 0, &r->factor));
        MOLT_TRY(getf(ctx, w, sc, "low_freq_factor", 1, 0, &r->low_freq_factor));
        MOLT_TRY(getf(ctx, w, sc, "high_freq_factor", 1, 0, &r->high_freq_factor));
        return geti(ctx, w, sc, "original_max_position_embeddings", 1, 1, BIG, 0,
                    &r->orig_max_pos);
    }
    return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                     "%s: rope type \"%s\" is not supported (default, linear, llama3)", w, type);
}

static molt_status parse_llama(molt_ctx *ctx, const char *w, const cJSON *o, model_cfg *c) {
    const char *act = NULL;
    MOLT_TRY(js_get_str(ctx, w, o, "hidden_act", 0, "silu", &act));
    if (strcmp(act, "silu") != 0)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: hidden_act \"%s\" (only silu)", w, act);
    MOLT_TRY(geti(ctx, w, o, "hidden_size", 1, 1, BIG, 0, &c->d_model));
    MOLT_TRY(geti(ctx, w, o, "num_hidden_layers", 1, 1, MODEL_MAX_LAYERS, 0, &c->n_layer));
    MOLT_TRY(geti(ctx, w, o, "num_attention_heads", 1, 1, BIG, 0, &c->n_head));
    MOLT_TRY(geti(ctx, w, o, "num_key_value_heads", 0, 1, BIG, c->n_head, &c->n_kv_head));
    if (c->d_model % c->n_head && !cJSON_GetObjectItem(o, "head_dim"))
        return molt__err(ctx, MOLT_ERR_SHAPE,
                         "%s: hidden_size %d is not divisible by num_attention_heads %d", w,
                         c->d_model, c->n_head);
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(o, "head_dim");
    int def_hd = c->d_model / c->n_head;
    if (hd && !cJSON_IsNull(hd))
        MOLT_TRY(geti(ctx, w, o, "head_dim", 1, 1, BIG, def_hd, &c->head_dim));
    else
        c->head_dim = def_hd;
    MOLT_TRY(geti(ctx, w, o, "intermediate_size", 1, 1, BIG, 0, &c->d_ff));
    MOLT_TRY(geti(ctx, w, o, "vocab_size", 1, 1, BIG, 0, &c->vocab));
    MOLT_TRY(geti(ctx, w, o, "max_position_embeddings", 0, 1, BIG, 2048, &c->max_seq));
    MOLT_TRY(getf(ctx, w, o, "rms_norm_eps", 0, 1e-6, &c->norm_eps));
    MOLT_TRY(js_get_bool(ctx, w, o, "tie_word_embeddings", 0, false, &c->tie_embeddings));
    MOLT_TRY(js_get_bool(ctx, w, o, "attention_bias", 0, false, &c->attn_bias));
    MOLT_TRY(js_get_bool(ctx, w, o, "mlp_bias", 0, false, &c->mlp_bias));
    if (c->mlp_bias)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: mlp_bias=true is not supported", w);
    MOLT_TRY(parse_rope(ctx, w, o, &c->rope));
    c->has_mlp = true;
    for (int l = 0; l < c->n_layer; l++)
        c->kind[l] = LAYER_ATTN;
    return MOLT_OK;
}

// ssm_cfg's "layer" (state-spaces' MambaConfig spelling): "DiscreteMamba2" (default, Llamba)
// or "Mamba2" (the Mamba-2 mixer of HF Mamba2 checkpoints: molt's Mamba-2 students), and the
// conv activation each has ("identity" / "silu")
static molt_status parse_ssm_layer(molt_ctx *ctx, const char *w, const cJSON *ssm, ssm_cfg *s) {
    const char *layer = NULL, *act = NULL;
    MOLT_TRY(js_get_str(ctx, w, ssm, "layer", 0, "DiscreteMamba2", &layer));
    bool m2 = !strcmp(layer, "Mamba2");
    if (!m2 && strcmp(layer, "DiscreteMamba2"))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "%s: ssm_cfg.layer \"%s\" (DiscreteMamba2 or Mamba2)", w, layer);
    s->kind = m2 ? SSM_MAMBA2 : SSM_DISCRETE;
    MOLT_TRY(js_get_str(ctx, w, ssm, "activation", 0, m2 ? "silu" : "identity", &act));
    if (strcmp(act, m2 ? "silu" : "identity") != 0)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: ssm_cfg.activation \"%s\" (%s uses %s)",
                         w, act, layer, m2 ? "silu" : "identity");
    return MOLT_OK;
}

// llamba / molt_hybrid SSM + MLP part (ssm_cfg: required for llamba; a molt_hybrid
// whose layers have no SSM may leave it out, parse_hybrid checks)
static molt_status parse_llamba(molt_ctx *ctx, const char *w, const cJSON *o, model_cfg *c) {
    MOLT_TRY(geti(ctx, w, o, "d_model", 1, 1, BIG, 0, &c->d_model));
    MOLT_TRY(geti(ctx, w, o, "n_layer", 1, 1, MODEL_MAX_LAYERS, 0, &c->n_layer));
    MOLT_TRY(geti(ctx, w, o, "vocab_size", 1, 1, BIG, 0, &c->vocab));
    int mult = 1;
    MOLT_TRY(geti(ctx, w, o, "pad_vocab_size_multiple", 0, 1, 1 << 16, 1, &mult));
    c->vocab = (c->vocab + mult - 1) / mult * mult;
    MOLT_TRY(js_get_bool(ctx, w, o, "tie_embeddings", 0, true, &c->tie_embeddings));
    MOLT_TRY(getf(ctx, w, o, "norm_epsilon", 0, 1e-5, &c->norm_eps));
    if (c->arch == ARCH_LLAMBA) { // cartesia's Block: its two norms at eps 1e-5, whatever
        c->final_norm_eps = c->norm_eps; // norm_epsilon says (only the final norm reads it)
        c->norm_eps = 1e-5f;
    } else { // molt_hybrid: norm_epsilon everywhere unless the final norm has its own
        MOLT_TRY(getf(ctx, w, o, "final_norm_epsilon", 0, c->norm_eps, &c->final_norm_eps));
    }
    MOLT_TRY(geti(ctx, w, o, "max_position_embeddings", 0, 1, BIG, 1 << 20, &c->max_seq));
    bool lm_bias = false;
    MOLT_TRY(js_get_bool(ctx, w, o, "lm_head_bias", 0, false, &lm_bias));
    if (lm_bias)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: lm_head_bias=true is not supported", w);
    const cJSON *mlp = NULL, *ssm = NULL;
    MOLT_TRY(js_get_obj(ctx, w, o, "mlp_cfg", 1, &mlp));
    MOLT_TRY(geti(ctx, w, mlp, "intermediate_size", 1, 1, BIG, 0, &c->d_ff));
    bool mb = false;
    MOLT_TRY(js_get_bool(ctx, w, mlp, "bias", 0, false, &mb));
    const char *act = NULL;
    MOLT_TRY(js_get_str(ctx, w, mlp, "act_fn", 0, "silu", &act));
    if (mb || strcmp(act, "silu") != 0)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "%s: mlp_cfg must be bias=false, act_fn=silu (got bias=%d, act_fn=%s)", w,
                         (int)mb, act);
    c->has_mlp = true;
    MOLT_TRY(js_get_obj(ctx, w, o, "ssm_cfg", c->arch == ARCH_LLAMBA, &ssm));
    for (int l = 0; l < c->n_layer; l++)
        c->kind[l] = LAYER_SSM;
    if (!ssm)
        return MOLT_OK;
    ssm_cfg sc = {0}, *s = &sc; // the file's one block: every layer's (model_cfg_set_ssm)
    s->kind = SSM_DISCRETE;
    s->d_model = c->d_model;
    int expand = 1;
    MOLT_TRY(geti(ctx, w, ssm, "d_state", 1, 1, BIG, 0, &s->N));
    MOLT_TRY(geti(ctx, w, ssm, "n_v_heads", 1, 1, BIG, 0, &s->H));
    MOLT_TRY(geti(ctx, w, ssm, "n_qk_heads", 0, 1, BIG, s->H, &s->G));
    MOLT_TRY(geti(ctx, w, ssm, "expand", 0, 1, 64, 1, &expand));
    MOLT_TRY(geti(ctx, w, ssm, "chunk_size", 0, 1, BIG, 128, &s->chunk));
    MOLT_TRY(geti(ctx, w, ssm, "d_conv", 0, 1, 64, 4, &s->K));
    MOLT_TRY(js_get_bool(ctx, w, ssm, "bias", 0, false, &c->ssm_bias));
    MOLT_TRY(js_get_bool(ctx, w, ssm, "conv_bias", 0, true, &c->conv_bias));
    MOLT_TRY(parse_ssm_layer(ctx, w, ssm, s));
    s->d_inner = expand * c->d_model;
    if (s->d_inner % s->H)
        return molt__err(ctx, MOLT_ERR_SHAPE,
                         "%s: d_inner %d (expand %d × d_model) is not divisible by n_v_heads %d", w,
                         s->d_inner, expand, s->H);
    s->P = s->d_inner / s->H;
    if (s->H % s->G)
        return molt__err(ctx, MOLT_ERR_SHAPE,
                         "%s: n_v_heads %d is not a multiple of n_qk_heads %d", w, s->H, s->G);
    s->norm_eps = c->norm_eps;
    s->dt_limit_lo = 0.0f;
    s->dt_limit_hi = INFINITY;
    model_cfg_set_ssm(c, s);
    return MOLT_OK;
}

static molt_status parse_mamba2(molt_ctx *ctx, const char *w, const cJSON *o, model_cfg *c) {
    ssm_cfg sc = {0}, *s = &sc; // every layer's (model_cfg_set_ssm)
    MOLT_TRY(geti(ctx, w, o, "hidden_size", 1, 1, BIG, 0, &c->d_model));
    MOLT_TRY(geti(ctx, w, o, "num_hidden_layers", 1, 1, MODEL_MAX_LAYERS, 0, &c->n_layer));
    MOLT_TRY(geti(ctx, w, o, "vocab_size", 1, 1, BIG, 0, &c->vocab));
    MOLT_TRY(getf(ctx, w, o, "layer_norm_epsilon", 0, 1e-5, &c->norm_eps));
    MOLT_TRY(js_get_bool(ctx, w, o, "tie_word_embeddings", 0, false, &c->tie_embeddings));
    MOLT_TRY(geti(ctx, w, o, "max_position_embeddings", 0, 1, BIG, 1 << 20, &c->max_seq));
    s->kind = SSM_MAMBA2;
    s->d_model = c->d_model;
    int expand = 2;
    MOLT_TRY(geti(ctx, w, o, "num_heads", 1, 1, BIG, 0, &s->H));
    MOLT_TRY(geti(ctx, w, o, "head_dim", 1, 1, BIG, 0, &s->P));
    MOLT_TRY(geti(ctx, w, o, "state_size", 1, 1, BIG, 0, &s->N));
    MOLT_TRY(geti(ctx, w, o, "expand", 0, 1, 64, 2, &expand));
    MOLT_TRY(geti(ctx, w, o, "n_groups", 0, 1, BIG, 1, &s->G));
    MOLT_TRY(geti(ctx, w, o, "conv_kernel", 0, 1, 64, 4, &s->K));
    MOLT_TRY(geti(ctx, w, o, "chunk_size", 0, 1, BIG, 256, &s->chunk));
    MOLT_TRY(js_get_bool(ctx, w, o, "use_bias", 0, false, &c->ssm_bias));
    MOLT_TRY(js_get_bool(ctx, w, o, "use_conv_bias", 0, true, &c->conv_bias));
    bool rms = true;
    MOLT_TRY(js_get_bool(ctx, w, o, "rms_norm", 0, true, &rms));
    if (!rms)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: rms_norm=false is not supported", w);
    const char *act = NULL;
    MOLT_TRY(js_get_str(ctx, w, o, "hidden_act", 0, "silu", &act));
    if (strcmp(act, "silu") != 0)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: hidden_act \"%s\" (only silu)", w, act);
    s->d_inner = expand * c->d_model;
    if (s->H * s->P != s->d_inner)
        return molt__err(ctx, MOLT_ERR_SHAPE,
                         "%s: num_heads %d × head_dim %d != expand %d × hidden_size %d", w, s->H,
                         s->P, expand, c->d_model);
    if (s->H % s->G)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: num_heads %d is not a multiple of n_groups %d",
                         w, s->H, s->G);
    s->norm_eps = c->norm_eps;
    s->dt_limit_lo = 0.0f;
    s->dt_limit_hi = INFINITY;
    const cJSON *lim = NULL;
    MOLT_TRY(js_get_arr(ctx, w, o, "time_step_limit", 0, &lim));
    if (lim) {
        double lo, hi;
        if (cJSON_GetArraySize(lim) != 2 || !js_float_value(cJSON_GetArrayItem(lim, 0), &lo) ||
            !js_float_value(cJSON_GetArrayItem(lim, 1), &hi) || !(lo >= 0) || !(hi >= lo))
            return molt__err(ctx, MOLT_ERR_FORMAT,
                             "%s: time_step_limit must be [lo, hi] with 0 <= lo <= hi", w);
        s->dt_limit_lo = (float)lo;
        s->dt_limit_hi = (float)hi;
    }
    model_cfg_set_ssm(c, s);
    c->has_mlp = false;
    for (int l = 0; l < c->n_layer; l++)
        c->kind[l] = LAYER_SSM;
    return MOLT_OK;
}

// GateLoop layers' block (molt_hybrid): "gateloop_cfg": {"n_heads", "head_dim", "chunk_size"},
// one for every GateLoop layer; required when a layer's mixer is "gateloop"
static molt_status parse_gateloop(molt_ctx *ctx, const char *w, const cJSON *o, model_cfg *c) {
    bool any = false;
    for (int l = 0; l < c->n_layer; l++)
        any |= layer_rec_kind(c, l) == LAYER_GATELOOP;
    const cJSON *g = NULL;
    MOLT_TRY(js_get_obj(ctx, w, o, "gateloop_cfg", any, &g));
    if (!g)
        return MOLT_OK;
    gateloop_cfg gc = {0};
    gc.d_model = c->d_model;
    MOLT_TRY(geti(ctx, w, g, "n_heads", 1, 1, BIG, 0, &gc.H));
    MOLT_TRY(geti(ctx, w, g, "head_dim", 1, 2, BIG, 0, &gc.P));
    MOLT_TRY(geti(ctx, w, g, "chunk_size", 0, 1, BIG, 64, &gc.chunk));
    if ((int64_t)gc.H * gc.P > BIG)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: gateloop_cfg n_heads × head_dim too large", w);
    gc.d_inner = gc.H * gc.P;
    model_cfg_set_gl(c, &gc);
    return MOLT_OK;
}

// a layer of c runs the ssm_cfg SSM (every layer of a llamba / mamba2 model)
static bool uses_ssm(const model_cfg *c) {
    for (int l = 0; l < c->n_layer; l++)
        if (layer_rec_kind(c, l) == LAYER_SSM)
            return true;
    return false;
}

// a "layers" entry's mixer runs the teacher's attention (needs attn_cfg)
static bool layer_needs_attn(const cJSON *L) {
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(L, "mixer");
    return !cJSON_IsString(mx) || !strcmp(mx->valuestring, layer_kind_name(LAYER_ATTN)) ||
           !strcmp(mx->valuestring, layer_kind_name(LAYER_HYBRID));
}

// a hybrid layer's "recurrent": the mixer beside its kept heads ("ssm" when absent)
static molt_status parse_hybrid_rec(molt_ctx *ctx, const char *where, const cJSON *L,
                                    model_cfg *c, int l) {
    const char *rec = NULL;
    MOLT_TRY(js_get_str(ctx, where, L, "recurrent", 0, "ssm", &rec));
    layer_kind k;
    if (!layer_kind_parse(rec, &k) || k == LAYER_ATTN || k == LAYER_HYBRID)
        return molt__err(ctx, MOLT_ERR_FORMAT,
                         "%s: recurrent \"%s\" (expected ssm, mamba3 or gateloop)", where, rec);
    c->hyb_rec[l] = k;
    return MOLT_OK;
}

static molt_status parse_hybrid(molt_ctx *ctx, const char *w, const cJSON *o, model_cfg *c) {
    MOLT_TRY(parse_llamba(ctx, w, o, c));
    const cJSON *a = NULL, *layers = NULL, *li = NULL;
    MOLT_TRY(js_get_arr(ctx, w, o, "layers", 1, &layers));
    bool need_attn = false; // attn_cfg may be left out when no layer has attention
    cJSON_ArrayForEach(li, layers) need_attn |= layer_needs_attn(li);
    MOLT_TRY(js_get_obj(ctx, w, o, "attn_cfg", need_attn, &a));
    if (a) {
        MOLT_TRY(geti(ctx, w, a, "num_attention_heads", 1, 1, BIG, 0, &c->n_head));
        MOLT_TRY(geti(ctx, w, a, "num_key_value_heads", 0, 1, BIG, c->n_head, &c->n_kv_head));
        MOLT_TRY(geti(ctx, w, a, "head_dim", 1, 1, BIG, 0, &c->head_dim));
        MOLT_TRY(geti(ctx, w, a, "max_position_embeddings", 0, 1, BIG, 2048, &c->max_seq));
        MOLT_TRY(js_get_bool(ctx, w, a, "attention_bias", 0, false, &c->attn_bias));
        MOLT_TRY(parse_rope(ctx, w, a, &c->rope));
    }
    if (cJSON_GetArraySize(layers) != c->n_layer)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: \"layers\" lists %d layers but n_layer is %d",
                         w, cJSON_GetArraySize(layers), c->n_layer);
    for (int l = 0; l < c->n_layer; l++) {
        const cJSON *L = cJSON_GetArrayItem(layers, l);
        const char *mix = NULL;
        char where[256];
        snprintf(where, sizeof where, "%s: layers[%d]", w, l);
        if (!cJSON_IsObject(L))
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s must be an object", where);
        MOLT_TRY(js_get_str(ctx, where, L, "mixer", 1, NULL, &mix));
        layer_kind k;
        if (!layer_kind_parse(mix, &k)) {
            char list[128] = "";
            for (int i = 0; i < LAYER_KIND_COUNT; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                         i == 0 ? "" : i + 1 == LAYER_KIND_COUNT ? " or " : ", ",
                         layer_kind_name((layer_kind)i));
            return molt__err(ctx, MOLT_ERR_FORMAT, "%s: mixer \"%s\" (expected %s)", where, mix,
                             list);
        }
        c->kind[l] = k;
        if (k == LAYER_HYBRID) {
            const cJSON *hs = NULL;
            MOLT_TRY(js_get_arr(ctx, where, L, "attention_heads", 1, &hs));
            int n = cJSON_GetArraySize(hs);
            if (n <= 0 || n > c->n_head)
                return molt__err(ctx, MOLT_ERR_SHAPE,
                                 "%s: attention_heads lists %d heads (1..%d allowed)", where, n,
                                 c->n_head);
            c->kind[l] = LAYER_HYBRID;
            c->n_keep[l] = n;
            c->keep_heads[l] = molt__malloc(sizeof(int) * (size_t)n);
            if (!c->keep_heads[l])
                return molt__err(ctx, MOLT_ERR_OOM, "out of memory");
            for (int i = 0; i < n; i++) {
                int64_t h;
                if (!js_whole(cJSON_GetArrayItem(hs, i), 0, BIG, &h))
                    return molt__err(ctx, MOLT_ERR_FORMAT,
                                     "%s: attention_heads[%d] must be a head index", where, i);
                c->keep_heads[l][i] = (int)h;
            }
            MOLT_TRY(parse_hybrid_rec(ctx, where, L, c, l));
        }
    }
    if (uses_ssm(c) && !cJSON_GetObjectItemCaseSensitive(o, "ssm_cfg"))
        return molt__err(ctx, MOLT_ERR_FORMAT, "%s: \"ssm_cfg\" is missing (a layer has an SSM)",
                         w);
    MOLT_TRY(parse_gateloop(ctx, w, o, c));
    return mamba3_cfg_from_json(ctx, w, o, c);
}

molt_status model_cfg_from_json(molt_ctx *ctx, const char *w, const char *json, size_t len,
                                model_cfg *c) {
    memset(c, 0, sizeof *c);
    cJSON *o = js_parse(ctx, w, json, len);
    if (!o)
        return molt_last_status(ctx);
    molt_status st = MOLT_OK;
    const char *mt = NULL;
    if (!cJSON_IsObject(o)) {
        st = molt__err(ctx, MOLT_ERR_FORMAT, "%s: top level must be a JSON object", w);
        goto done;
    }
    if ((st = js_get_str(ctx, w, o, "model_type", 1, NULL, &mt)) != MOLT_OK)
        goto done;
    if (!model_arch_parse(mt, &c->arch)) {
        st = molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                       "%s: model_type \"%s\" is not supported (llama, llamba, mamba2, "
                       "molt_hybrid)",
                       w, mt);
        goto done;
    }
    switch (c->arch) {
    case ARCH_LLAMA: st = parse_llama(ctx, w, o, c); break;
    case ARCH_LLAMBA: st = parse_llamba(ctx, w, o, c); break;
    case ARCH_MAMBA2: st = parse_mamba2(ctx, w, o, c); break;
    case ARCH_HYBRID: st = parse_hybrid(ctx, w, o, c); break;
    default: st = molt__err(ctx, MOLT_ERR_INTERNAL, "unhandled arch"); break;
    }
    if (st != MOLT_OK)
        goto done;
    if ((st = get_token_id(ctx, w, o, "bos_token_id", -1, &c->bos)) != MOLT_OK ||
        (st = get_token_id(ctx, w, o, "eos_token_id", -1, &c->eos)) != MOLT_OK)
        goto done;
    snprintf(c->src_format, sizeof c->src_format, "hf");
    st = model_cfg_check(ctx, w, c);
done:
    cJSON_Delete(o);
    if (st != MOLT_OK)
        model_free_cfg(c);
    return st;
}

// ----------------------------------------------------------------------------
// writing

// A float-typed key, written as a float literal that reads back as the same
// float: the shortest of %.6g..%.9g that round-trips, with ".0" added to an
// integral value (transformers' config classes refuse an integer where a
// float is declared, e.g. Mamba2Config.time_step_limit = [0, ...]).
static cJSON *float_item(float v) {
    char buf[48];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eEn")) // not 1.5, 1e-05, inf, nan
        strcat(buf, ".0");
    return cJSON_CreateRaw(buf);
}
static void add_float(cJSON *o, const char *key, float v) {
    js_put(o, key, float_item(v));
}

static void add_rope(cJSON *o, const rope_cfg *r) {
    add_float(o, "rope_theta", r->theta);
    if (r->kind == ROPE_DEFAULT)
        return;
    cJSON *s = cJSON_AddObjectToObject(o, "rope_scaling");
    cJSON_AddStringToObject(s, "rope_type", r->kind == ROPE_LLAMA3 ? "llama3" : "linear");
    add_float(s, "factor", r->factor);
    if (r->kind == ROPE_LLAMA3) {
        add_float(s, "low_freq_factor", r->low_freq_factor);
        add_float(s, "high_freq_factor", r->high_freq_factor);
        cJSON_AddNumberToObject(s, "original_max_position_embeddings", r->orig_max_pos);
    }
}

// The one ssm_cfg block a file has: every layer's config (NULL when two
// layers differ: the formats cannot say so yet).
static const ssm_cfg *file_ssm(const model_cfg *c) {
    for (int l = 1; l < c->n_layer; l++)
        if (memcmp(layer_ssm(c, l), layer_ssm(c, 0), sizeof(ssm_cfg)) != 0)
            return NULL;
    return layer_ssm(c, 0);
}

static void add_llamba(cJSON *o, const model_cfg *c) {
    const ssm_cfg *sc = file_ssm(c);
    cJSON_AddNumberToObject(o, "d_model", c->d_model);
    cJSON_AddNumberToObject(o, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab);
    cJSON_AddBoolToObject(o, "tie_embeddings", c->tie_embeddings);
    cJSON_AddNumberToObject(o, "pad_vocab_size_multiple", 1);
    cJSON_AddBoolToObject(o, "lm_head_bias", false);
    if (c->arch == ARCH_LLAMBA) { // the blocks' 1e-5 is implied (model_cfg_to_json)
        add_float(o, "norm_epsilon", model_final_eps(c));
        add_float(o, "resid_dropout", 0.0f); // a key lalamo's reader requires
    } else {
        add_float(o, "norm_epsilon", c->norm_eps);
        if (model_final_eps(c) != c->norm_eps)
            add_float(o, "final_norm_epsilon", model_final_eps(c));
    }
    cJSON *m = cJSON_AddObjectToObject(o, "mlp_cfg");
    cJSON_AddNumberToObject(m, "intermediate_size", c->d_ff);
    cJSON_AddBoolToObject(m, "bias", false);
    cJSON_AddStringToObject(m, "act_fn", "silu");
    if (!uses_ssm(c))
        return;
    cJSON *s = cJSON_AddObjectToObject(o, "ssm_cfg");
    cJSON_AddNumberToObject(s, "d_state", sc->N);
    cJSON_AddNumberToObject(s, "n_v_heads", sc->H);
    cJSON_AddNumberToObject(s, "n_qk_heads", sc->G);
    cJSON_AddNumberToObject(s, "expand", sc->d_inner / c->d_model);
    cJSON_AddNumberToObject(s, "chunk_size", sc->chunk);
    if (sc->kind == SSM_MAMBA2) // molt's Mamba-2 students (parse_ssm_layer)
        cJSON_AddStringToObject(s, "layer", "Mamba2");
    cJSON_AddStringToObject(s, "activation", sc->kind == SSM_MAMBA2 ? "silu" : "identity");
    cJSON_AddBoolToObject(s, "bias", c->ssm_bias);
    cJSON_AddBoolToObject(s, "conv_bias", c->conv_bias);
    cJSON_AddNumberToObject(s, "d_conv", sc->K);
}

// The one gateloop_cfg block: every GateLoop layer's config (NULL when there
// is none, or when two differ: *differ is set).
static const gateloop_cfg *file_gl(const model_cfg *c, bool *differ) {
    const gateloop_cfg *g = NULL;
    *differ = false;
    for (int l = 0; l < c->n_layer; l++)
        if (layer_rec_kind(c, l) == LAYER_GATELOOP) {
            if (g && memcmp(layer_gl(c, l), g, sizeof *g) != 0)
                *differ = true;
            g = g ? g : layer_gl(c, l);
        }
    return *differ ? NULL : g;
}

static void add_gateloop(cJSON *o, const model_cfg *c) {
    bool                differ;
    const gateloop_cfg *g = file_gl(c, &differ);
    if (!g)
        return;
    cJSON *s = cJSON_AddObjectToObject(o, "gateloop_cfg");
    cJSON_AddNumberToObject(s, "n_heads", g->H);
    cJSON_AddNumberToObject(s, "head_dim", g->P);
    cJSON_AddNumberToObject(s, "chunk_size", g->chunk);
}

static molt_status cfg_to_json(molt_ctx *ctx, const model_cfg *c, const char *torch_dtype,
                               char **json) {
    js_build_begin(); // every key or none: js_build_failed() below
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory writing config.json");
    const ssm_cfg *sc = file_ssm(c);
    if (c->arch != ARCH_LLAMA && uses_ssm(c) && !sc) {
        cJSON_Delete(o);
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "config.json: the layers' recurrent configs differ (d_state, heads, ...); "
                         "the %s format has one ssm_cfg for all layers",
                         model_arch_name(c->arch));
    }
    bool gl_differ;
    file_gl(c, &gl_differ);
    if (gl_differ) {
        cJSON_Delete(o);
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "config.json: the GateLoop layers' configs differ; the format has one "
                         "gateloop_cfg for all of them");
    }
    cJSON_AddStringToObject(o, "model_type", model_arch_name(c->arch));
    // the weights' type in model.safetensors (HF: torch_dtype)
    cJSON_AddStringToObject(o, "torch_dtype", torch_dtype ? torch_dtype : "float32");
    switch (c->arch) {
    case ARCH_LLAMA: {
        cJSON *a = cJSON_AddArrayToObject(o, "architectures");
        js_put(a, NULL, cJSON_CreateString("LlamaForCausalLM"));
        cJSON_AddNumberToObject(o, "hidden_size", c->d_model);
        cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layer);
        cJSON_AddNumberToObject(o, "num_attention_heads", c->n_head);
        cJSON_AddNumberToObject(o, "num_key_value_heads", c->n_kv_head);
        cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
        cJSON_AddNumberToObject(o, "intermediate_size", c->d_ff);
        cJSON_AddNumberToObject(o, "vocab_size", c->vocab);
        cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_seq);
        add_float(o, "rms_norm_eps", c->norm_eps);
        cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_embeddings);
        cJSON_AddBoolToObject(o, "attention_bias", c->attn_bias);
        cJSON_AddBoolToObject(o, "mlp_bias", false);
        cJSON_AddStringToObject(o, "hidden_act", "silu");
        
        add_rope(o, &c->rope);
        break;
    }
    case ARCH_LLAMBA: add_llamba(o, c); break;
    case ARCH_MAMBA2: {
        cJSON *a = cJSON_AddArrayToObject(o, "architectures");
        js_put(a, NULL, cJSON_CreateString("Mamba2ForCausalLM"));
        cJSON_AddNumberToObject(o, "hidden_size", c->d_model);
        cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layer);
        cJSON_AddNumberToObject(o, "vocab_size", c->vocab);
        add_float(o, "layer_norm_epsilon", c->norm_eps);
        cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_embeddings);
        cJSON_AddNumberToObject(o, "num_heads", sc->H);
        cJSON_AddNumberToObject(o, "head_dim", sc->P);
        cJSON_AddNumberToObject(o, "state_size", sc->N);
        cJSON_AddNumberToObject(o, "expand", sc->d_inner / c->d_model);
        cJSON_AddNumberToObject(o, "n_groups", sc->G);
        cJSON_AddNumberToObject(o, "conv_kernel", sc->K);
        cJSON_AddNumberToObject(o, "chunk_size", sc->chunk);
        cJSON_AddBoolToObject(o, "use_bias", c->ssm_bias);
        cJSON_AddBoolToObject(o, "use_conv_bias", c->conv_bias);
        cJSON_AddBoolToObject(o, "rms_norm", true);
        cJSON_AddStringToObject(o, "hidden_act", "silu");
        cJSON *lim = cJSON_AddArrayToObject(o, "time_step_limit");
        js_put(lim, NULL, float_item(sc->dt_limit_lo));
        if (isinf(sc->dt_limit_hi)) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "__float__", "Infinity");
            js_put(lim, NULL, f);
        } else {
            js_put(lim, NULL, float_item(sc->dt_limit_hi));
        }
        break;
    }
    case ARCH_HYBRID: {
        add_llamba(o, c);
        if (c->n_head > 0) { // (a model read from a llamba file has no teacher geometry)
            cJSON *a = cJSON_AddObjectToObject(o, "attn_cfg");
            cJSON_AddNumberToObject(a, "num_attention_heads", c->n_head);
            cJSON_AddNumberToObject(a, "num_key_value_heads", c->n_kv_head);
            cJSON_AddNumberToObject(a, "head_dim", c->head_dim);
            cJSON_AddNumberToObject(a, "max_position_embeddings", c->max_seq);
            cJSON_AddBoolToObject(a, "attention_bias", c->attn_bias);
            add_rope(a, &c->rope);
        } else {
            cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_seq);
        }
        cJSON *ls = cJSON_AddArrayToObject(o, "layers");
        for (int l = 0; l < c->n_layer; l++) {
            cJSON *L = cJSON_CreateObject();
            cJSON_AddStringToObject(L, "mixer", layer_kind_name(c->kind[l]));
            if (c->kind[l] == LAYER_HYBRID)
                js_put(L, "attention_heads", cJSON_CreateIntArray(c->keep_heads[l], c->n_keep[l]));
            if (c->kind[l] == LAYER_HYBRID && layer_hybrid_rec(c, l) != LAYER_SSM)
                cJSON_AddStringToObject(L, "recurrent", layer_kind_name(layer_hybrid_rec(c, l)));
            js_put(ls, NULL, L);
        }
        add_gateloop(o, c);
        molt_status st = mamba3_cfg_to_json(ctx, o, c);
        if (st != MOLT_OK) {
            cJSON_Delete(o);
            return st;
        }
        break;
    }
    default: break;
    }
    if (c->bos >= 0)
        cJSON_AddNumberToObject(o, "bos_token_id", c->bos);
    if (c->eos >= 0)
        cJSON_AddNumberToObject(o, "eos_token_id", c->eos);
    cJSON_AddStringToObject(o, "molt_version", "0.1.0");
    char *txt = js_build_failed() ? NULL : cJSON_Print(o); // (a key lost: no config.json)
    cJSON_Delete(o);
    if (!txt)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory writing config.json");
    *json = txt; // allocated by cJSON through molt's hooks: free with molt__free
    return MOLT_OK;
}

// A llamba model whose blocks' norms are not at cartesia's fixed 1e-5 (a student of a
// teacher with another rms_norm_eps) is written in molt's own schema, which says so
// (the llamba schema cannot: cartesia reads norm_epsilon for the final norm only).
molt_status model_cfg_to_json(molt_ctx *ctx, const model_cfg *c, const char *torch_dtype,
                              char **json) {
    if (c->arch != ARCH_LLAMBA || c->norm_eps == 1e-5f)
        return cfg_to_json(ctx, c, torch_dtype, json);
    model_cfg *h = molt__malloc(sizeof *h);
    if (!h)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory writing config.json");
    *h = *c;
    h->arch = ARCH_HYBRID;
    molt__log(MOLT_LOG_INFO, "config.json: model_type molt_hybrid (the blocks' RMSNorm epsilon "
                             "%g is not llamba's fixed 1e-5)", (double)c->norm_eps);
    molt_status st = cfg_to_json(ctx, h, torch_dtype, json);
    molt__free(h);
    return st;
}
