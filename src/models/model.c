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
#include "mixers/mixer.h"
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
    for (int l = 0; l < c->n_layer; l++) {
        if ((unsigned)c->kind[l] >= LAYER_KIND_COUNT)
            BAD("%s: layer %d has no mixer (kind %d)", what, l, (int)c->kind[l]);
        molt_status st = mixer_of(c->kind[l])->check(ctx, what, c, l);
        if (st != MOLT_OK)
            return st;
    }
    return MOLT_OK;
#undef BAD
}

// ----------------------------------------------------------------------------
// parameter table

molt_status model_decl(molt_ctx *ctx, molt_model *m, bool optional, int ndim,
                       const int64_t *shape, const char *fmt, ...) {
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

#define P model_paramf

static molt_status decl_mlp(molt_ctx *ctx, molt_model *m, const char *pre) {
    int64_t d = m->cfg.d_model, F = m->cfg.d_ff;
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(F, d), "%s.gate_proj.weight", pre));
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(F, d), "%s.up_proj.weight", pre));
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(d, F), "%s.down_proj.weight", pre));
    return MOLT_OK;
}

static molt_status declare_all(molt_ctx *ctx, molt_model *m) {
    const model_cfg *c = &m->cfg;
    int64_t d = c->d_model, V = c->vocab;
    char pre[MODEL_NAME_MAX], mlp[MODEL_NAME_MAX + 8];
    const char *root = c->arch == ARCH_LLAMA ? "model" : "backbone";
    const char *emb = c->arch == ARCH_LLAMA    ? "model.embed_tokens.weight"
                      : c->arch == ARCH_MAMBA2 ? "backbone.embeddings.weight"
                                               : "backbone.embedding.weight";
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(V, d), "%s", emb));
    for (int l = 0; l < c->n_layer; l++) {
        snprintf(pre, sizeof pre, "%s.layers.%d", root, l);
        // HF Mamba-2 names the mixer's norm `norm` and has no MLP
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(d), "%s.%s", pre,
                       c->arch == ARCH_MAMBA2 ? "norm.weight" : "input_layernorm.weight"));
        MOLT_TRY(mixer_of(c->kind[l])->declare(ctx, m, l, pre));
        if (c->arch == ARCH_MAMBA2 || !c->has_mlp) // (a mamba_ssm MambaConfig, d_intermediate 0)
            continue;
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(d), "%s.post_attention_layernorm.weight", pre));
        snprintf(mlp, sizeof mlp, "%s.mlp", pre);
        MOLT_TRY(decl_mlp(ctx, m, mlp));
    }
    const char *fn = c->arch == ARCH_LLAMA    ? "model.norm.weight"
                     : c->arch == ARCH_MAMBA2 ? "backbone.norm_f.weight"
                                              : "backbone.final_layernorm.weight";
    MOLT_TRY(model_decl(ctx, m, false, 1, D1(d), "%s", fn));
    if (!c->tie_embeddings)
        MOLT_TRY(model_decl(ctx, m, false, 2, D2(V, d), "lm_head.weight"));
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

float *model_paramf(const molt_model *m, const char *fmt, ...) {
    char name[MODEL_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return model_param_data(m, name);
}

static void bind_views(molt_model *m) {
    const model_cfg *c = &m->cfg;
    const char *root = c->arch == ARCH_LLAMA ? "model" : "backbone";
    m->embed = m->data + m->params[0].offset;
    char pre[MODEL_NAME_MAX];
    for (int l = 0; l < c->n_layer; l++) {
        layer_weights *w = &m->layers[l];
        memset(w, 0, sizeof *w);
        snprintf(pre, sizeof pre, "%s.layers.%d", root, l);
        w->attn_norm = P(m, "%s.%s", pre,
                         c->arch == ARCH_MAMBA2 ? "norm.weight" : "input_layernorm.weight");
        mixer_of(c->kind[l])->bind(m, l, pre);
        if (c->arch == ARCH_MAMBA2 || !c->has_mlp)
            continue;
        w->ffn_norm = P(m, "%s.post_attention_layernorm.weight", pre);
        w->w_gate = P(m, "%s.mlp.gate_proj.weight", pre);
        w->w_up = P(m, "%s.mlp.up_proj.weight", pre);
        w->w_down = P(m, "%s.mlp.down_proj.weight", pre);
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

// The typed matrices of m (absent ones skipped), t NULL: only counted. Per
// layer the mixer's (mixer_vt.typed), then the MLP's (gate and up joined);
// then the head.
static int typed_list(molt_model *m, model_typed *t) {
    const model_cfg *c = &m->cfg;
    size_t d = (size_t)c->d_model, F = (size_t)c->d_ff;
    int k = 0;
    for (int l = 0; l < c->n_layer; l++) {
        layer_weights *w = &m->layers[l];
        k += mixer_of(c->kind[l])->typed(m, l, t ? t + k : NULL);
        k = model_typed_add(t, k, w->w_gate, F * d, &w->t_gate, false);
        k = model_typed_add(t, k, w->w_up, F * d, &w->t_up, true);
        k = model_typed_add(t, k, w->w_down, d * F, &w->t_down, false);
    }
    return model_typed_add(t, k, m->lm_head, (size_t)c->vocab * d, &m->lm_head_t, false);
}

// Every typed view at its f32 parameter (absent matrices' views stay {f32,
// NULL} from bind_views' zeroing). Does not free wbuf.
void model_bind_typed_f32(molt_model *m) {
    enum { MAX_LAYER_TYPED = 16 };
    model_typed t[MAX_LAYER_TYPED];
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const mixer_vt *v = layer_mixer(m, l);
        int n = v->typed(m, l, NULL);
        MOLT_ASSERT(n <= MAX_LAYER_TYPED);
        v->typed(m, l, t);
        for (int i = 0; i < n; i++)
            *t[i].view = molt_w_f32(t[i].src);
        layer_weights *w = &m->layers[l];
        w->t_gate = molt_w_f32(w->w_gate), w->t_up = molt_w_f32(w->w_up);
        w->t_down = molt_w_f32(w->w_down);
    }
    m->lm_head_t = molt_w_f32(m->lm_head);
    m->weight_dt = MOLT_F32;
}

// each entry's parameter and [rows, cols] from the parameter table
static void typed_shapes(const molt_model *m, model_typed *t, int n) {
    for (int k = 0; k < n; k++) {
        size_t off = (size_t)(t[k].src - m->data);
        t[k].param = -1;
        for (int i = 0; i < m->n_params && t[k].param < 0; i++) {
            const param_info *p = &m->params[i];
            if (p->offset == off && p->numel == t[k].n && p->ndim >= 1) {
                t[k].param = i;
                t[k].cols = (size_t)p->shape[p->ndim - 1];
                t[k].rows = t[k].cols ? t[k].n / t[k].cols : 0;
            }
        }
        MOLT_ASSERT(t[k].param >= 0); // every typed matrix is a declared parameter
    }
}

molt_status model_typed_list(molt_ctx *ctx, molt_model *m, model_typed **out, int *count) {
    int n = typed_list(m, NULL);
    model_typed *t = molt__malloc(sizeof *t * (size_t)(n > 0 ? n : 1));
    if (!t)
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory listing the weight matrices");
    typed_list(m, t);
    typed_shapes(m, t, n);
    *out = t, *count = n;
    return MOLT_OK;
}

// writes matrix t's copy in dt through the host chunk stage (CHUNK bytes)
// and be_upload; q8_0 from packed rows when given
enum { CHUNK = 1 << 17 };
static molt_status typed_fill(molt_ctx *ctx, molt_model *m, const molt_exec *ex, void *buf,
                              const model_typed *t, const float *src, molt_dtype dt,
                              const uint8_t *packed, uint8_t *stage) {
    char *dst = (char *)buf + t->off;
    if (dt != MOLT_Q8_0) {
        size_t es = molt_dtype_size(dt), per = CHUNK / es;
        uint16_t *h = (uint16_t *)(void *)stage;
        for (size_t a = 0; a < t->n; a += per) {
            size_t k = t->n - a < per ? t->n - a : per;
            const float *s = src + a;
            for (size_t j = 0; j < k; j++)
                h[j] = dt == MOLT_BF16 ? molt_f32_to_bf16(s[j]) : molt_f32_to_f16(s[j]);
            be_upload(ex, dst + a * es, h, k * es);
        }
        return MOLT_OK;
    }
    size_t rb = molt_q8_row_bytes(t->cols);
    if (packed) {
        be_upload(ex, dst, packed, t->rows * rb);
        return MOLT_OK;
    }
    size_t per = CHUNK / rb ? CHUNK / rb : 1;
    for (size_t r = 0; r < t->rows; r += per) {
        size_t k = t->rows - r < per ? t->rows - r : per;
        for (size_t i = 0; i < k; i++)
            if (!molt_q8_quantize_row(stage + i * rb, src + (r + i) * t->cols, t->cols))
                return molt__err(ctx, MOLT_ERR_ARG, "%s: row %zu has a value that q8_0 cannot "
                                                    "hold (inf, NaN or beyond ±8.3e6)",
                                 m->params[t->param].name, r + i);
        be_upload(ex, dst + r * rb, stage, k * rb);
    }
    return MOLT_OK;
}

molt_status model_set_typed(molt_ctx *ctx, molt_model *m, molt_dtype dt,
                            const uint8_t *const *packed) {
    model_typed *t = NULL;
    int n = 0;
    molt_status st = model_typed_list(ctx, m, &t, &n);
    if (st != MOLT_OK)
        return st;
    size_t bytes = 0, stage_bytes = CHUNK;
    for (int i = 0; i < n; i++) {
        if (!t[i].joined)
            bytes = (bytes + 63) & ~(size_t)63;
        t[i].off = bytes;
        bytes += molt_w_bytes(dt, t[i].rows, t[i].cols);
        if (dt == MOLT_Q8_0 && molt_q8_row_bytes(t[i].cols) > stage_bytes)
            stage_bytes = molt_q8_row_bytes(t[i].cols);
    }
    // the copies are written through a host chunk and be_upload (a device
    // backend too); a device model's f32 master is read through one host copy
    float       *host = NULL;
    const float *master = model_host_floats(ctx, m->be, m->data, m->n_floats, &host);
    uint8_t     *stage = master ? molt__malloc(stage_bytes) : NULL;
    void        *buf = stage ? be_alloc(m->be, bytes) : NULL;
    if (!buf) {
        molt__free(stage);
        molt__free(host);
        molt__free(t);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory for %s weights (%.1f MB)",
                         molt_dtype_name(dt), (double)bytes * 1e-6);
    }
    molt_exec ex = be_exec1(m->be);
    for (int i = 0; i < n && st == MOLT_OK; i++)
        st = typed_fill(ctx, m, &ex, buf, &t[i], master + (t[i].src - m->data), dt,
                        packed ? packed[t[i].param] : NULL, stage);
    be_sync(&ex);
    molt__free(stage);
    molt__free(host);
    if (st != MOLT_OK) {
        be_free(m->be, buf);
        molt__free(t);
        return st;
    }
    be_free(m->be, m->wbuf);
    m->wbuf = buf, m->wbuf_bytes = bytes;
    model_bind_typed_f32(m); // matrices without a copy (none today) stay f32
    for (int i = 0; i < n; i++)
        *t[i].view = (molt_w){dt, (char *)buf + t[i].off};
    m->weight_dt = dt;
    molt__free(t);
    return MOLT_OK;
}

molt_status molt_model_set_weight_dtype(molt_ctx *ctx, molt_model *m, const char *dtype) {
    molt_dtype dt;
    if (!m || !dtype || !molt_dtype_parse(dtype, &dt))
        return molt__err(ctx, MOLT_ERR_ARG,
                         "weight dtype '%s': expected f32, bf16, f16 or q8_0",
                         dtype ? dtype : "(null)");
    if (dt == MOLT_F32) {
        be_free(m->be, m->wbuf);
        m->wbuf = NULL, m->wbuf_bytes = 0;
        model_bind_typed_f32(m);
        return MOLT_OK;
    }
    return model_set_typed(ctx, m, dt, NULL);
}

// whether backend be has the f16 KV-cache ops (kernels.h: MOLT_BACKEND_KV16_OPS)
static bool has_kv16(const molt_backend *be) {
#define KV16_HAS(op) &&be->op
    return 1 MOLT_BACKEND_KV16_OPS(KV16_HAS);
#undef KV16_HAS
}

molt_status molt_model_set_kv_dtype(molt_ctx *ctx, molt_model *m, const char *dtype) {
    molt_dtype dt;
    if (!m || !dtype || !molt_dtype_parse(dtype, &dt) || (dt != MOLT_F32 && dt != MOLT_F16))
        return molt__err(ctx, MOLT_ERR_ARG, "KV-cache dtype '%s': expected f32 or f16",
                         dtype ? dtype : "(null)");
    if (dt == MOLT_F16 && !has_kv16(m->be))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "an f16 KV cache is not implemented on %s yet (use --kv f32 there)",
                         m->be->name);
    m->kv_dt = dt;
    return MOLT_OK;
}

molt_status molt_model_set_state_dtype(molt_ctx *ctx, molt_model *m, const char *dtype) {
    molt_dtype dt;
    if (!m || !dtype || !molt_dtype_parse(dtype, &dt) || (dt != MOLT_F32 && dt != MOLT_BF16))
        return molt__err(ctx, MOLT_ERR_ARG, "state dtype '%s': expected f32 or bf16",
                         dtype ? dtype : "(null)");
    if (dt == MOLT_BF16 && !model_state_dt_runs_on(m->be))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "state dtype bf16: the %s backend lacks its ops (ssd_step_rows_bf16, "
                         "bf16_widen, bf16_narrow)", m->be->name);
    m->cfg.state_dt = dt;
    return MOLT_OK;
}

bool model_state_dt_runs_on(const molt_backend *be) {
#define STATE_OP_(op) &&be->op
    return 1 MOLT_BACKEND_STATE_BF16_OPS(STATE_OP_);
#undef STATE_OP_
}

// ----------------------------------------------------------------------------
// moving a model between backends: the parameter buffer and the RoPE tables
// are copied through the host (one of the two backends is host-visible), the
// views rebound, a typed copy made again in the new place.

molt_status model_to_backend(molt_ctx *ctx, molt_model *m, const molt_backend *be) {
    if (!be || be == m->be)
        return MOLT_OK;
    if (!m->be->mem.host_visible && !be->mem.host_visible)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "moving a model from %s to %s: go through "
                                                    "the host", m->be->name, be->name);
    if (m->cfg.state_dt == MOLT_BF16 && !model_state_dt_runs_on(be))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "moving a model with bf16 state to %s: it "
                                                    "lacks the bf16 state ops", be->name);
    molt_dtype dt = m->weight_dt;
    molt_status st;
    if (dt != MOLT_F32 && (st = molt_model_set_weight_dtype(ctx, m, "f32")) != MOLT_OK)
        return st;
    const molt_backend *from = m->be;
    size_t rope = m->rope_cos ? (size_t)m->cfg.max_seq * (size_t)(m->cfg.head_dim / 2) : 0;
    // the whole model or nothing: allocate all three before freeing any
    float *d = be_allocf(be, m->n_floats);
    float *cs = rope ? be_allocf(be, rope) : NULL, *sn = rope ? be_allocf(be, rope) : NULL;
    if (!d || (rope && (!cs || !sn))) {
        be_free(be, d), be_free(be, cs), be_free(be, sn);
        return molt__err(ctx, MOLT_ERR_OOM, "out of memory on %s for the model (%.1f MB)",
                         be->name, (double)m->n_floats * 4e-6);
    }
    molt_exec ef = be_exec1(from), et = be_exec1(be);
    float *src[3] = {m->data, m->rope_cos, m->rope_sin}, *dst[3] = {d, cs, sn};
    size_t n[3] = {m->n_floats, rope, rope};
    for (int i = 0; i < 3; i++) {
        if (!n[i])
            continue;
        if (from->mem.host_visible)
            be_upload(&et, dst[i], src[i], n[i] * sizeof(float));
        else
            be_download(&ef, dst[i], src[i], n[i] * sizeof(float));
        be_free(from, src[i]);
    }
    m->data = d, m->rope_cos = cs, m->rope_sin = sn;
    m->be = be;
    bind_views(m);
    if ((st = be_status(ctx, &et)) != MOLT_OK)
        return st;
    return dt != MOLT_F32 ? molt_model_set_weight_dtype(ctx, m, molt_dtype_name(dt)) : MOLT_OK;
}

const float *model_host_floats(molt_ctx *ctx, const molt_backend *be, const float *p, size_t n,
                               float **owned) {
    *owned = NULL;
    if (be->mem.host_visible || !p)
        return p;
    if (!(*owned = molt__malloc(sizeof(float) * (n ? n : 1)))) {
        molt__err(ctx, MOLT_ERR_OOM, "out of memory copying %zu floats from %s (%.1f MB)", n,
                  be->name, (double)n * 4e-6);
        return NULL;
    }
    molt_exec ex = be_exec1(be);
    be_download(&ex, *owned, p, n * sizeof(float));
    return *owned;
}

molt_status model_host_clone(molt_ctx *ctx, const molt_model *m, molt_model **out) {
    *out = NULL;
    molt_model *c = NULL;
    molt_status st = model_alloc(ctx, &m->cfg, &c); // on the host
    if (st != MOLT_OK)
        return st;
    molt_exec ex = be_exec1(m->be);
    be_download(&ex, c->data, m->data, sizeof(float) * m->n_floats);
    c->tok = m->tok;
    *out = c;
    return MOLT_OK;
}

void model_host_clone_free(molt_model *c) {
    if (c)
        c->tok = NULL; // borrowed
    molt_model_free(c);
}

molt_status model_copy_params(molt_ctx *ctx, molt_model *dst, molt_model *src) {
    if (src->n_floats != dst->n_floats)
        return molt__err(ctx, MOLT_ERR_SHAPE, "copying parameters between models of %zu and %zu "
                                              "floats", src->n_floats, dst->n_floats);
    molt_status st = model_to_backend(ctx, src, dst->be);
    if (st != MOLT_OK)
        return st;
    molt_exec ex = be_exec1(dst->be);
    be_copy(&ex, dst->data, src->data, sizeof(float) * dst->n_floats);
    be_sync(&ex);
    return dst->weight_dt != MOLT_F32
               ? molt_model_set_weight_dtype(ctx, dst, molt_dtype_name(dst->weight_dt))
               : MOLT_OK;
}

molt_status model_place(molt_ctx *ctx, molt_model *m) {
    const molt_backend *be = molt__exec(ctx).be;
    if (be == m->be)
        return MOLT_OK;
    if (m->weight_dt == MOLT_Q8_0 && !be->mem.host_visible)
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED, "q8_0 weights run on the CPU only, not on "
                                                    "%s (use an f32/bf16 model there)", be->name);
    if (m->kv_dt == MOLT_F16 && !has_kv16(be))
        return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                         "an f16 KV cache is not implemented on %s yet (use --kv f32 there)",
                         be->name);
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int i = 0; i < layer_mixer(m, l)->n_parts; i++) {
            const mixer_vt *v = mixer_part(&m->cfg, l, i);
            if (v->runs_on && !v->runs_on(be))
                return molt__err(ctx, MOLT_ERR_UNSUPPORTED,
                                 "layer %d: the %s mixer does not run on %s yet (use --device "
                                 "cpu)",
                                 l, v->name, be->name);
        }
    return model_to_backend(ctx, m, be);
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
    m->be = &molt_backend_cpu;
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

// every layer's mixer adds its counts (mixer_vt.info)
static void layer_counts(const model_cfg *c, molt_model_info *info) {
    for (int l = 0; l < c->n_layer; l++)
        mixer_of(c->kind[l])->info(c, l, info);
}

int64_t model_kv_bytes_per_token(const model_cfg *c) {
    molt_model_info in = {0};
    layer_counts(c, &in);
    return in.kv_bytes_per_token;
}

int64_t model_state_bytes(const model_cfg *c) {
    molt_model_info in = {0};
    layer_counts(c, &in);
    return in.state_bytes;
}

void molt_model_get_info(const molt_model *m, molt_model_info *info) {
    memset(info, 0, sizeof *info);
    const model_cfg *c = &m->cfg;
    snprintf(info->arch, sizeof info->arch, "%s", model_arch_name(c->arch));
    info->n_layer = c->n_layer;
    info->d_model = c->d_model;
    info->vocab = c->vocab;
    info->d_ff = c->has_mlp ? c->d_ff : 0;
    layer_counts(c, info); // heads kept, geometry, kv_bytes_per_token, state_bytes
    if (m->kv_dt == MOLT_F16) // the mixers count f32 caches
        info->kv_bytes_per_token /= 2;
    info->max_seq = c->max_seq;
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++)
        n += (int64_t)m->params[i].numel;
    info->n_params = n;
    info->weight_bytes = n * (int64_t)sizeof(float);
}
