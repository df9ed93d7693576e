/*
 * mx_attention.c — the attention mixer behind mixer_vt (mixer.h): GQA causal
 * attention with RoPE over a KV cache (mixers/attention.c for inference,
 * attn_train.c for training). State: no recurrent part, a KV cache of
 * kv_heads heads. In a hybrid layer the same functions run the kept heads
 * (layer_attn gives their config and weights).
 */
#include "kernels/kernels.h"
#include "mixers/attn_train.h"
#include "mixers/mixer.h"

#include <stdint.h>

#include <string.h>

// The heads of layer l: the teacher geometry, or a hybrid layer's kept heads
// (each owning its k, v).
static void heads_of(const model_cfg *cfg, int l, int *H, int *KV) {
    bool hy = cfg->kind[l] == LAYER_HYBRID;
    *H = hy ? cfg->n_keep[l] : cfg->n_head;
    *KV = hy ? cfg->n_keep[l] : cfg->n_kv_head;
}

// A hybrid layer's kept heads are `attn.*` beside its `mixer.*`; an attention
// layer's are `self_attn.*` (docs/FORMATS.md).
static const char *prefix_of(const model_cfg *cfg, int l) {
    return cfg->kind[l] == LAYER_HYBRID ? "attn" : "self_attn";
}

void layer_attn(const molt_model *m, int l, attn_cfg *c, attn_weights *w) {
    const model_cfg *cfg = &m->cfg;
    const layer_weights *lw = &m->layers[l];
    c->d = cfg->d_model;
    c->hd = cfg->head_dim;
    heads_of(cfg, l, &c->H, &c->KV);
    c->flash = m->be && m->be->train_attn_flash;
    c->kv = m->kv_dt;
    w->wq = lw->wq;
    w->wk = lw->wk;
    w->wv = lw->wv;
    w->wo = lw->wo;
    w->bq = lw->bq;
    w->bk = lw->bk;
    w->bv = lw->bv;
    w->bo = lw->bo;
    w->tq = lw->t_q;
    w->tk = lw->t_k;
    w->tv = lw->t_v;
    w->to = lw->t_o;
}

float **mixer_ptrs(float *const *state, int n, int k) {
    // the slots behind the state pointers are the caller's host scratch (mixer.h)
    return (float **)(uintptr_t)(state + (size_t)n * (size_t)(1 + k));
}

static size_t rec_floats(const molt_model *m, int l) { return 0; }

static int kv_heads(const molt_model *m, int l) {
    attn_cfg c;
    attn_weights w;
    layer_attn(m, l, &c, &w);
    return c.KV;
}

static size_t work_floats(const molt_model *m, int l, int T, int cap, int nth) {
    attn_cfg c;
    attn_weights w;
    layer_attn(m, l, &c, &w);
    return attn_work(&c, T, cap, nth);
}

static void forward(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u, int T,
                    int pos, float *state, int cap, float *work, int nth) {
    attn_cfg c;
    attn_weights w;
    layer_attn(m, l, &c, &w);
    float *K = state, *V = K + (size_t)c.KV * mixer_kv_floats(m, cap);
    attn_forward(ex, y, NULL, u, T, pos, &c, &w, K, V, cap, m->rope_cos, m->rope_sin, work, nth);
}

// work: attn_decode_rows' (the K / V pointer tables: mixer_ptrs tables 0, 1)
static size_t rows_work_floats(const molt_model *m, int l, int n, int cap, int nth) {
    attn_cfg c;
    attn_weights w;
    layer_attn(m, l, &c, &w);
    return attn_decode_rows_work(&c, n, cap, nth);
}

static void step_rows(const molt_exec *ex, const molt_model *m, int l, float *y, const float *u,
                      int n, const int32_t *pos, float *const *state, int cap, float *work) {
    attn_cfg c;
    attn_weights w;
    layer_attn(m, l, &c, &w);
    size_t cache = (size_t)c.KV * mixer_kv_floats(m, cap);
    if (c.kv == MOLT_F16) {
        // the tables (caller's host memory, mixer.h) hold half pointers here:
        // written and read as uint16_t * only
        uint16_t **kc = (uint16_t **)(void *)mixer_ptrs(state, n, 0);
        uint16_t **vc = (uint16_t **)(void *)mixer_ptrs(state, n, 1);
        for (int r = 0; r < n; r++) {
            kc[r] = (uint16_t *)(void *)state[r];
            vc[r] = (uint16_t *)(void *)(state[r] + cache);
        }
        attn_decode_rows_f16(ex, y, u, n, pos, &c, &w, kc, vc, cap, m->rope_cos, m->rope_sin,
                             work);
        return;
    }
    float **kc = mixer_ptrs(state, n, 0), **vc = mixer_ptrs(state, n, 1);
    for (int r = 0; r < n; r++) {
        kc[r] = state[r];
        vc[r] = state[r] + cache;
    }
    attn_decode_rows(ex, y, u, n, pos, &c, &w, kc, vc, cap, m->rope_cos, m->rope_sin, work);
}

static size_t act_floats(const molt_model *m, int l, int B, int T) {
    attn_cfg c;
    attn_weights w;
    layer_attn(m, l, &c, &w);
    return attn_train_act_floats(&c, B, T);
}

static size_t train_work_floats(const molt_model *m, int l, int B, int T) {
    attn_cfg c;
    attn_weights w;
    layer_attn(m, l, &c, &w);
    return attn_train_work_floats(&c, B, T);
}

static void train_forward(const molt_exec *ex, const molt_model *m, int l, float *y, float *act,
                          const float *u, int B, int T, float *work) {
    attn_cfg c;
    attn_weights w;
    layer_attn(m, l, &c, &w);
    attn_train_forward(ex, y, act, u, B, T, &c, &w, m->rope_cos, m->rope_sin, work);
}

static void train_backward(const molt_exec *ex, const molt_model *m, int l, float *du, float *grad,
                           const float *dy, const float *act, const float *u, int B, int T,
                           float *work) {
    attn_cfg c;
    attn_weights w;
    layer_attn(m, l, &c, &w);
    attn_grads g = {mixer_grad(m, grad, w.wq), mixer_grad(m, grad, w.wk),
                    mixer_grad(m, grad, w.wv), mixer_grad(m, grad, w.wo),
                    mixer_grad(m, grad, w.bq), mixer_grad(m, grad, w.bk),
                    mixer_grad(m, grad, w.bv), mixer_grad(m, grad, w.bo)};
    attn_train_backward(ex, du, &g, dy, act, u, B, T, &c, &w, m->rope_cos, m->rope_sin, work);
}

static size_t mat_heads(const molt_model *m, int l) {
    attn_cfg c;
    attn_weights w;
    layer_attn(m, l, &c, &w);
    return (size_t)c.H;
}

static size_t mat_work_floats(const molt_model *m, int l, int T) {
    attn_cfg c;
    attn_weights w;
    layer_attn(m, l, &c, &w);
    return attn_materialize_work(&c, T);
}

static void materialize(const molt_exec *ex, const molt_model *m, int l, float *A, const float *u,
                        int T, float *work) {
    attn_cfg c;
    attn_weights w;
    layer_attn(m, l, &c, &w);
    attn_materialize(ex, A, u, T, &c, &w, m->rope_cos, m->rope_sin, work);
}

// A head's output is its hd columns of o_proj ([d, H·hd]).
static int units(molt_model *m, int l, mixer_unit *u) {
    const model_cfg *c = &m->cfg;
    bool hy = c->kind[l] == LAYER_HYBRID;
    int H = hy ? c->n_keep[l] : c->n_head;
    for (int j = 0; u && j < H; j++)
        u[j] = (mixer_unit){hy ? c->keep_heads[l][j] : j, 0, j, m->layers[l].wo, c->d_model,
                            H * c->head_dim, c->head_dim};
    return H;
}

static int out_weights(molt_model *m, int l, float **p, size_t *n) {
    attn_cfg c;
    attn_weights w;
    layer_attn(m, l, &c, &w);
    int k = 0;
    p[k] = m->layers[l].wo, n[k++] = (size_t)c.d * (size_t)c.H * (size_t)c.hd;
    if (m->layers[l].bo)
        p[k] = m->layers[l].bo, n[k++] = (size_t)c.d;
    return k;
}

// ---- parameters

static molt_status check(molt_ctx *ctx, const char *what, const model_cfg *c, int l) {
#define BAD(...) return molt__err(ctx, MOLT_ERR_SHAPE, __VA_ARGS__)
    if (c->n_head <= 0 || c->n_kv_head <= 0 || c->head_dim <= 0)
        BAD("%s: attention needs positive head counts (heads %d, kv heads %d, head_dim %d)", what,
            c->n_head, c->n_kv_head, c->head_dim);
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
    return MOLT_OK;
#undef BAD
}


// root.{self_attn|attn}.{q,k,v,o}_proj.weight, then the biases (attention_bias)
static molt_status declare(molt_ctx *ctx, molt_model *m, int l, const char *root) {
    const model_cfg *c = &m->cfg;
    const char *p = prefix_of(c, l);
    int H, KV;
    heads_of(c, l, &H, &KV);
    int64_t d = c->d_model, hd = c->head_dim;
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(H * hd, d), "%s.%s.q_proj.weight", root, p));
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(KV * hd, d), "%s.%s.k_proj.weight", root, p));
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(KV * hd, d), "%s.%s.v_proj.weight", root, p));
    MOLT_TRY(model_decl(ctx, m, false, 2, D2(d, H * hd), "%s.%s.o_proj.weight", root, p));
    if (c->attn_bias) {
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(H * hd), "%s.%s.q_proj.bias", root, p));
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(KV * hd), "%s.%s.k_proj.bias", root, p));
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(KV * hd), "%s.%s.v_proj.bias", root, p));
        MOLT_TRY(model_decl(ctx, m, false, 1, D1(d), "%s.%s.o_proj.bias", root, p));
    }
    return MOLT_OK;
}

static void bind(molt_model *m, int l, const char *root) {
    layer_weights *w = &m->layers[l];
    const char *p = prefix_of(&m->cfg, l);
    w->wq = model_paramf(m, "%s.%s.q_proj.weight", root, p);
    w->wk = model_paramf(m, "%s.%s.k_proj.weight", root, p);
    w->wv = model_paramf(m, "%s.%s.v_proj.weight", root, p);
    w->wo = model_paramf(m, "%s.%s.o_proj.weight", root, p);
    w->bq = model_paramf(m, "%s.%s.q_proj.bias", root, p);
    w->bk = model_paramf(m, "%s.%s.k_proj.bias", root, p);
    w->bv = model_paramf(m, "%s.%s.v_proj.bias", root, p);
    w->bo = model_paramf(m, "%s.%s.o_proj.bias", root, p);
}

// the pass by name is the whole init: Linear U(±1/√in) (o_proj / √n_layer), biases 0
static void init(molt_model *m, int l, model_rng *r) {}

static int typed(molt_model *m, int l, model_typed *t) {
    const model_cfg *c = &m->cfg;
    layer_weights *w = &m->layers[l];
    int H, KV, k = 0;
    heads_of(c, l, &H, &KV);
    size_t d = (size_t)c->d_model, hd = (size_t)c->head_dim;
    k = model_typed_add(t, k, w->wq, (size_t)H * hd * d, &w->t_q, false);
    // k and v joined to q: one [(H + 2KV)·hd, d] block (attention.c: qkv_proj)
    k = model_typed_add(t, k, w->wk, (size_t)KV * hd * d, &w->t_k, true);
    k = model_typed_add(t, k, w->wv, (size_t)KV * hd * d, &w->t_v, true);
    k = model_typed_add(t, k, w->wo, d * (size_t)H * hd, &w->t_o, false);
    return k;
}

static void info(const model_cfg *c, int l, molt_model_info *in) {
    int H, KV;
    heads_of(c, l, &H, &KV);
    in->n_head = c->n_head;
    in->n_kv_head = c->n_kv_head;
    in->head_dim = c->head_dim;
    in->n_attn_heads_kept += H;
    in->kv_bytes_per_token += 2 * (int64_t)KV * c->head_dim * (int64_t)sizeof(float);
}

const mixer_vt mixer_attention = {
    MIXER_PLAIN("attention", mixer_attention),
    .recurrent = 0,
};
