/*
 * layout.c — checkpoint layouts beside config.json's model_type (layout.h):
 * recognising a config without one (state-spaces MambaConfig, cartesia
 * Llamba), the MambaConfig reader and writer, the tensor-name differences, and
 * which layouts can hold which model.
 */
#include "models/layout.h"

#include "io/json.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int64_t BIG = (int64_t)1 << 30;

bool layout_parse(const char *s, model_layout *out) {
    static const struct {
        const char  *name;
        model_layout l;
    } names[] = {{"", LAYOUT_AS_LOADED},       {"auto", LAYOUT_AS_LOADED}, {"hf", LAYOUT_HF},
                 {"llamba", LAYOUT_LLAMBA},    {"molt", LAYOUT_MOLT},
                 {"mamba_ssm", LAYOUT_MAMBA_SSM}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s ? s : "", names[i].name)) {
            *out = names[i].l;
            return true;
        }
    return false;
}

static bool is_native(const model_cfg *c) {
    return (c->arch == ARCH_MAMBA2 || c->arch == ARCH_HYBRID) &&
           !strcmp(c->src_format, "mamba_ssm");
}

// a native model held as a molt_hybrid: Mamba-3 layers (MLP iff d_intermediate), or Mamba-2
// layers with a GatedMLP (d_intermediate > 0; without one: ARCH_MAMBA2)
static bool is_native_hyb(const model_cfg *c) {
    return c->arch == ARCH_HYBRID && is_native(c);
}

// GatedMLP's hidden width: d_intermediate rounded up to its multiple_of (128)
enum { GMLP_MULTIPLE = 128 };

// ----------------------------------------------------------------------------
// reading a state-spaces MambaConfig (mamba_ssm/models/config_mamba.py; Mamba2 defaults from
// mamba_ssm/modules/mamba2.py: d_state 128, d_conv 4, expand 2, headdim 64, ngroups 1,
// chunk_size 256, bias false, conv_bias true, rmsnorm true, dt_limit (0, inf))

static molt_status geti(molt_ctx *ctx, const char *w, const cJSON *o, const char *k, int req,
                        int64_t lo, int64_t hi, int64_t def, int *out) {
    int64_t v;
    MOLT_TRY(js_get_int(ctx, w, o, k, req, lo, hi, def, &v));
    *out = (int)v;
    return MOLT_OK;
}

// a key whose only supported value is its default
static molt_status want_bool(molt_ctx *ctx, const char *w, const cJSON *o, const char *k,
                             bool def) {
    bool v;
    MOLT_TRY(js_get_bool(ctx, w, o, k, 0, def, &v));
    if (v != def)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: %s=%s is not supported", w, k,
                         v ? "true" : "false");
    return MOLT_OK;
}

// the Mamba3 module's arguments (mamba_ssm/modules/mamba3.py: d_state 128, expand 2,
// headdim 64, ngroups 1, rope_fraction 0.5, A_floor 1e-4, is_outproj_norm false, is_mimo
// false, mimo_rank 4, chunk_size 64; its B/C and out norms at eps 1e-5). dt_min, dt_max,
// dt_init_floor (initialisation), fuse_pregate_headwise_norm (a kernel choice) and dropout
// change nothing in the function; any other key is refused (the module would swallow it
// into **kwargs, so it cannot mean anything there either, but it is likely a typo).
static molt_status parse_native_m3(molt_ctx *ctx, const char *w, const cJSON *ssm, int di,
                                   model_cfg *c) {
    static const char *const known[] = {
        "layer",         "d_state",   "expand",          "headdim",  "ngroups",
        "rope_fraction", "A_floor",   "is_outproj_norm", "is_mimo",  "mimo_rank",
        "chunk_size",    "dt_min",    "dt_max",          "dt_init_floor",
        "fuse_pregate_headwise_norm", "dropout"};
    const cJSON *it;
    cJSON_ArrayForEach(it, ssm) {
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0] && !ok; i++)
            ok = !strcmp(it->string, known[i]);
        if (!ok)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "%s: ssm_cfg.%s is not an argument molt knows of the Mamba3 module",
                             w, it->string);
    }
    mamba3_cfg s = {0};
    int expand = 2;
    double rf, Af;
    bool mimo, norm;
    MOLT_TRY(geti(ctx, w, ssm, "d_state", 0, 1, 1 << 20, 128, &s.N));
    MOLT_TRY(geti(ctx, w, ssm, "expand", 0, 1, 64, 2, &expand));
    MOLT_TRY(geti(ctx, w, ssm, "headdim", 0, 1, 1 << 20, 64, &s.P));
    MOLT_TRY(geti(ctx, w, ssm, "ngroups", 0, 1, 1 << 20, 1, &s.G));
    MOLT_TRY(js_get_float(ctx, w, ssm, "rope_fraction", 0, 0.5, &rf));
    MOLT_TRY(js_get_float(ctx, w, ssm, "A_floor", 0, 1e-4, &Af));
    MOLT_TRY(js_get_bool(ctx, w, ssm, "is_outproj_norm", 0, false, &norm));
    MOLT_TRY(js_get_bool(ctx, w, ssm, "is_mimo", 0, false, &mimo));
    s.R = 1;
    if (mimo)
        MOLT_TRY(geti(ctx, w, ssm, "mimo_rank", 0, 1, 64, 4, &s.R));
    MOLT_TRY(geti(ctx, w, ssm, "chunk_size", 0, 1, 1 << 20, 64, &s.chunk));
    if ((int64_t)expand * c->d_model > BIG)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: expand × d_model too large", w);
    s.d_model = c->d_model;
    s.d_inner = expand * c->d_model;
    if (s.d_inner % s.P)
        return molt__err(ctx, MOLT_ERR_SHAPE,
                         "%s: ssm_cfg: d_inner %d (expand × d_model) is not divisible by "
                         "headdim %d", w, s.d_inner, s.P);
    s.H = s.d_inner / s.P;
    s.mimo = mimo, s.outproj_norm = norm;
    s.rope_fraction = (float)rf, s.A_floor = (float)Af, s.eps = 1e-5f;
    const char *e = mamba3_cfg_check(&s);
    if (e)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: ssm_cfg (Mamba3): %s", w, e);
    c->arch = ARCH_HYBRID;
    for (int l = 0; l < MODEL_MAX_LAYERS; l++)
        c->m3_layer[l] = s;
    for (int l = 0; l < c->n_layer; l++)
        c->kind[l] = LAYER_MAMBA3;
    c->has_mlp = di > 0;
    if ((int64_t)di + GMLP_MULTIPLE > BIG)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: d_intermediate %d too large", w, di);
    c->d_ff = (di + GMLP_MULTIPLE - 1) / GMLP_MULTIPLE * GMLP_MULTIPLE;
    c->norm_eps = 1e-5f; // create_block's norm_epsilon default; norm_f: MixerModel's 1e-5
    c->max_seq = 1 << 20;
    c->bos = c->eos = -1;
    snprintf(c->src_format, sizeof c->src_format, "mamba_ssm");
    return model_cfg_check(ctx, w, c);
}

static molt_status parse_native(molt_ctx *ctx, const char *w, const cJSON *o, model_cfg *c) {
    ssm_cfg sc = {0}, *s = &sc;
    const cJSON *ssm = NULL, *attn = NULL, *lim = NULL;
    const char *layer = NULL, *act = NULL;
    int mult = 8, di = 0, expand = 2;
    c->arch = ARCH_MAMBA2;
    MOLT_TRY(geti(ctx, w, o, "d_model", 1, 1, BIG, 0, &c->d_model));
    MOLT_TRY(geti(ctx, w, o, "n_layer", 1, 1, MODEL_MAX_LAYERS, 0, &c->n_layer));
    MOLT_TRY(geti(ctx, w, o, "vocab_size", 1, 1, BIG, 0, &c->vocab));
    MOLT_TRY(geti(ctx, w, o, "pad_vocab_size_multiple", 0, 1, 1 << 16, 8, &mult));
    c->vocab = (c->vocab + mult - 1) / mult * mult;
    MOLT_TRY(js_get_bool(ctx, w, o, "tie_embeddings", 0, true, &c->tie_embeddings));
    MOLT_TRY(geti(ctx, w, o, "d_intermediate", 0, 0, BIG, 0, &di));
    MOLT_TRY(js_get_arr(ctx, w, o, "attn_layer_idx", 0, &attn));
    if (attn && cJSON_GetArraySize(attn) > 0)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "%s: attn_layer_idx lists attention layers: not supported", w);
    MOLT_TRY(want_bool(ctx, w, o, "rms_norm", true));
    MOLT_TRY(js_get_obj(ctx, w, o, "ssm_cfg", 0, &ssm));
    MOLT_TRY(js_get_str(ctx, w, ssm, "layer", 0, "Mamba1", &layer));
    if (!strcmp(layer, "Mamba3"))
        return parse_native_m3(ctx, w, ssm, di, c);
    if (strcmp(layer, "Mamba2") != 0)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "%s: ssm_cfg.layer \"%s\": molt reads Mamba2 and Mamba3 layers of this "
                         "layout", w, layer);
    s->kind = SSM_MAMBA2;
    s->d_model = c->d_model;
    MOLT_TRY(geti(ctx, w, ssm, "d_state", 0, 1, BIG, 128, &s->N));
    MOLT_TRY(geti(ctx, w, ssm, "d_conv", 0, 1, 64, 4, &s->K));
    MOLT_TRY(geti(ctx, w, ssm, "expand", 0, 1, 64, 2, &expand));
    MOLT_TRY(geti(ctx, w, ssm, "headdim", 0, 1, BIG, 64, &s->P));
    MOLT_TRY(geti(ctx, w, ssm, "ngroups", 0, 1, BIG, 1, &s->G));
    MOLT_TRY(geti(ctx, w, ssm, "chunk_size", 0, 1, BIG, 256, &s->chunk));
    MOLT_TRY(js_get_bool(ctx, w, ssm, "bias", 0, false, &c->ssm_bias));
    MOLT_TRY(js_get_bool(ctx, w, ssm, "conv_bias", 0, true, &c->conv_bias));
    MOLT_TRY(want_bool(ctx, w, ssm, "rmsnorm", true));
    MOLT_TRY(want_bool(ctx, w, ssm, "norm_before_gate", false));
    MOLT_TRY(want_bool(ctx, w, ssm, "D_has_hdim", false));
    MOLT_TRY(want_bool(ctx, w, ssm, "learnable_init_states", false));
    MOLT_TRY(js_get_str(ctx, w, ssm, "activation", 0, "swish", &act));
    if (strcmp(act, "swish") != 0 && strcmp(act, "silu") != 0)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "%s: ssm_cfg.activation \"%s\" (only "
                                                    "swish / silu)", w, act);
    if ((int64_t)expand * c->d_model > BIG)
        return molt__err(ctx, MOLT_ERR_SHAPE, "%s: expand × d_model too large", w);
    s->d_inner = expand * c->d_model;
    const cJSON *dssm = cJSON_GetObjectItemCaseSensitive(ssm, "d_ssm");
    int64_t v = 0;
    if (dssm && !cJSON_IsNull(dssm) && (!js_whole(dssm, 1, BIG, &v) || v != s->d_inner))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "%s: ssm_cfg.d_ssm other than expand × d_model (%d) is not supported", w,
                         s->d_inner);
    if (s->d_inner % s->P || (s->d_inner / s->P) % s->G)
        return molt__err(ctx, MOLT_ERR_SHAPE,
                         "%s: d_inner %d is not a whole number of heads of headdim %d in %d "
                         "groups", w, s->d_inner, s->P, s->G);
    s->H = s->d_inner / s->P;
    s->norm_eps = 1e-5f; // RMSNormGated(eps=1e-5); the block norms and norm_f: MixerModel's 1e-5
    c->norm_eps = 1e-5f;
    s->dt_limit_lo = 0.0f;
    s->dt_limit_hi = INFINITY;
    MOLT_TRY(js_get_arr(ctx, w, ssm, "dt_limit", 0, &lim));
    if (lim) {
        double lo, hi;
        if (cJSON_GetArraySize(lim) != 2 || !js_float_value(cJSON_GetArrayItem(lim, 0), &lo) ||
            !js_float_value(cJSON_GetArrayItem(lim, 1), &hi) || !(lo >= 0) || !(hi >= lo))
            return molt__err(ctx, MOLT_ERR_FORMAT,
                             "%s: ssm_cfg.dt_limit must be [lo, hi] with 0 <= lo <= hi", w);
        s->dt_limit_lo = (float)lo;
        s->dt_limit_hi = (float)hi;
    }
    model_cfg_set_ssm(c, s);
    c->has_mlp = di > 0;
    if (di > 0) { // Mamba2 blocks with a GatedMLP: a molt_hybrid of Mamba-2 SSM layers
        if ((int64_t)di + GMLP_MULTIPLE > BIG)
            return molt__err(ctx, MOLT_ERR_SHAPE, "%s: d_intermediate %d too large", w, di);
        c->arch = ARCH_HYBRID;
        c->d_ff = (di + GMLP_MULTIPLE - 1) / GMLP_MULTIPLE * GMLP_MULTIPLE;
    }
    c->max_seq = 1 << 20;
    c->bos = c->eos = -1;
    for (int l = 0; l < c->n_layer; l++)
        c->kind[l] = LAYER_SSM;
    snprintf(c->src_format, sizeof c->src_format, "mamba_ssm");
    return model_cfg_check(ctx, w, c);
}

molt_status layout_cfg_from_json(molt_ctx *ctx, const char *w, const char *json, size_t len,
                                 model_cfg *c) {
    cJSON *o = js_parse(ctx, w, json, len);
    if (!o)
        return molt_last_status(ctx);
    molt_status st;
    const cJSON *ssm = cJSON_GetObjectItemCaseSensitive(o, "ssm_cfg");
    if (!cJSON_IsObject(o) || cJSON_GetObjectItemCaseSensitive(o, "model_type")) {
        st = model_cfg_from_json(ctx, w, json, len, c);
    } else if (cJSON_GetObjectItemCaseSensitive(o, "mlp_cfg") ||
               cJSON_GetObjectItemCaseSensitive(ssm, "n_v_heads")) {
        // a cartesia LlambaConfig written without its model_type
        char *txt = NULL;
        js_build_begin();
        js_put(o, "model_type", cJSON_CreateString("llamba"));
        if (!js_build_failed())
            txt = cJSON_PrintUnformatted(o);
        st = txt ? model_cfg_from_json(ctx, w, txt, strlen(txt), c)
                 : molt__err(ctx, MOLT_ERR_OOM, "out of memory reading %s", w);
        molt__free(txt);
        if (st == MOLT_OK)
            molt__log(MOLT_LOG_INFO, "%s: no model_type: read as a cartesia Llamba config", w);
    } else if (cJSON_GetObjectItemCaseSensitive(o, "d_model") &&
               cJSON_GetObjectItemCaseSensitive(o, "n_layer")) {
        memset(c, 0, sizeof *c);
        st = parse_native(ctx, w, o, c);
    } else {
        st = molt__err(ctx, MOLT_ERR_FORMAT,
                       "%s: no model_type, and not a state-spaces MambaConfig (d_model, n_layer, "
                       "ssm_cfg) or a cartesia Llamba config (mlp_cfg, ssm_cfg)", w);
    }
    cJSON_Delete(o);
    return st;
}

// ----------------------------------------------------------------------------
// writing

static bool all_zero(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (x[i] != 0.0f)
            return false;
    return true;
}

// llamba with bias: cartesia has no z_bias (a constant 0); is every layer's 0?
static bool zbias_zero(const molt_model *m) {
    for (int i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        size_t n = strlen(p->name), k = strlen(".mixer.z_bias");
        if (n > k && !strcmp(p->name + n - k, ".mixer.z_bias") &&
            (!m->be->mem.host_visible || !all_zero(m->data + p->offset, p->numel)))
            return false;
    }
    return true;
}

// A hybrid of Mamba-2 SSM layers (molt's Mamba-2 students) in the mamba_ssm layout: Mamba2
// blocks with a GatedMLP (native_to_json checks that the layers' configs are one)
static molt_status native_m2_target(molt_ctx *ctx, const model_cfg *c, model_cfg *out) {
    for (int l = 0; l < c->n_layer; l++)
        if (c->kind[l] != LAYER_SSM || layer_ssm(c, l)->kind != SSM_MAMBA2)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "the mamba_ssm layout holds models whose layers are all Mamba-2 (or "
                             "all Mamba-3); layer %d is not (molt's own layout holds it)", l);
    const ssm_cfg *s = layer_ssm(c, 0);
    if (c->norm_eps != 1e-5f || model_final_eps(c) != 1e-5f || s->norm_eps != 1e-5f)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "the mamba_ssm layout fixes every RMSNorm epsilon at 1e-5; this model's "
                         "are %g (blocks), %g (final) (molt's own layout holds it)",
                         (double)c->norm_eps, (double)model_final_eps(c));
    if (s->d_mlp != 0 || !c->has_mlp || c->d_ff % GMLP_MULTIPLE || c->mlp_bias)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "the mamba_ssm layout's Mamba2 blocks have no d_mlp rows and a GatedMLP "
                         "without bias whose width is a multiple of %d (this model's: %d) "
                         "(molt's own layout holds it)", GMLP_MULTIPLE, c->d_ff);
    out->arch = ARCH_HYBRID;
    snprintf(out->src_format, sizeof out->src_format, "mamba_ssm");
    return MOLT_OK;
}

// A Llamba / hybrid model in the mamba_ssm layout: every layer a Mamba-3 layer, one config
// for all of them, the norms at MambaConfig's fixed eps 1e-5, an MLP width GatedMLP builds.
static molt_status native_m3_target(molt_ctx *ctx, const model_cfg *c, model_cfg *out) {
    if (c->kind[0] == LAYER_SSM && layer_ssm(c, 0)->kind == SSM_MAMBA2)
        return native_m2_target(ctx, c, out);
    for (int l = 0; l < c->n_layer; l++) {
        if (c->kind[l] != LAYER_MAMBA3)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "the mamba_ssm layout holds models whose layers are all Mamba-3 (or "
                             "all Mamba-2); layer %d is %s (molt's own layout holds it)", l,
                             layer_kind_name(c->kind[l]));
        if (memcmp(layer_m3(c, l), layer_m3(c, 0), sizeof(mamba3_cfg)) != 0)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "the mamba_ssm layout has one ssm_cfg for all layers; the Mamba-3 "
                             "configs of layers 0 and %d differ", l);
    }
    const mamba3_cfg *s = layer_m3(c, 0);
    if (c->norm_eps != 1e-5f || model_final_eps(c) != 1e-5f || s->eps != 1e-5f)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "the mamba_ssm layout fixes every RMSNorm epsilon at 1e-5; this model's "
                         "are %g (blocks), %g (final), %g (Mamba-3) (molt's own layout holds it)",
                         (double)c->norm_eps, (double)model_final_eps(c), (double)s->eps);
    if (s->d_inner % c->d_model)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "the mamba_ssm layout's Mamba3 has d_inner = expand × d_model; %d is not "
                         "a multiple of d_model %d", s->d_inner, c->d_model);
    if (c->has_mlp && c->d_ff % GMLP_MULTIPLE)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "the mamba_ssm layout's GatedMLP rounds its width up to a multiple of %d; "
                         "this model's MLP width %d is not one (molt's own layout holds it)",
                         GMLP_MULTIPLE, c->d_ff);
    if (c->attn_bias || c->mlp_bias)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "the mamba_ssm layout's GatedMLP has no bias");
    out->arch = ARCH_HYBRID;
    snprintf(out->src_format, sizeof out->src_format, "mamba_ssm");
    return MOLT_OK;
}

molt_status layout_target_cfg(molt_ctx *ctx, const molt_model *m, model_layout L,
                              model_cfg *out) {
    const model_cfg *c = &m->cfg;
    const char *arch = model_arch_name(c->arch);
    bool student = c->arch == ARCH_LLAMBA || c->arch == ARCH_HYBRID;
    *out = *c;
    switch (L) {
    case LAYOUT_AS_LOADED: return MOLT_OK;
    case LAYOUT_HF:
        if (c->arch != ARCH_LLAMA && c->arch != ARCH_MAMBA2)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "a %s model has no HF transformers "
                                                        "layout (llamba or molt)", arch);
        snprintf(out->src_format, sizeof out->src_format, "hf");
        return MOLT_OK;
    case LAYOUT_MOLT:
        if (!student)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "molt's own layout holds Llamba / hybrid students, not a %s model "
                             "(hf)", arch);
        if (!c->has_mlp)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "molt's own layout has an MLP in every block; this model has none "
                             "(mamba_ssm holds it)");
        for (int l = 0; l < c->n_layer; l++)
            if (layer_rec_kind(c, l) == LAYER_SSM && (layer_ssm(c, l)->dt_limit_lo != 0.0f ||
                                                      !isinf(layer_ssm(c, l)->dt_limit_hi)))
                return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                                 "molt's own layout has no dt_limit; layer %d has one (mamba_ssm "
                                 "holds it)", l);
        out->arch = ARCH_HYBRID;
        snprintf(out->src_format, sizeof out->src_format, "hf");
        return MOLT_OK;
    case LAYOUT_LLAMBA:
        if (!student)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "the llamba layout holds DiscreteMamba2 models, not a %s model", arch);
        for (int l = 0; l < c->n_layer; l++)
            if (c->kind[l] != LAYER_SSM || layer_ssm(c, l)->kind != SSM_DISCRETE)
                return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                                 "the llamba layout holds only DiscreteMamba2 layers; layer %d "
                                 "is %s (molt's own layout holds it)", l,
                                 layer_kind_name(c->kind[l]));
        if (c->norm_eps != 1e-5f)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "the llamba layout fixes the blocks' RMSNorm epsilon at 1e-5; this "
                             "model's is %g (molt's own layout holds it)", (double)c->norm_eps);
        if (c->ssm_bias && !zbias_zero(m))
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "the llamba layout has no z_bias when ssm_cfg.bias is true, and "
                             "this model's is not 0 (molt's own layout holds it)");
        out->arch = ARCH_LLAMBA;
        snprintf(out->src_format, sizeof out->src_format, "hf");
        return MOLT_OK;
    case LAYOUT_MAMBA_SSM:
        if (c->arch == ARCH_HYBRID || c->arch == ARCH_LLAMBA)
            return native_m3_target(ctx, c, out);
        if (c->arch != ARCH_MAMBA2)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "the mamba_ssm layout holds Mamba-2 and Mamba-3 models, not a %s "
                             "model", arch);
        if (c->norm_eps != 1e-5f || layer_ssm(c, 0)->norm_eps != 1e-5f ||
            layer_ssm(c, 0)->d_mlp != 0)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "the mamba_ssm layout fixes the RMSNorm epsilon at 1e-5 (this "
                             "model's: %g) and has no d_mlp rows", (double)c->norm_eps);
        snprintf(out->src_format, sizeof out->src_format, "mamba_ssm");
        return MOLT_OK;
    }
    return molt__err(ctx, MOLT_ERR_ARG, "unknown layout %d", (int)L);
}

// native Mamba-3 blocks: molt's name ⇄ the file's (mamba_ssm's Block / MixerModel)
static const char *const NATIVE_M3_NAMES[][2] = {
    {"input_layernorm.weight", "norm.weight"},
    {"post_attention_layernorm.weight", "norm2.weight"},
    {"mlp.down_proj.weight", "mlp.fc2.weight"},
    {"mlp.up_proj.weight", "mlp.fc1.weight"},   // fc1's rows [0, F) (layout_row_block)
    {"mlp.gate_proj.weight", "mlp.fc1.weight"}, // fc1's rows [F, 2F)
};

// "backbone.layers.<i>." + rest: the length of the prefix, 0 when name is not so
static size_t layer_prefix(const char *name) {
    static const char pre[] = "backbone.layers.";
    size_t k = sizeof pre - 1;
    if (strncmp(name, pre, k) != 0 || name[k] < '0' || name[k] > '9')
        return 0;
    while (name[k] >= '0' && name[k] <= '9')
        k++;
    return name[k] == '.' ? k + 1 : 0;
}

// name with its block part `from` replaced by `to` (NATIVE_M3_NAMES column), or NULL
static const char *native_m3_map(const char *name, int from, char *buf) {
    size_t k = layer_prefix(name);
    if (!k)
        return NULL;
    for (size_t i = 0; i < sizeof NATIVE_M3_NAMES / sizeof NATIVE_M3_NAMES[0]; i++)
        if (!strcmp(name + k, NATIVE_M3_NAMES[i][from])) {
            snprintf(buf, MODEL_NAME_MAX, "%.*s%s", (int)k, name, NATIVE_M3_NAMES[i][!from]);
            return buf;
        }
    return NULL;
}

const char *layout_file_name(const model_cfg *c, const char *name, char *buf) {
    if (is_native(c) && !strcmp(name, "backbone.embeddings.weight"))
        return "backbone.embedding.weight";
    if (is_native_hyb(c)) {
        if (!strcmp(name, "backbone.final_layernorm.weight"))
            return "backbone.norm_f.weight";
        const char *f = native_m3_map(name, 0, buf);
        if (f)
            return f;
    }
    return name;
}

// (fc1 maps back to up_proj, the first of its two parameters)
const char *layout_molt_name(const model_cfg *c, const char *file_name, char *buf) {
    if (is_native(c) && !strcmp(file_name, "backbone.embedding.weight"))
        return c->arch == ARCH_HYBRID ? file_name : "backbone.embeddings.weight";
    if (is_native_hyb(c)) {
        if (!strcmp(file_name, "backbone.norm_f.weight"))
            return "backbone.final_layernorm.weight";
        const char *f = native_m3_map(file_name, 1, buf);
        if (f)
            return f;
    }
    return file_name;
}

bool layout_row_block(const model_cfg *c, const char *name, int64_t *row0, int64_t *rows) {
    size_t k = layer_prefix(name);
    if (!is_native_hyb(c) || !k)
        return false;
    bool up = !strcmp(name + k, "mlp.up_proj.weight");
    if (!up && strcmp(name + k, "mlp.gate_proj.weight") != 0)
        return false;
    *row0 = up ? 0 : c->d_ff; // GatedMLP: y, gate = fc1(x).chunk(2); y · silu(gate)
    *rows = 2 * (int64_t)c->d_ff;
    return true;
}

static bool is_zbias(const char *name) {
    size_t n = strlen(name), k = strlen(".mixer.z_bias");
    return n > k && !strcmp(name + n - k, ".mixer.z_bias");
}

bool layout_may_omit(const model_cfg *c, const char *name) {
    return c->arch == ARCH_LLAMBA && c->ssm_bias && is_zbias(name);
}

bool layout_skips(const model_cfg *c, const molt_model *m, const param_info *p) {
    return c->arch == ARCH_LLAMBA && c->ssm_bias && is_zbias(p->name) &&
           m->be->mem.host_visible && all_zero(m->data + p->offset, p->numel);
}

bool layout_writes_tied_head(const model_cfg *c) {
    return is_native(c) && c->tie_embeddings;
}

// A float literal that reads back as v (cf. config.c float_item); Infinity for +inf
// (Python's json reads it; mamba_ssm's dt_limit default holds one).
static cJSON *float_raw(float v) {
    char buf[48];
    if (isinf(v))
        return cJSON_CreateRaw(v > 0 ? "Infinity" : "-Infinity");
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eEn"))
        strcat(buf, ".0");
    return cJSON_CreateRaw(buf);
}

// the Mamba3 module's arguments (ssm_cfg) of c's layers (native_m3_target checked them)
static void native_m3_args(cJSON *m, const model_cfg *c) {
    const mamba3_cfg *s = layer_m3(c, 0);
    js_put(m, "layer", cJSON_CreateString("Mamba3"));
    js_put(m, "d_state", cJSON_CreateNumber(s->N));
    js_put(m, "expand", cJSON_CreateNumber(s->d_inner / c->d_model));
    js_put(m, "headdim", cJSON_CreateNumber(s->P));
    js_put(m, "ngroups", cJSON_CreateNumber(s->G));
    js_put(m, "rope_fraction", float_raw(s->rope_fraction));
    js_put(m, "A_floor", float_raw(s->A_floor));
    js_put(m, "is_outproj_norm", cJSON_CreateBool(s->outproj_norm != 0));
    js_put(m, "is_mimo", cJSON_CreateBool(s->mimo != 0));
    if (s->mimo)
        js_put(m, "mimo_rank", cJSON_CreateNumber(s->R));
    js_put(m, "chunk_size", cJSON_CreateNumber(s->chunk));
}

static molt_status native_to_json(molt_ctx *ctx, const model_cfg *c, char **json) {
    const ssm_cfg *s = layer_ssm(c, 0);
    bool m3 = is_native_hyb(c) && c->kind[0] == LAYER_MAMBA3;
    for (int l = 1; l < c->n_layer && !m3; l++)
        if (memcmp(layer_ssm(c, l), s, sizeof *s) != 0)
            return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                             "config.json: the layers' Mamba-2 configs differ; MambaConfig has "
                             "one ssm_cfg for all layers");
    if (!m3 && s->d_inner % c->d_model)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "config.json: d_inner %d is not a whole multiple of d_model %d (expand)",
                         s->d_inner, c->d_model);
    js_build_begin();
    cJSON *o = cJSON_CreateObject(); // MambaConfig's fields only: the dataclass refuses others
    if (!o)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory writing config.json");
    js_put(o, "d_model", cJSON_CreateNumber(c->d_model));
    js_put(o, "d_intermediate", cJSON_CreateNumber(is_native_hyb(c) && c->has_mlp ? c->d_ff : 0));
    js_put(o, "n_layer", cJSON_CreateNumber(c->n_layer));
    js_put(o, "vocab_size", cJSON_CreateNumber(c->vocab));
    cJSON *m = js_put(o, "ssm_cfg", cJSON_CreateObject());
    if (m && m3) {
        native_m3_args(m, c);
    } else if (m) {
        js_put(m, "layer", cJSON_CreateString("Mamba2"));
        js_put(m, "d_state", cJSON_CreateNumber(s->N));
        js_put(m, "d_conv", cJSON_CreateNumber(s->K));
        js_put(m, "expand", cJSON_CreateNumber(s->d_inner / c->d_model));
        js_put(m, "headdim", cJSON_CreateNumber(s->P));
        js_put(m, "ngroups", cJSON_CreateNumber(s->G));
        js_put(m, "chunk_size", cJSON_CreateNumber(s->chunk));
        js_put(m, "bias", cJSON_CreateBool(c->ssm_bias));
        js_put(m, "conv_bias", cJSON_CreateBool(c->conv_bias));
        if (s->dt_limit_lo != 0.0f || !isinf(s->dt_limit_hi)) {
            cJSON *lim = js_put(m, "dt_limit", cJSON_CreateArray());
            js_put(lim, NULL, float_raw(s->dt_limit_lo));
            js_put(lim, NULL, float_raw(s->dt_limit_hi));
        }
    }
    js_put(o, "attn_layer_idx", cJSON_CreateArray());
    js_put(o, "attn_cfg", cJSON_CreateObject());
    js_put(o, "rms_norm", cJSON_CreateBool(true));
    js_put(o, "residual_in_fp32", cJSON_CreateBool(true));
    js_put(o, "fused_add_norm", cJSON_CreateBool(true));
    js_put(o, "pad_vocab_size_multiple", cJSON_CreateNumber(1));
    js_put(o, "tie_embeddings", cJSON_CreateBool(c->tie_embeddings));
    char *txt = js_build_failed() ? NULL : cJSON_Print(o);
    cJSON_Delete(o);
    if (!txt)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory writing config.json");
    *json = txt;
    return MOLT_OK;
}

molt_status layout_cfg_to_json(molt_ctx *ctx, const model_cfg *c, const char *torch_dtype,
                               char **json) {
    return is_native(c) ? native_to_json(ctx, c, json)
                        : model_cfg_to_json(ctx, c, torch_dtype, json);
}
