/*
 * model.c — from a model_cfg to an allocated molt_model: the parameter table
 * (names exactly as in each architecture's checkpoints), one aligned fp32
 * buffer, per-layer views, RoPE tables, and the memory arithmetic that
 * `molt info` reports.
 *
 * Tensor names per architecture (ALGORITHMS.md §5):
 *   llama   model.embed_tokens / model.layers.i.{input_layernorm, self_attn.{q,k,v,o}_proj,
 *           post_attention_layernorm, mlp.{gate,up,down}_proj} / model.norm / lm_head
 *   llamba  backbone.embedding / backbone.layers.i.{input_layernorm, mixer.{in_proj,
 *           conv1d, z_bias, D, out_proj}, post_attention_layernorm, mlp.*} /
 *           backbone.final_layernorm / lm_head
 *   mamba2  backbone.embeddings / backbone.layers.i.{norm, mixer.{in_proj, conv1d, dt_bias,
 *           A_log, D, norm, out_proj}} / backbone.norm_f / lm_head
 *   molt_hybrid  llamba names; attention layers use backbone.layers.i.self_attn.*,
 *           hybrid layers add backbone.layers.i.attn.{q,k,v,o}_proj (kept heads only)
 *           and backbone.layers.i.adapter.{weight,bias}            (docs/FORMATS.md)
 */
#include "kernels/kernels.h"
#include "models/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const ARCH_NAMES[ARCH_COUNT] = {"llama", "llamba", "mamba2", "molt_hybrid"};

const char *model_arch_name(model_arch a) {
    return (a >= 0 && a < ARCH_COUNT) ? ARCH_NAMES[a] : "?";
}

bool model_arch_parse(const char *s, model_arch *out) {
    for (int i = 0; i < ARCH_COUNT; i++)
        if (strcmp(s, ARCH_NAMES[i]) == 0) {
            *out = (model_arch)i;
            return true;
        }
    return false;
}

void model_free_cfg(model_cfg *cfg) {
    for (int l = 0; l < MODEL_MAX_LAYERS; l++) {
        molt__free(cfg->keep_heads[l]);
        cfg->keep_heads[l] = NULL;
    }
}

// ----------------------------------------------------------------------------
// config validation: every dimension a later loop relies on

molt_status model_cfg_check(molt_ctx *ctx, const char *what, const model_cfg *c) {
#define BAD(...) return molt__err(ctx, MOLT_ERR_SHAPE, __VA_ARGS__)
    if (c->d_model <= 0 || c->d_model > (1 << 16))
        BAD("%s: hidden size %d out of range", what, c->d_model);
    if (c->n_layer <= 0 || c->n_layer > MODEL_MAX_LAYERS)
        BAD("%s: %d layers (1..%d supported)", what, c->n_layer, MODEL_MAX_LAYERS);
    if (c->vocab <= 0 || c->vocab > (1 << 22))
        BAD("%s: vocab size %d out of range", what, c->vocab);
    if (c->max_seq <= 0 || c->max_seq > (1 << 22))
        BAD("%s: max sequence length %d out of range", what, c->max_seq);
    if (c->has_mlp && (c->d_ff <= 0 || c->d_ff > (1 << 20)))
        BAD("%s: intermediate size %d out of range", what, c->d_ff);
    if (!(c->norm_eps > 0.0f) || !(c->norm_eps < 1.0f))
        BAD("%s: norm epsilon %g out of range", what, (double)c->norm_eps);
    bool any_attn = false, any_ssm = false;
    for (int l = 0; l < c->n_layer; l++) {
        any_attn |= c->kind[l] != LAYER_SSM;
        any_ssm |= c->kind[l] != LAYER_ATTN;
    }
    if (any_attn) {
        if (c->n_head <= 0 || c->n_kv_head <= 0 || c->head_dim <= 0)
            BAD("%s: attention needs positive head counts (heads %d, kv heads %d, head_dim %d)",
                what, c->n_head, c->n_kv_head, c->head_dim);
        if (c->n_head % c->n_kv_head)
            BAD("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", what,
                c->n_head, c->n_kv_head);
        if (c->head_dim % 2)
            BAD("%s: head_dim %d must be even for RoPE", what, c->head_dim);
        if (!(c->rope.theta > 0.0f))
            BAD("%s: rope_theta %g must be positive", what, (double)c->rope.theta);
        if (c->rope.kind == ROPE_LLAMA3 &&
            (!(c->rope.factor > 0.0f) || c->rope.orig_max_pos <= 0 ||
             !(c->rope.high_freq_factor > c->rope.low_freq_factor)))
            BAD("%s: llama3 rope_scaling needs factor > 0, original_max_position_embeddings > 0 "
                "and high_freq_factor > low_freq_factor",
                what);
    }
    if (any_ssm) {
        const char *e = ssm_cfg_check(&c->ssm);
        if (e)
            BAD("%s: %s", what, e);
        if (c->ssm.d_model != c->d_model)
            BAD("%s: SSM d_model %d differs from hidden size %d", what, c->ssm.d_model,
                c->d_model);
    }
    for (int l = 0; l < c->n_layer; l++) {
        if (c->kind[l] != LAYER_HYBRID)
            continue;
        if (c->n_keep[l] <= 0 || c->n_keep[l] > c->n_head)
            BAD("%s: layer %d keeps %d attention heads (1..%d)", what, l, c->n_keep[l], c->n_head);
        for (int i = 0; i < c->n_keep[l]; i++) {
            int h = c->keep_heads[l][i];
            if (h < 0 || h >= c->n_head)
                BAD("%s: layer %d keeps head %d, but the teacher has heads 0..%d", what, l, h,
                    c->n_head - 1);
            for (int j = 0; j < i; j++)
                if (c->keep_heads[l][j] == h)
                    BAD("%s: layer %d lists head %d twice", what, l, h);
        }
    }
    return MOLT_OK;
#undef BAD
}

// ----------------------------------------------------------------------------
// parameter table

static molt_status decl(molt_ctx *ctx, molt_model *m, bool optional, int ndim, const int64_t *shape,
                        const char *fmt, ...) MOLT_PRINTF(6, 7);

static molt_status decl(molt_ctx *ctx, molt_model *m, bool optional, int ndim, const int64_t *shape,
                        const char *fmt, ...) {
    if (m->n_params == m->cap_params) {
        int ncap = m->cap_params ? 2 * m->cap_params : 64;
        param_info *np = molt__realloc(m->params, sizeof(*np) * (size_t)ncap);
        if (!np)
            return molt__err(ctx, MOLT_ERR_OOM, "out of memory declaring parameters");
        m->params = np;
        m->cap_params = ncap;
    }
    param_info *p = &m->params[m->n_params++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= (size_t)shape[i];
    }
    p->optional = optional;
    // 16-float (64-byte) alignment of every tensor
    p->offset = (m->n_floats + 15) & ~(size_t)15;
    m->n_floats = p->offset + p->numel;
    return MOLT_OK;
}

#define D1(a) (const int64_t[]){(a)}
#define D2(a, b) (const int64_t[]){(a), (b)}
#define D3(a, b, c) (const int64_t[]){(a), (b), (c)}
#define TRY(x)                                                                                     \
    do {                                                                                           \
        molt_status s_ = (x);                                                                      \
        if (s_ != MOLT_OK)                                                                         \
            return s_;                                                                             \
    } while (0)

static molt_status decl_attn(molt_ctx *ctx, molt_model *m, const char *pre, int H, int KV) {
    const model_cfg *c = &m->cfg;
    int64_t d = c->d_model, hd = c->head_dim;
    TRY(decl(ctx, m, false, 2, D2(H * hd, d), "%s.q_proj.weight", pre));
    TRY(decl(ctx, m, false, 2, D2(KV * hd, d), "%s.k_proj.weight", pre));
    TRY(decl(ctx, m, false, 2, D2(KV * hd, d), "%s.v_proj.weight", pre));
    TRY(decl(ctx, m, false, 2, D2(d, H * hd), "%s.o_proj.weight", pre));
    if (c->attn_bias) {
        TRY(decl(ctx, m, false, 1, D1(H * hd), "%s.q_proj.bias", pre));
        TRY(decl(ctx, m, false, 1, D1(KV * hd), "%s.k_proj.bias", pre));
        TRY(decl(ctx, m, false, 1, D1(KV * hd), "%s.v_proj.bias", pre));
        TRY(decl(ctx, m, false, 1, D1(d), "%s.o_proj.bias", pre));
    }
    return MOLT_OK;
}

static molt_status decl_ssm(molt_ctx *ctx, molt_model *m, const char *pre) {
    const ssm_cfg *s = &m->cfg.ssm;
    int64_t d = s->d_model, Di = s->d_inner, R = ssm_in_proj_rows(s), Cc = ssm_conv_dim(s);
    TRY(decl(ctx, m, false, 2, D2(R, d), "%s.in_proj.weight", pre));
    if (m->cfg.ssm_bias)
        TRY(decl(ctx, m, false, 1, D1(R), "%s.in_proj.bias", pre));
    TRY(decl(ctx, m, false, 3, D3(Cc, 1, s->K), "%s.conv1d.weight", pre));
    if (m->cfg.conv_bias)
        TRY(decl(ctx, m, false, 1, D1(Cc), "%s.conv1d.bias", pre));
    if (s->kind == SSM_MAMBA2) {
        TRY(decl(ctx, m, false, 1, D1(s->H), "%s.dt_bias", pre));
        TRY(decl(ctx, m, false, 1, D1(s->H), "%s.A_log", pre));
        TRY(decl(ctx, m, false, 1, D1(s->H), "%s.D", pre));
        TRY(decl(ctx, m, false, 1, D1(Di), "%s.norm.weight", pre));
    } else {
        TRY(decl(ctx, m, false, 1, D1(Di), "%s.z_bias", pre));
        TRY(decl(ctx, m, false, 1, D1(s->H), "%s.D", pre));
    }
    TRY(decl(ctx, m, false, 2, D2(d, Di), "%s.out_proj.weight", pre));
    if (m->cfg.ssm_bias)
        TRY(decl(ctx, m, false, 1, D1(d), "%s.out_proj.bias", pre));
    return MOLT_OK;
}

static molt_status decl_mlp(molt_ctx *ctx, molt_model *m, const char *pre) {
    int64_t d = m->cfg.d_model, F = m->cfg.d_ff;
    TRY(decl(ctx, m, false, 2, D2(F, d), "%s.gate_proj.weight", pre));
    TRY(decl(ctx, m, false, 2, D2(F, d), "%s.up_proj.weight", pre));
    TRY(decl(ctx, m, false, 2, D2(d, F), "%s.down_proj.weight", pre));
    return MOLT_OK;
}

static molt_status declare_all(molt_ctx *ctx, molt_model *m) {
    const model_cfg *c = &m->cfg;
    int64_t d = c->d_model, V = c->vocab;
    char pre[MODEL_NAME_MAX];
    const char *root = c->arch == ARCH_LLAMA ? "model" : "backbone";
    const char *emb = c->arch == ARCH_LLAMA    ? "model.embed_tokens.weight"
                      : c->arch == ARCH_MAMBA2 ? "backbone.embeddings.weight"
                                               : "backbone.embedding.weight";
    TRY(decl(ctx, m, false, 2, D2(V, d), "%s", emb));
    for (int l = 0; l < c->n_layer; l++) {
        if (c->arch == ARCH_MAMBA2) {
            TRY(decl(ctx, m, false, 1, D1(d), "backbone.layers.%d.norm.weight", l));
            snprintf(pre, sizeof pre, "backbone.layers.%d.mixer", l);
            TRY(decl_ssm(ctx, m, pre));
            continue;
        }
        TRY(decl(ctx, m, false, 1, D1(d), "%s.layers.%d.input_layernorm.weight", root, l));
        if (c->kind[l] == LAYER_ATTN) {
            snprintf(pre, sizeof pre, "%s.layers.%d.self_attn", root, l);
            TRY(decl_attn(ctx, m, pre, c->n_head, c->n_kv_head));
        } else {
            snprintf(pre, sizeof pre, "%s.layers.%d.mixer", root, l);
            TRY(decl_ssm(ctx, m, pre));
        }
        if (c->kind[l] == LAYER_HYBRID) {
            snprintf(pre, sizeof pre, "%s.layers.%d.attn", root, l);
            TRY(decl_attn(ctx, m, pre, c->n_keep[l], c->n_keep[l]));
            TRY(decl(ctx, m, false, 2, D2(d, d), "%s.layers.%d.adapter.weight", root, l));
            TRY(decl(ctx, m, false, 1, D1(d), "%s.layers.%d.adapter.bias", root, l));
        }
        TRY(decl(ctx, m, false, 1, D1(d), "%s.layers.%d.post_attention_layernorm.weight", root,
                 l));
        snprintf(pre, sizeof pre, "%s.layers.%d.mlp", root, l);
        TRY(decl_mlp(ctx, m, pre));
    }
    const char *fn = c->arch == ARCH_LLAMA    ? "model.norm.weight"
                     : c->arch == ARCH_MAMBA2 ? "backbone.norm_f.weight"
                                              : "backbone.final_layernorm.weight";
    TRY(decl(ctx, m, false, 1, D1(d), "%s", fn));
    if (!c->tie_embeddings)
        TRY(decl(ctx, m, false, 2, D2(V, d), "lm_head.weight"));
    return MOLT_OK;
}

param_info *model_param(const molt_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return &m->params[i];
    return NULL;
}

float *model_param_data(const molt_model *m, const char *name) {
    param_info *p = model_param(m, name);
    return p ? m->data + p->offset : NULL;
}

static float *P(const molt_model *m, const char *fmt, ...) MOLT_PRINTF(2, 3);
static float *P(const molt_model *m, const char *fmt, ...) {
    char name[MODEL_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return model_param_data(m, name);
}

static void bind_attn(const molt_model *m, layer_weights *w, const char *pre) {
    w->wq = P(m, "%s.q_proj.weight", pre);
    w->wk = P(m, "%s.k_proj.weight", pre);
    w->wv = P(m, "%s.v_proj.weight", pre);
    w->wo = P(m, "%s.o_proj.weight", pre);
    w->bq = P(m, "%s.q_proj.bias", pre);
    w->bk = P(m, "%s.k_proj.bias", pre);
    w->bv = P(m, "%s.v_proj.bias", pre);
    w->bo = P(m, "%s.o_proj.bias", pre);
}

static void bind_ssm(const molt_model *m, ssm_weights *w, const char *pre) {
    memset(w, 0, sizeof *w);
    w->in_proj = P(m, "%s.in_proj.weight", pre);
    w->in_proj_b = P(m, "%s.in_proj.bias", pre);
    w->conv_w = P(m, "%s.conv1d.weight", pre);
    w->conv_b = P(m, "%s.conv1d.bias", pre);
    w->dt_bias = P(m, "%s.dt_bias", pre);
    w->A_log = P(m, "%s.A_log", pre);
    w->D = P(m, "%s.D", pre);
    w->norm_w = P(m, "%s.norm.weight", pre);
    w->z_bias = P(m, "%s.z_bias", pre);
    w->out_proj = P(m, "%s.out_proj.weight", pre);
    w->out_proj_b = P(m, "%s.out_proj.bias", pre);
}

static void bind_views(molt_model *m) {
    const model_cfg *c = &m->cfg;
    const char *root = c->arch == ARCH_LLAMA ? "model" : "backbone";
    m->embed = m->data + m->params[0].offset;
    char pre[MODEL_NAME_MAX];
    for (int l = 0; l < c->n_layer; l++) {
        layer_weights *w = &m->layers[l];
        memset(w, 0, sizeof *w);
        if (c->arch == ARCH_MAMBA2) {
            w->attn_norm = P(m, "backbone.layers.%d.norm.weight", l);
            snprintf(pre, sizeof pre, "backbone.layers.%d.mixer", l);
            bind_ssm(m, &w->ssm, pre);
            continue;
        }
        w->attn_norm = P(m, "%s.layers.%d.input_layernorm.weight", root, l);
        snprintf(pre, sizeof pre, "%s.layers.%d.self_attn", root, l);
        if (c->kind[l] == LAYER_ATTN)
            bind_attn(m, w, pre);
        snprintf(pre, sizeof pre, "%s.layers.%d.mixer", root, l);
        if (c->kind[l] != LAYER_ATTN)
            bind_ssm(m, &w->ssm, pre);
        if (c->kind[l] == LAYER_HYBRID) {
            snprintf(pre, sizeof pre, "%s.layers.%d.attn", root, l);
            bind_attn(m, w, pre);
            w->adapter_w = P(m, "%s.layers.%d.adapter.weight", root, l);
            w->adapter_b = P(m, "%s.layers.%d.adapter.bias", root, l);
        }
        w->ffn_norm = P(m, "%s.layers.%d.post_attention_layernorm.weight", root, l);
        w->w_gate = P(m, "%s.layers.%d.mlp.gate_proj.weight", root, l);
        w->w_up = P(m, "%s.layers.%d.mlp.up_proj.weight", root, l);
        w->w_down = P(m, "%s.layers.%d.mlp.down_proj.weight", root, l);
    }
    m->final_norm = P(m, "%s", c->arch == ARCH_LLAMA    ? "model.norm.weight"
                               : c->arch == ARCH_MAMBA2 ? "backbone.norm_f.weight"
                                                        : "backbone.final_layernorm.weight");
    m->lm_head = c->tie_embeddings ? m->embed : P(m, "lm_head.weight");
    model_bind_typed_f32(m);
}

// ----------------------------------------------------------------------------
// typed weights: the matrices the inference paths multiply by, as molt_w views
// (model.h). f32: the parameters themselves. bf16 / f16: one backend buffer
// holding a rounded copy of each, in the order typed_list gives (gate and up
// adjacent), each group starting on a 64-byte boundary.

void model_bind_typed_f32(molt_model *m) {
    for (int l = 0; l < m->cfg.n_layer; l++) {
        layer_weights *w = &m->layers[l];
        w->t_q = molt_w_f32(w->wq), w->t_k = molt_w_f32(w->wk);
        w->t_v = molt_w_f32(w->wv), w->t_o = molt_w_f32(w->wo);
        w->t_gate = molt_w_f32(w->w_gate), w->t_up = molt_w_f32(w->w_up);
        w->t_down = molt_w_f32(w->w_down);
        w->ssm.in_proj_t = molt_w_f32(w->ssm.in_proj);
        w->ssm.out_proj_t = molt_w_f32(w->ssm.out_proj);
    }
    m->lm_head_t = molt_w_f32(m->lm_head);
    m->weight_dt = MOLT_F32;
}

typedef struct typed_mat {
    const float *src;  // the f32 parameter
    size_t       n;    // elements
    molt_w      *view;
    bool         joined; // follows the previous one with no gap (up after gate)
    size_t       off;    // bytes into the typed buffer
} typed_mat;

// The typed matrices of m (absent ones skipped); returns how many (≤ cap).
static int typed_list(molt_model *m, typed_mat *t, int cap) {
    const model_cfg *c = &m->cfg;
    int k = 0;
#define TM(p, numel, v, j)                                                                         \
    do {                                                                                           \
        if ((p) && k < cap)                                                                        \
            t[k++] = (typed_mat){(p), (numel), (v), (j), 0};                                       \
    } while (0)
    size_t d = (size_t)c->d_model, hd = (size_t)c->head_dim, F = (size_t)c->d_ff;
    for (int l = 0; l < c->n_layer; l++) {
        layer_weights *w = &m->layers[l];
        size_t H = (size_t)(c->kind[l] == LAYER_HYBRID ? c->n_keep[l] : c->n_head);
        size_t KV = (size_t)(c->kind[l] == LAYER_HYBRID ? c->n_keep[l] : c->n_kv_head);
        TM(w->wq, H * hd * d, &w->t_q, false);
        TM(w->wk, KV * hd * d, &w->t_k, false);
        TM(w->wv, KV * hd * d, &w->t_v, false);
        TM(w->wo, d * H * hd, &w->t_o, false);
        TM(w->ssm.in_proj, (size_t)ssm_in_proj_rows(&c->ssm) * d, &w->ssm.in_proj_t, false);
        TM(w->ssm.out_proj, d * (size_t)c->ssm.d_inner, &w->ssm.out_proj_t, false);
        TM(w->w_gate, F * d, &w->t_gate, false);
        TM(w->w_up, F * d, &w->t_up, true);
        TM(w->w_down, d * F, &w->t_down, false);
    }
    TM(m->lm_head, (size_t)c->vocab * d, &m->lm_head_t, false);
#undef TM
    return k;
}

static size_t typed_max(const molt_model *m) { return 9 * (size_t)m->cfg.n_layer + 1; }

molt_status molt_model_set_weight_dtype(molt_ctx *ctx, molt_model *m, const char *dtype) {
    molt_dtype dt;
    if (!m || !dtype || !molt_dtype_parse(dtype, &dt))
        return molt__err(ctx, MOLT_ERR_ARG, "weight dtype '%s': expected f32, bf16 or f16",
                         dtype ? dtype : "(null)");
    if (dt == MOLT_F32) {
        be_free(m->be, m->wbuf);
        m->wbuf = NULL, m->wbuf_bytes = 0;
        model_bind_typed_f32(m);
        return MOLT_OK;
    }
    size_t    cap = typed_max(m), es = molt_dtype_size(dt);
    typed_mat *t = molt__malloc(sizeof *t * cap);
    if (!t)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory listing the weight matrices");
    int    n = typed_list(m, t, (int)cap);
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        if (!t[i].joined)
            bytes = (bytes + 63) & ~(size_t)63;
        t[i].off = bytes;
        bytes += t[i].n * es;
    }
    // the copies are written through a host chunk and be_upload (a device
    // backend too); the f32 master is read in place (models are host-visible)
    enum { CHUNK = 1 << 16 };
    uint16_t *stage = molt__malloc(sizeof(uint16_t) * CHUNK);
    void     *buf = stage ? be_alloc(m->be, bytes) : NULL;
    if (!buf) {
        molt__free(stage);
        molt__free(t);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for %s weights (%.1f MB)",
                         molt_dtype_name(dt), (double)bytes * 1e-6);
    }
    molt_exec ex = be_exec1(m->be);
    for (int i = 0; i < n; i++) {
        for (size_t a = 0; a < t[i].n; a += CHUNK) {
            size_t k = t[i].n - a < CHUNK ? t[i].n - a : CHUNK;
            const float *s = t[i].src + a;
            if (dt == MOLT_BF16)
                for (size_t j = 0; j < k; j++)
                    stage[j] = molt_f32_to_bf16(s[j]);
            else
                for (size_t j = 0; j < k; j++)
                    stage[j] = molt_f32_to_f16(s[j]);
            be_upload(&ex, (char *)buf + t[i].off + a * es, stage, k * es);
        }
    }
    be_sync(&ex);
    be_free(m->be, m->wbuf);
    m->wbuf = buf, m->wbuf_bytes = bytes;
    model_bind_typed_f32(m); // matrices without a copy (none today) stay f32
    for (int i = 0; i < n; i++)
        *t[i].view = (molt_w){dt, (char *)buf + t[i].off};
    m->weight_dt = dt;
    molt__free(stage);
    molt__free(t);
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// RoPE tables, HF convention: pairs (i, i + hd/2) rotate by pos · inv_freq[i].
// Computed in fp32 exactly as HF's LlamaRotaryEmbedding does, so that the
// angles (and hence logits) agree to the last bits.

molt_status model_init_rope(molt_ctx *ctx, molt_model *m) {
    const model_cfg *c = &m->cfg;
    be_free(m->be, m->rope_cos);
    be_free(m->be, m->rope_sin);
    m->rope_cos = m->rope_sin = NULL;
    if (c->head_dim <= 0)
        return MOLT_OK;
    int half = c->head_dim / 2;
    size_t n = (size_t)c->max_seq * (size_t)half;
    m->rope_cos = be_allocf(m->be, n);
    m->rope_sin = be_allocf(m->be, n);
    float *inv = molt__malloc(sizeof(float) * (size_t)half);
    if (!m->rope_cos || !m->rope_sin || !inv) {
        molt__free(inv);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for RoPE tables (%zu floats)", 2 * n);
    }
    const rope_cfg *r = &c->rope;
    for (int i = 0; i < half; i++) {
        // torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all fp32
        float e = (float)(2 * i) / (float)c->head_dim;
        float f = 1.0f / powf(r->theta, e);
        if (r->kind == ROPE_LINEAR) {
            f = f / r->factor;
        } else if (r->kind == ROPE_LLAMA3) {
            // HF _compute_llama3_parameters
            float low_wl = (float)r->orig_max_pos / r->low_freq_factor;
            float high_wl = (float)r->orig_max_pos / r->high_freq_factor;
            float wl = 2.0f * (float)M_PI / f;
            if (wl > low_wl) {
                f = f / r->factor;
            } else if (wl >= high_wl) {
                float s = ((float)r->orig_max_pos / wl - r->low_freq_factor) /
                          (r->high_freq_factor - r->low_freq_factor);
                f = (1.0f - s) * f / r->factor + s * f;
            }
        }
        inv[i] = f;
    }
    for (int p = 0; p < c->max_seq; p++)
        for (int i = 0; i < half; i++) {
            float a = (float)p * inv[i];
            m->rope_cos[(size_t)p * half + i] = cosf(a);
            m->rope_sin[(size_t)p * half + i] = sinf(a);
        }
    molt__free(inv);
    return MOLT_OK;
}

// ----------------------------------------------------------------------------
// allocation

molt_status model_alloc(molt_ctx *ctx, const model_cfg *cfg, molt_model **out) {
    *out = NULL;
    molt_model *m = molt__calloc(1, sizeof *m);
    if (!m)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory allocating a model");
    m->cfg = *cfg;
    // Loaders, initializers and the RoPE tables fill parameters on the host,
    // so a model lives on a host-visible backend; a device backend receives
    // it by upload (be_upload) when it runs it.
    m->be = molt__exec(ctx).be;
    if (!m->be->mem.host_visible) {
        const char *name = m->be->name;
        molt__free(m);
        return molt__err(ctx, MOLT_ERR_ARG, "backend %s: models are built in host-visible memory",
                         name);
    }
    // deep-copy the per-layer head lists
    memset(m->cfg.keep_heads, 0, sizeof m->cfg.keep_heads);
    for (int l = 0; l < cfg->n_layer; l++) {
        if (!cfg->keep_heads[l] || cfg->n_keep[l] <= 0)
            continue;
        m->cfg.keep_heads[l] = molt__malloc(sizeof(int) * (size_t)cfg->n_keep[l]);
        if (!m->cfg.keep_heads[l]) {
            molt_model_free(m);
            return molt__err(ctx, MOLT_ERR_OOM, "out of memory copying the head plan");
        }
        memcpy(m->cfg.keep_heads[l], cfg->keep_heads[l], sizeof(int) * (size_t)cfg->n_keep[l]);
    }
    molt_status st = declare_all(ctx, m);
    if (st != MOLT_OK) {
        molt_model_free(m);
        return st;
    }
    if (!(m->data = be_allocf(m->be, m->n_floats))) {
        molt_model_free(m);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for %zu parameters (%.1f MB)",
                         m->n_floats, (double)m->n_floats * 4e-6);
    }
    molt_exec ex = be_exec1(m->be);
    be_zero(&ex, m->data, m->n_floats * sizeof(float)); // the parameters start at 0
    bind_views(m);
    if ((st = model_init_rope(ctx, m)) != MOLT_OK) {
        molt_model_free(m);
        return st;
    }
    *out = m;
    return MOLT_OK;
}

void molt_model_free(molt_model *m) {
    if (!m)
        return;
    model_free_cfg(&m->cfg);
    molt__free(m->params);
    if (m->be) {
        be_free(m->be, m->data);
        be_free(m->be, m->wbuf);
        be_free(m->be, m->rope_cos);
        be_free(m->be, m->rope_sin);
    }
    molt_tokenizer_free(m->tok);
    molt__free(m);
}

const molt_tokenizer *molt_model_tokenizer(const molt_model *m) { return m ? m->tok : NULL; }

// ----------------------------------------------------------------------------
// memory arithmetic

int64_t model_kv_bytes_per_token(const model_cfg *c) {
    int64_t b = 0;
    for (int l = 0; l < c->n_layer; l++) {
        if (c->kind[l] == LAYER_ATTN)
            b += 2 * (int64_t)c->n_kv_head * c->head_dim * (int64_t)sizeof(float);
        else if (c->kind[l] == LAYER_HYBRID)
            b += 2 * (int64_t)c->n_keep[l] * c->head_dim * (int64_t)sizeof(float);
    }
    return b;
}

int64_t model_state_bytes(const model_cfg *c) {
    int64_t b = 0;
    for (int l = 0; l < c->n_layer; l++)
        if (c->kind[l] != LAYER_ATTN)
            b += (int64_t)ssm_state_floats(&c->ssm) * (int64_t)sizeof(float);
    return b;
}

void molt_model_get_info(const molt_model *m, molt_model_info *info) {
    memset(info, 0, sizeof *info);
    const model_cfg *c = &m->cfg;
    snprintf(info->arch, sizeof info->arch, "%s", model_arch_name(c->arch));
    info->n_layer = c->n_layer;
    info->d_model = c->d_model;
    info->vocab = c->vocab;
    info->d_ff = c->has_mlp ? c->d_ff : 0;
    bool any_attn = false, any_ssm = false;
    for (int l = 0; l < c->n_layer; l++) {
        any_attn |= c->kind[l] != LAYER_SSM;
        any_ssm |= c->kind[l] != LAYER_ATTN;
        info->n_attn_heads_kept += c->kind[l] == LAYER_ATTN     ? c->n_head
                                   : c->kind[l] == LAYER_HYBRID ? c->n_keep[l]
                                                                : 0;
    }
    if (any_attn) {
        info->n_head = c->n_head;
        info->n_kv_head = c->n_kv_head;
        info->head_dim = c->head_dim;
    }
    if (any_ssm) {
        info->d_state = c->ssm.N;
        info->ssm_heads = c->ssm.H;
    }
    info->max_seq = c->max_seq;
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++)
        n += (int64_t)m->params[i].numel;
    info->n_params = n;
    info->weight_bytes = n * (int64_t)sizeof(float);
    info->kv_bytes_per_token = model_kv_bytes_per_token(c);
    info->state_bytes = model_state_bytes(c);
}
